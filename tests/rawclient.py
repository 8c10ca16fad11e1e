"""A minimal raw LiveKit signalling client for protocol tests: one WebSocket, no WebRTC.

`RawClient.connect` opens `/rtc?protocol=16&…` with the token in `Authorization: Bearer`
(or `?access_token=`), `send` writes a `SignalRequest` (binary protobuf, or protojson text
with `as_json=True`), `recv` / `recv_until(kind)` read `SignalResponse`s with a deadline, and
`expect_close` waits for the server to end the socket. `http_upgrade` makes a bare upgrade
request and returns the status, headers and body, so refusals can be read exactly.
Wire types all come from `livekit.protocol`; tokens from `livekit.api.AccessToken`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import jwt
from google.protobuf import json_format
from livekit.protocol import models, rtc

DEFAULT_PROTOCOL = 16
DEFAULT_TIMEOUT = 5.0


class ConnectionClosed(Exception):
    """The server closed the WebSocket; `code` and `reason` are what its close frame said."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"websocket closed with code {code} {reason!r}")
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    """The /rtc upgrade was answered with an HTTP status instead of 101."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"upgrade refused: {status} {body!r}")
        self.status = status
        self.body = body


def kind_of(msg: rtc.SignalResponse) -> str | None:
    return msg.WhichOneof("message")


def rtc_query(token: str | None = None, *, protocol: int = DEFAULT_PROTOCOL,
              **params: Any) -> str:
    """The v0 query string a Rust/JS client would send (`access_token` only if given)."""
    query: dict[str, Any] = {"protocol": protocol, "sdk": "python", "version": "1.2.1",
                             "auto_subscribe": 1, "adaptive_stream": 0}
    if token is not None:
        query["access_token"] = token
    for key, value in params.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlencode(query)


def decode_unverified(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def resign(token: str, secret: str | None, *, algorithm: str = "HS256",
           **changes: Any) -> str:
    """Re-sign an AccessToken JWT with changed claims (a value of None removes the claim)."""
    claims = decode_unverified(token)
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the dev secret is short
        return jwt.encode(claims, secret, algorithm=algorithm)  # type: ignore[arg-type]


@dataclass
class HTTPAnswer:
    status: int
    headers: dict[str, str]
    body: str


async def http_upgrade(base_url: str, path: str, headers: dict[str, str] | None = None,
                       timeout: float = DEFAULT_TIMEOUT) -> HTTPAnswer:
    """Send a WebSocket upgrade request by hand and read the answer (status, headers, body).

    aiohttp's ws_connect hides the refusal body; this reads it. A 101 answer is returned with
    an empty body and the socket is dropped (the server then sees a vanished client).
    """
    url = urlsplit(base_url.replace("ws://", "http://"))
    host, port = url.hostname or "127.0.0.1", url.port or 80
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def exchange() -> HTTPAnswer:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            got: dict[str, str] = {}
            for line in header_lines:
                if ":" in line:
                    k, v = line.split(":", 1)
                    got[k.strip().lower()] = v.strip()
            body = b""
            if status != 101:
                length = int(got.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
            return HTTPAnswer(status, got, body.decode("utf-8", "replace"))
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


@dataclass
class RawClient:
    """One signalling connection; every read is bounded by a timeout."""

    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession
    identity: str = ""
    seen: list[rtc.SignalResponse] = field(default_factory=list)
    last_frame_was_text: bool = False
    close_frame: tuple[int, str] | None = None
    join_response: rtc.JoinResponse | None = None
    _backlog: list[rtc.SignalResponse] = field(default_factory=list)
    _barriers: int = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        protocol: int = DEFAULT_PROTOCOL,
        via: str = "header",
        timeout: float = DEFAULT_TIMEOUT,
        identity: str = "",
        **params: Any,
    ) -> RawClient:
        """Open `/rtc`; `via` is "header" (Bearer) or "query" (`access_token`)."""
        headers = {"Authorization": f"Bearer {token}"} if via == "header" else {}
        query = rtc_query(token if via == "query" else None, protocol=protocol, **params)
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                f"{url}/rtc?{query}", headers=headers, timeout=aiohttp.ClientWSTimeout(
                    ws_receive=None, ws_close=timeout), max_msg_size=0, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            await session.close()
            raise HandshakeRefused(exc.status, exc.message) from exc
        except BaseException:
            await session.close()
            raise
        return cls(ws=ws, session=session, identity=identity)

    async def close(self) -> None:
        """Drop the socket without a leave (as a client losing its network would)."""
        try:
            if not self.ws.closed:
                await asyncio.wait_for(self.ws.close(), DEFAULT_TIMEOUT)
        finally:
            await self.session.close()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- sending ---------------------------------------------------------------
    async def send(self, request: rtc.SignalRequest, *, as_json: bool = False) -> None:
        if as_json:
            await self.ws.send_str(json_format.MessageToJson(request, indent=None))
        else:
            await self.ws.send_bytes(request.SerializeToString())

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def send_text(self, data: str) -> None:
        await self.ws.send_str(data)

    async def send_raw_text_frame(self, payload: bytes) -> None:
        """A text frame with arbitrary bytes (aiohttp's public API only sends valid UTF-8)."""
        await self.ws._writer.send_frame(payload, aiohttp.WSMsgType.TEXT)

    # -- receiving -------------------------------------------------------------
    async def _read(self, timeout: float) -> rtc.SignalResponse:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            response = rtc.SignalResponse()
            response.ParseFromString(msg.data)
            self.last_frame_was_text = False
        elif msg.type == aiohttp.WSMsgType.TEXT:
            response = json_format.Parse(msg.data, rtc.SignalResponse(),
                                         ignore_unknown_fields=True)
            self.last_frame_was_text = True
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            # The code in the server's close frame (ws.close_code may read 1006 when the
            # server drops TCP before our close reply).
            reason = msg.extra if isinstance(msg.extra, str) else ""
            self.close_frame = (int(msg.data), reason)
            raise ConnectionClosed(int(msg.data), reason)
        elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code, reason = self.close_frame or (self.ws.close_code, "")
            raise ConnectionClosed(code, reason)
        elif msg.type == aiohttp.WSMsgType.ERROR:
            raise ConnectionClosed(self.ws.close_code, f"error: {msg.data!r}")
        else:
            raise AssertionError(f"unexpected websocket message type {msg.type}")
        self.seen.append(response)
        return response

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> rtc.SignalResponse:
        """The next SignalResponse (including ones skipped earlier by `recv_until`)."""
        if self._backlog:
            return self._backlog.pop(0)
        return await self._read(timeout)

    async def recv_until(
        self,
        kind: str,
        timeout: float = DEFAULT_TIMEOUT,
        match: Callable[[rtc.SignalResponse], bool] = lambda _: True,
        *,
        keep_skipped: bool = True,
    ) -> rtc.SignalResponse:
        """The first message of oneof case `kind` for which `match` holds, within `timeout`.

        Messages passed over stay queued for a later `recv` / `recv_until` unless
        `keep_skipped` is False. TimeoutError lists the kinds that did arrive.
        """
        deadline = time.monotonic() + timeout
        skipped: list[rtc.SignalResponse] = []
        try:
            for i, msg in enumerate(self._backlog):
                if kind_of(msg) == kind and match(msg):
                    del self._backlog[i]
                    return msg
            skipped = self._backlog
            self._backlog = []
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                msg = await self._read(remaining)
                if kind_of(msg) == kind and match(msg):
                    return msg
                skipped.append(msg)
        except TimeoutError:
            kinds = [kind_of(m) for m in skipped]
            raise TimeoutError(
                f"[{self.identity}] no matching {kind!r} within {timeout:.1f} s; "
                f"got {kinds}") from None
        finally:
            if keep_skipped:
                self._backlog = skipped + self._backlog

    async def collect(self, duration: float) -> list[rtc.SignalResponse]:
        """Everything that arrives within `duration` seconds (stops early if the socket closes)."""
        out, self._backlog = self._backlog, []
        deadline = time.monotonic() + duration
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                out.append(await self._read(remaining))
            except (TimeoutError, ConnectionClosed):
                break
        return out

    async def expect_close(self, timeout: float = DEFAULT_TIMEOUT) -> ConnectionClosed:
        """Read (and keep in `seen`) until the server closes; the close as an exception value."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"[{self.identity}] socket still open after {timeout:.1f} s")
            try:
                self._backlog.append(await self._read(remaining))
            except ConnectionClosed as closed:
                return closed
            except TimeoutError:
                continue

    # -- conveniences -----------------------------------------------------------
    async def join(self, timeout: float = DEFAULT_TIMEOUT) -> rtc.JoinResponse:
        msg = await self.recv(timeout)
        assert kind_of(msg) == "join", f"first message is {kind_of(msg)!r}, not join: {msg}"
        self.join_response = msg.join
        return msg.join

    @property
    def sid(self) -> str:
        assert self.join_response is not None, "not joined"
        return str(self.join_response.participant.sid)

    async def ping(self, timestamp: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                   *, as_json: bool = False) -> rtc.Pong:
        """`ping_req` → the `pong_resp` that echoes its timestamp."""
        ts = int(time.time() * 1000) if timestamp is None else timestamp
        await self.send(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=ts)), as_json=as_json)
        msg = await self.recv_until(
            "pong_resp", timeout, lambda m: m.pong_resp.last_ping_timestamp == ts)
        return msg.pong_resp

    async def barrier(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the server handled everything sent before: a mute of an unknown track.

        Pings are answered by the socket reader ahead of queued requests, so they prove the
        session is alive but not that earlier requests were handled; requests are handled in
        order, so the NOT_FOUND for this mute comes after every earlier request's answer.
        """
        self._barriers += 1
        sid = f"TR_barrier{self._barriers}"
        req = rtc.SignalRequest()
        req.mute.sid = sid
        req.mute.muted = True
        await self.send(req)
        await self.recv_until("request_response", timeout,
                              lambda m: m.request_response.mute.sid == sid)

    async def request_response(self, timeout: float = DEFAULT_TIMEOUT,
                               match: Callable[[rtc.RequestResponse], bool] = lambda _: True,
                               ) -> rtc.RequestResponse:
        msg = await self.recv_until("request_response", timeout,
                                    lambda m: match(m.request_response))
        return msg.request_response

    async def participant_update(
        self, predicate: Callable[[models.ParticipantInfo], bool],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> models.ParticipantInfo:
        """The first ParticipantInfo in an `update` for which `predicate` holds."""
        found: list[models.ParticipantInfo] = []

        def match(m: rtc.SignalResponse) -> bool:
            found[:] = [p for p in m.update.participants if predicate(p)]
            return bool(found)

        await self.recv_until("update", timeout, match)
        return found[0]

    async def leave(self, reason: int = models.DisconnectReason.CLIENT_INITIATED) -> None:
        req = rtc.SignalRequest()
        req.leave.reason = reason  # type: ignore[assignment]
        req.leave.action = rtc.LeaveRequest.Action.DISCONNECT
        await self.send(req)


class ClientPool:
    """Raw clients of one test against one server; `close_all()` drops every socket."""

    def __init__(self, url: str, api_key: str, api_secret: str) -> None:
        self.url = url
        self.api_key = api_key
        self.api_secret = api_secret
        self.clients: list[RawClient] = []

    def token(self, identity: str, room: str, **grants: Any) -> str:
        from tests.helpers.server import make_token

        return make_token(self.api_key, self.api_secret, identity, room, **grants)

    async def connect(self, identity: str, room: str, *, token: str | None = None,
                      protocol: int = DEFAULT_PROTOCOL, **params: Any) -> RawClient:
        """Open a socket (no read yet): for resumes and refusals."""
        client = await RawClient.connect(
            self.url, token or self.token(identity, room), protocol=protocol,
            identity=identity, **params)
        self.clients.append(client)
        return client

    async def join(self, identity: str, room: str, *, protocol: int = DEFAULT_PROTOCOL,
                   timeout: float = DEFAULT_TIMEOUT, **grants: Any) -> RawClient:
        """Connect with a token carrying `grants` and read the JoinResponse."""
        client = await self.connect(identity, room, token=self.token(identity, room, **grants),
                                    protocol=protocol)
        await client.join(timeout)
        return client

    async def close_all(self) -> None:
        for client in self.clients:
            try:
                await client.close()
            except Exception:  # a socket that already failed must not hide the test's error
                pass

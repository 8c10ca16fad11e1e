"""The signalling WebSocket (`/rtc`, binary protobuf): connect, join or resume, ping, send."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from livekit.protocol import rtc

log = logging.getLogger("roost.client.signal")

PROTOCOL_VERSION = 16
CLIENT_PROTOCOL = 1  # RPC over data streams; data streams v2 (inline, compression) not advertised
SDK_NAME = "python"
SDK_VERSION = "0.1.0"
CONNECT_TIMEOUT = 10.0
FIRST_MESSAGE_TIMEOUT = 5.0


class ConnectError(Exception):
    """Joining or resuming failed (HTTP refusal, timeout, or a leave instead of a join)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class JoinParams:
    """Query parameters of a `/rtc` request."""

    auto_subscribe: bool = True
    adaptive_stream: bool = False
    reconnect: bool = False
    sid: str = ""
    reconnect_reason: int = 0
    client_protocol: int = CLIENT_PROTOCOL


def _http_base(url: str) -> tuple[str, str]:
    """The ws(s):// and http(s):// forms of a server URL, without a trailing slash."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme or "ws")
    path = parts.path.rstrip("/")
    ws = urlunsplit((scheme, parts.netloc, path, "", ""))
    http = urlunsplit(("https" if scheme == "wss" else "http", parts.netloc, path, "", ""))
    return ws, http


def build_query(params: JoinParams) -> str:
    """The `/rtc` query string for `params` (token travels in the Authorization header)."""
    query = {
        "sdk": SDK_NAME,
        "version": SDK_VERSION,
        "protocol": str(PROTOCOL_VERSION),
        "client_protocol": str(params.client_protocol),
        "os": platform.system().lower(),
        "auto_subscribe": "1" if params.auto_subscribe else "0",
        "adaptive_stream": "1" if params.adaptive_stream else "0",
    }
    if params.reconnect:
        query.update(reconnect="1", sid=params.sid, reconnect_reason=str(params.reconnect_reason))
    return urlencode(query)


class SignalClient:
    """One WebSocket to the server; `connect` returns the first message (join or reconnect)."""

    def __init__(
        self,
        on_message: Callable[[rtc.SignalResponse], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.leaving = False  # a leave was sent: the server closing the socket is expected
        self.ping_interval = 5.0
        self.ping_timeout = 15.0
        self.rtt_ms = 0
        self._last_message = time.monotonic()
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(
        self, url: str, token: str, params: JoinParams, timeout: float = CONNECT_TIMEOUT
    ) -> rtc.SignalResponse:
        """Open the socket and return its first message; raise ConnectError on failure."""
        await self.close()
        self._closing = False
        self._outbox = asyncio.Queue()
        ws_base, http_base = _http_base(url)
        query = build_query(params)
        headers = {"Authorization": f"Bearer {token}"}
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(
                f"{ws_base}/rtc?{query}",
                headers=headers,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                heartbeat=None,
                max_msg_size=4 * 1024 * 1024,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            detail = await self._validate(f"{http_base}/rtc/validate?{query}", headers)
            await self._drop_session()
            raise ConnectError(
                f"server refused the connection ({exc.status}): {detail or exc.message}",
                exc.status,
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._drop_session()
            raise ConnectError(f"could not reach {ws_base}: {exc}") from None
        try:
            first = await asyncio.wait_for(self._read_one(), FIRST_MESSAGE_TIMEOUT)
        except (TimeoutError, ConnectionError) as exc:
            await self.close()
            raise ConnectError(f"no first message from the server: {exc!r}") from None
        which = first.WhichOneof("message")
        if which == "leave":
            await self.close()
            raise ConnectError(f"server sent leave on connect (reason {first.leave.reason})")
        if which == "join":
            self.ping_interval = float(first.join.ping_interval or 5)
            self.ping_timeout = float(first.join.ping_timeout or 15)
        self._last_message = time.monotonic()
        return first

    def start(self) -> None:
        """Start reading, writing and pinging (after the caller handled the first message)."""
        loop = asyncio.get_running_loop()
        assert self._ws is not None
        self._tasks = [
            loop.create_task(self._read_loop()),
            loop.create_task(self._ping_loop()),
            loop.create_task(self._write_loop(self._ws, self._outbox)),
        ]

    async def _validate(self, url: str, headers: dict[str, str]) -> str:
        assert self._session is not None
        try:
            async with self._session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=3)
            ) as resp:
                return (await resp.text())[:300]
        except Exception:
            return ""

    async def _read_one(self) -> rtc.SignalResponse:
        assert self._ws is not None
        while True:
            msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                return rtc.SignalResponse.FromString(msg.data)
            if msg.type == aiohttp.WSMsgType.TEXT:
                from google.protobuf import json_format

                return json_format.Parse(msg.data, rtc.SignalResponse(), ignore_unknown_fields=True)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                raise ConnectionError(f"signal socket closed ({msg.type.name})")

    async def _read_loop(self) -> None:
        reason = "closed by server"
        try:
            while True:
                resp = await self._read_one()
                self._last_message = time.monotonic()
                if resp.WhichOneof("message") == "pong_resp":
                    now = int(time.time() * 1000)
                    self.rtt_ms = max(0, now - resp.pong_resp.last_ping_timestamp)
                try:
                    self._on_message(resp)
                except Exception:
                    log.exception("signal handler failed for %s", resp.WhichOneof("message"))
        except ConnectionError as exc:
            reason = str(exc)
        except Exception as exc:  # a malformed frame ends this socket, not the process
            reason = f"bad signal frame: {exc!r}"
        if not self._closing:
            self._lost(reason)

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            if time.monotonic() - self._last_message > self.ping_timeout:
                self._lost(f"no message for {self.ping_timeout:.0f} s")
                return
            req = rtc.SignalRequest()
            req.ping_req.timestamp = int(time.time() * 1000)
            req.ping_req.rtt = self.rtt_ms
            self.send(req)

    def _lost(self, reason: str) -> None:
        if self._closing or self.leaving:
            return
        log.info("signal connection lost: %s", reason)
        asyncio.get_running_loop().create_task(self._detach())
        self._on_lost(reason)

    def send(self, req: rtc.SignalRequest) -> bool:
        """Queue `req` on the socket; False when there is no open socket."""
        ws = self._ws
        if ws is None or ws.closed or self._closing:
            return False
        self._outbox.put_nowait(req.SerializeToString())
        return True

    async def _write_loop(
        self, ws: aiohttp.ClientWebSocketResponse, outbox: asyncio.Queue[bytes]
    ) -> None:
        """The only writer of the socket, so messages leave in the order they were sent."""
        try:
            while True:
                data = await outbox.get()
                await ws.send_bytes(data)
        except (ConnectionError, RuntimeError) as exc:
            self._lost(f"send failed: {exc}")

    async def flush(self, timeout: float = 1.0) -> None:
        """Wait (bounded) until everything sent so far has been written to the socket."""
        deadline = time.monotonic() + timeout
        while not self._outbox.empty() and time.monotonic() < deadline and self.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def abort(self) -> None:
        """Drop the socket without a close handshake (the server sees a lost connection)."""
        ws = self._ws
        if ws is None:
            return
        transport = getattr(getattr(ws, "_response", None), "connection", None)
        transport = getattr(transport, "transport", None)
        if transport is not None:
            transport.abort()
        else:
            asyncio.get_running_loop().create_task(ws.close())

    async def close(self) -> None:
        """Close the socket and stop the reader, writer and pinger (no leave is sent)."""
        await self._detach()

    def _detach(self) -> Coroutine[Any, Any, None]:
        """Forget the current socket at once; the returned awaitable finishes closing it."""
        self._closing = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._tasks = []
        ws, self._ws = self._ws, None
        session, self._session = self._session, None
        return _dispose(ws, session)

    async def _drop_session(self) -> None:
        session, self._session = self._session, None
        await _dispose(None, session)


async def _dispose(
    ws: aiohttp.ClientWebSocketResponse | None, session: aiohttp.ClientSession | None
) -> None:
    if ws is not None and not ws.closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2.0)
    if session is not None:
        with contextlib.suppress(Exception):
            await session.close()

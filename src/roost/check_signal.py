"""The signalling side of `roost check`: reach the server over HTTP, join through the `/rtc`
WebSocket (binary protobuf, dual peer connections) and read the server's ICE credentials and
candidates from the subscriber offer and its trickles; then leave.

Wire types come from the `livekit-protocol` package only.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from aioice.candidate import Candidate
from livekit.protocol import models as proto_models
from livekit.protocol import rtc as proto_rtc

from roost import __version__

PROTOCOL_VERSION = 16
# How long after the last trickled candidate more may come, when the server did not say it
# was done (a=end-of-candidates or a final trickle).
TRICKLE_GRACE = 0.5


class SignalError(Exception):
    """Signalling failed; the message is the reason shown to the user."""


@dataclass
class ServerIce:
    """The server's side of the subscriber transport's ICE."""

    ufrag: str = ""
    pwd: str = ""
    ice_lite: bool = False
    candidates: list[Candidate] = field(default_factory=list)
    complete: bool = False  # the server said it has no more candidates

    def add_sdp(self, sdp: str) -> None:
        """Take ice-ufrag/ice-pwd/ice-lite and candidates from an SDP (first values win)."""
        for raw in sdp.splitlines():
            line = raw.strip()
            if line.startswith("a=ice-ufrag:") and not self.ufrag:
                self.ufrag = line.split(":", 1)[1]
            elif line.startswith("a=ice-pwd:") and not self.pwd:
                self.pwd = line.split(":", 1)[1]
            elif line == "a=ice-lite":
                self.ice_lite = True
            elif line == "a=end-of-candidates":
                self.complete = True
            elif line.startswith("a=candidate:"):
                self.add_candidate(line[2:])

    def add_candidate(self, text: str) -> None:
        """One `candidate:…` attribute value; unparsable or duplicate ones are skipped."""
        try:
            candidate = Candidate.from_sdp(text.removeprefix("candidate:"))
        except (ValueError, IndexError):
            return
        key = (candidate.transport.lower(), candidate.host, candidate.port)
        if all((c.transport.lower(), c.host, c.port) != key for c in self.candidates):
            self.candidates.append(candidate)

    def add_trickle(self, trickle: proto_rtc.TrickleRequest) -> None:
        """A `SignalResponse.trickle`: candidateInit is JSON (`{"candidate": "…"}`)."""
        if trickle.final:
            self.complete = True
        try:
            init = json.loads(trickle.candidateInit) if trickle.candidateInit else {}
        except ValueError:
            return
        text = init.get("candidate", "") if isinstance(init, dict) else ""
        if text:
            self.add_candidate(text)
        elif trickle.candidateInit:
            self.complete = True  # an empty candidate marks the end of gathering

    def udp(self) -> list[Candidate]:
        return [c for c in self.candidates if c.transport.lower() == "udp"
                and c.type in ("host", "srflx", "prflx")]

    def tcp_passive(self) -> list[Candidate]:
        return [c for c in self.candidates if c.transport.lower() == "tcp"
                and (c.tcptype or "").lower() == "passive"]


def http_base(url: str) -> str:
    """`ws://h:p/x` → `http://h:p` (wss → https); http(s) URLs are taken as they are."""
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(
        parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(f"not a ws://, wss://, http:// or https:// URL: {url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def rtc_query() -> str:
    """The v0 `/rtc` parameters: dual peer connections, no auto-subscribe, protocol 16."""
    return urlencode({"protocol": PROTOCOL_VERSION, "sdk": "python", "version": __version__,
                      "auto_subscribe": 0, "adaptive_stream": 0})


async def probe_http(base: str, session: aiohttp.ClientSession, timeout: float) -> float:
    """GET / (the health check); returns the RTT in ms or raises SignalError."""
    started = time.monotonic()
    try:
        async with session.get(f"{base}/", timeout=aiohttp.ClientTimeout(total=timeout),
                               allow_redirects=False) as response:
            await response.read()
            rtt = (time.monotonic() - started) * 1000
            if response.status >= 500:
                raise SignalError(f"GET / answered HTTP {response.status} {response.reason}")
            return rtt
    except aiohttp.ClientConnectorCertificateError as exc:
        raise SignalError(f"TLS certificate not trusted ({exc.certificate_error}); "
                          "try --ca-file or --insecure") from None
    except aiohttp.ClientConnectorError as exc:
        raise SignalError(_connect_error(exc)) from None
    except TimeoutError:
        raise SignalError(f"no HTTP answer within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise SignalError(f"HTTP error: {exc}") from None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _connect_error(exc: aiohttp.ClientConnectorError) -> str:
    where = f"{exc.host}:{exc.port}"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return f"connection refused by {where} (nothing listening there?)"
    return f"cannot connect to {where}: {exc.os_error.strerror or exc.os_error}"


class SignalClient:
    """One `/rtc` signalling session of the check."""

    def __init__(self, base: str, token: str, tls: ssl.SSLContext | None) -> None:
        self.base = base
        self.token = token
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls or True))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.join_response: proto_rtc.JoinResponse | None = None
        self._backlog: list[proto_rtc.SignalResponse] = []

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def join(self, timeout: float) -> proto_rtc.JoinResponse:
        """Open the WebSocket and read the JoinResponse (the first message)."""
        ws_url = self.base.replace("http", "ws", 1) + "/rtc?" + rtc_query()
        try:
            self.ws = await self.session.ws_connect(
                ws_url, headers=self._headers, max_msg_size=0, autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=timeout))
        except aiohttp.WSServerHandshakeError as exc:
            detail = await self._validate_reason(timeout)
            raise SignalError(f"HTTP {exc.status} {_phrase(exc.status)}"
                              + (f": {detail}" if detail else "")) from None
        except aiohttp.ClientConnectorError as exc:
            raise SignalError(_connect_error(exc)) from None
        except aiohttp.ClientError as exc:
            raise SignalError(f"WebSocket error: {exc}") from None
        except TimeoutError:
            raise SignalError(f"no WebSocket upgrade within {timeout:g} s") from None
        first = await self._read(timeout, "the JoinResponse")
        kind = first.WhichOneof("message")
        if kind == "leave":
            reason = proto_models.DisconnectReason.Name(first.leave.reason)
            raise SignalError(f"the server sent leave ({reason}) instead of a JoinResponse")
        if kind != "join":
            raise SignalError(f"first message is {kind!r}, not a JoinResponse")
        self.join_response = first.join
        return first.join

    async def _validate_reason(self, timeout: float) -> str:
        """The refusal text: `/rtc/validate` repeats the upgrade's checks with a body."""
        try:
            async with self.session.get(f"{self.base}/rtc/validate?{rtc_query()}",
                                        headers=self._headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status == 200:
                    return ""
                return (await resp.text()).strip()[:300]
        except (aiohttp.ClientError, TimeoutError):
            return ""

    async def _read(self, timeout: float, waiting_for: str) -> proto_rtc.SignalResponse:
        assert self.ws is not None
        if self._backlog:
            return self._backlog.pop(0)
        try:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
        except TimeoutError:
            raise SignalError(f"no {waiting_for} within {timeout:g} s") from None
        if msg.type == aiohttp.WSMsgType.BINARY:
            response = proto_rtc.SignalResponse()
            response.ParseFromString(msg.data)
            return response
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise SignalError(f"the server closed the WebSocket (code {self.ws.close_code}) "
                              f"while we waited for {waiting_for}")
        raise SignalError(f"unexpected {msg.type.name} frame while waiting for {waiting_for}")

    async def server_ice(self, timeout: float) -> ServerIce:
        """Read until the subscriber offer, then the trickled candidates that follow it."""
        ice = ServerIce()
        deadline = time.monotonic() + timeout
        early: list[proto_rtc.TrickleRequest] = []  # trickles may overtake the offer
        while not ice.ufrag:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SignalError(f"no subscriber offer within {timeout:g} s")
            msg = await self._read(remaining, "the subscriber offer")
            kind = msg.WhichOneof("message")
            if kind == "offer":
                ice.add_sdp(msg.offer.sdp)
                if not ice.ufrag or not ice.pwd:
                    raise SignalError("the subscriber offer has no a=ice-ufrag/a=ice-pwd")
            elif kind == "trickle" and msg.trickle.target == proto_rtc.SignalTarget.SUBSCRIBER:
                early.append(msg.trickle)
            elif kind == "leave":
                raise SignalError("the server sent leave before its offer")
        for trickle in early:
            ice.add_trickle(trickle)
        # Servers that gather after the offer (livekit-server) trickle everything: wait for
        # the first candidate, then until the server says it is done or goes quiet.
        quiet_end = time.monotonic() + TRICKLE_GRACE
        while not ice.complete:
            end = min(deadline, quiet_end) if ice.candidates else deadline
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            try:
                msg = await self._read(remaining, "trickled candidates")
            except SignalError:
                break
            if (msg.WhichOneof("message") == "trickle"
                    and msg.trickle.target == proto_rtc.SignalTarget.SUBSCRIBER):
                ice.add_trickle(msg.trickle)
                quiet_end = time.monotonic() + TRICKLE_GRACE
        return ice

    async def close(self, timeout: float) -> None:
        """Send a LeaveRequest (if joined) and close the socket and the HTTP session."""
        try:
            if self.ws is not None and not self.ws.closed:
                request = proto_rtc.SignalRequest()
                request.leave.reason = proto_models.DisconnectReason.CLIENT_INITIATED
                request.leave.action = proto_rtc.LeaveRequest.Action.DISCONNECT
                try:
                    await self.ws.send_bytes(request.SerializeToString())
                    await asyncio.wait_for(self.ws.close(), timeout)
                except (aiohttp.ClientError, ConnectionError, TimeoutError):
                    pass
        finally:
            await self.session.close()

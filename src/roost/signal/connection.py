"""What a SignalSession talks through: a client's WebSocket, or a relay of one held elsewhere."""

from __future__ import annotations

import logging
from typing import Protocol

import aiohttp
from aiohttp import web

log = logging.getLogger("roost.signal")

Frame = bytes | str  # a binary (protobuf) or text (protojson) signalling message

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011


class SignalConnection(Protocol):
    """A full-duplex stream of signalling frames with one client."""

    @property
    def closed(self) -> bool:
        """True once either side ended the connection."""
        ...

    async def receive(self) -> Frame | None:
        """The client's next frame, or None once the connection is closed."""
        ...

    async def send(self, frame: Frame) -> None:
        """Write one frame; raises ConnectionError when it cannot be delivered."""
        ...

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """End the connection with a WebSocket close code and reason (idempotent)."""
        ...

    def describe_error(self) -> str:
        """What broke the connection, for logs ('' if nothing did)."""
        ...


class WebSocketConnection:
    """A SignalConnection over an aiohttp server-side WebSocket."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._error = ""

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def receive(self) -> Frame | None:
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                return bytes(msg.data)
            if msg.type == aiohttp.WSMsgType.TEXT:
                return str(msg.data)
            if msg.type == aiohttp.WSMsgType.ERROR:
                self._error = f"websocket error: {self.ws.exception()}"
                return None
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED):
                return None

    async def send(self, frame: Frame) -> None:
        try:
            if isinstance(frame, str):
                await self.ws.send_str(frame)
            else:
                await self.ws.send_bytes(frame)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            raise ConnectionError(f"websocket send failed: {exc}") from exc

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        await self.ws.close(code=code, message=reason[:120].encode())

    def describe_error(self) -> str:
        return self._error

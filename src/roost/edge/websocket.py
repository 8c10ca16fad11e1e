"""The client's signalling WebSocket: accepting it, and a SignalConnection over it."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from livekit.protocol import rtc

from roost.room.room import Reason, leave_response
from roost.signal.connection import CLOSE_NORMAL, Frame

HEARTBEAT = 10.0  # seconds between WebSocket pings from the server


async def accept(request: web.Request, max_message_size: int) -> web.WebSocketResponse:
    """Upgrade `request` to a WebSocket that takes frames up to `max_message_size` bytes."""
    ws = web.WebSocketResponse(max_msg_size=max_message_size, heartbeat=HEARTBEAT,
                               compress=True)
    await ws.prepare(request)
    return ws


async def refuse_resume(request: web.Request, protocol: int) -> web.StreamResponse:
    """No session to resume: upgrade, ask for a full reconnect (the reference's answer), close."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    msg = leave_response(Reason.STATE_MISMATCH, protocol, rtc.LeaveRequest.Action.RECONNECT)
    await ws.send_bytes(msg.SerializeToString())
    await ws.close()
    return ws


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
        await self.ws.close(code=code, message=reason.encode()[:120])

    def describe_error(self) -> str:
        return self._error

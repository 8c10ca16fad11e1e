"""SignalSession: one client's signalling connection, its send queue, pings and lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from livekit.protocol import models, rtc

from roost import PROTOCOL_SERVER_VERSION, SERVER_PROTOCOL
from roost.config import Settings
from roost.ids import ParticipantSid
from roost.signal.codec import FrameError, decode_request, encode_response
from roost.signal.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNSUPPORTED_DATA,
    SignalConnection,
)
from roost.telemetry import count_error

if TYPE_CHECKING:
    from roost.room.participant import Participant
    from roost.room.room import Room
    from roost.signal.handlers import Handlers

log = logging.getLogger("roost.signal")

Reason = models.DisconnectReason
_CLOSE = object()


class SessionHost(Protocol):
    """What a session asks of the node's signalling (SignalService)."""

    settings: Settings
    node_id: str
    # participant sid → the STUN/TURN servers it is told about; None for none
    ice_servers: Callable[[ParticipantSid], list[rtc.ICEServer]] | None

    def session_ended(self, session: SignalSession) -> None:
        """The connection is gone: hold the participant for a resume, or forget it."""
        ...


class SignalSession:
    """Reads SignalRequests from one connection and writes SignalResponses to it."""

    def __init__(self, service: SessionHost, conn: SignalConnection, room: Room,
                 participant: Participant) -> None:
        self.service = service
        self.conn = conn
        self.room = room
        self.participant = participant
        self.as_json = False
        self.closed = False
        self.last_seen = time.monotonic()
        self._queue: asyncio.Queue[object] = asyncio.Queue(
            maxsize=service.settings.limit.signal_send_queue)
        self._requests: asyncio.Queue[rtc.SignalRequest | None] = asyncio.Queue(maxsize=256)
        self._tasks: list[asyncio.Task[Any]] = []
        self.handlers: Handlers | None = None

    # -- SignalSink ----------------------------------------------------------
    def send(self, response: rtc.SignalResponse) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(response)
        except asyncio.QueueFull:
            log.warning("signal send queue full, closing session", extra=self.log_extra())
            self._abort("send queue full")

    def close(self, reason: str = "") -> None:
        """Flush what is queued, then close the socket."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_CLOSE)

    def _abort(self, reason: str) -> None:
        self.closed = True
        task = asyncio.get_running_loop().create_task(
            self.conn.close(CLOSE_POLICY_VIOLATION, reason))
        self._tasks.append(task)

    def log_extra(self) -> dict[str, str]:
        """The room and participant fields for this session's log records."""
        return {**self.room.log_extra(), **self.participant.log_extra()}

    # -- JoinResponse ----------------------------------------------------------
    def server_info(self) -> models.ServerInfo:
        s = self.service
        return models.ServerInfo(
            edition=models.ServerInfo.Edition.Standard,
            version=PROTOCOL_SERVER_VERSION,
            protocol=SERVER_PROTOCOL,
            region=s.settings.region,
            node_id=s.node_id,
        )

    def fill_join(self, join: rtc.JoinResponse) -> None:
        p = self.participant
        settings = self.service.settings
        join.participant.CopyFrom(p.to_proto())
        join.server_version = PROTOCOL_SERVER_VERSION
        join.server_info.CopyFrom(self.server_info())
        join.ping_interval = settings.ping_interval
        join.ping_timeout = settings.ping_timeout
        join.sif_trailer = os.urandom(8)
        join.fast_publish = bool(p.permission.can_publish)
        join.server_region = settings.region
        if self.service.ice_servers is not None:
            join.ice_servers.extend(self.service.ice_servers(p.sid))

    # -- running -------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until it closes; the caller has already sent the first message."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._writer()))
        self._tasks.append(loop.create_task(self._worker()))
        self._tasks.append(loop.create_task(self._watchdog()))
        try:
            await self._reader()
        finally:
            # Requests read before the socket closed (a final leave, say) still run.
            await self._requests.put(None)
            worker = self._tasks[1]
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(worker), 5.0)
            self.closed = True
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not self.conn.closed:
                with contextlib.suppress(Exception):
                    await self.conn.close()
            self.service.session_ended(self)

    async def _reader(self) -> None:
        while True:
            data = await self.conn.receive()
            if data is None:
                error = self.conn.describe_error()
                if error:
                    log.info("%s", error, extra=self.log_extra())
                return
            self.as_json = isinstance(data, str)
            self.last_seen = time.monotonic()
            try:
                request = decode_request(data)
            except FrameError as exc:
                count_error("signal_frame")
                log.info("closing session: %s", exc, extra=self.log_extra())
                await self.conn.close(CLOSE_UNSUPPORTED_DATA, str(exc))
                return
            if not self._answer_ping(request):
                try:
                    self._requests.put_nowait(request)
                except asyncio.QueueFull:
                    count_error("signal_flood")
                    log.warning("client floods requests, closing", extra=self.log_extra())
                    await self.conn.close(CLOSE_POLICY_VIOLATION, "too many pending requests")
                    return

    def enqueue(self, request: rtc.SignalRequest) -> None:
        """Handle `request` as if the client had sent it (v1's JoinRequest contents)."""
        self._requests.put_nowait(request)

    def _answer_ping(self, request: rtc.SignalRequest) -> bool:
        which = request.WhichOneof("message")
        now_ms = int(time.time() * 1000)
        if which == "ping":
            self.send(rtc.SignalResponse(pong=now_ms))
            return True
        if which == "ping_req":
            if request.ping_req.rtt > 0:
                self.participant.signal_rtt_ms = int(request.ping_req.rtt)
            resp = rtc.SignalResponse()
            resp.pong_resp.last_ping_timestamp = request.ping_req.timestamp
            resp.pong_resp.timestamp = now_ms
            self.send(resp)
            return True
        return False

    async def _worker(self) -> None:
        while True:
            request = await self._requests.get()
            if request is None or self.handlers is None:
                return
            try:
                await self.handlers.dispatch(request)
            except Exception:
                log.exception("request handler failed (%s)", request.WhichOneof("message"),
                              extra=self.log_extra())

    async def _writer(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _CLOSE:
                await self.conn.close()
                return
            assert isinstance(item, rtc.SignalResponse)
            try:
                await self.conn.send(encode_response(item, self.as_json))
            except ConnectionError:
                return

    async def _watchdog(self) -> None:
        """Close the socket when the client stops talking for longer than ping_timeout."""
        timeout = float(self.service.settings.ping_timeout)
        while not self.closed:
            await asyncio.sleep(min(timeout / 3, 2.0))
            if time.monotonic() - self.last_seen > timeout:
                log.info("signal ping timeout", extra=self.log_extra())
                await self.conn.close(CLOSE_GOING_AWAY, "ping timeout")
                return

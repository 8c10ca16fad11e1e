"""One compose session over its WebSocket: join info, audio in, events out, limits and timers.

States: `open` (join info sent, avatar joining, client has `join_timeout` to join the room) →
`live` → `draining` (after DONE) → `closed`. Every termination (`ERROR`, `RATE`, `CLOSING`, or
`STOP` after DONE) is the last text sent: the socket is closed right after it, and the avatar
leaves the room. The avatar is reached through `AvatarHandle`, so tests can fake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from roost.avatar.limits import ComposeLimits
from roost.avatar.playout import Playout
from roost.avatar.tokens import SessionRequest
from roost.ids import RoomName

log = logging.getLogger("roost.avatar")

START, ACK, STOP, SPEAK, SILENT = "START", "ACK", "STOP", "SPEAK", "SILENT"
SKIP, DONE = "SKIP", "DONE"


class Channel(Protocol):
    """The client's WebSocket, as far as a session needs it."""

    async def send_str(self, data: str) -> None: ...

    async def close(self) -> object: ...


class AvatarHandle(Protocol):
    """The avatar participant, as far as a session needs it (see `agent.Avatar`)."""

    playout: Playout
    on_participant_connected: Callable[[str], None]
    on_disconnected: Callable[[], None]
    on_failed: Callable[[str], None]

    def remote_identities(self) -> list[str]: ...

    async def join(self, url: str, token: str) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class JoinInfo:
    """Where the client joins and with what, plus what the avatar joins with."""

    livekit_url: str
    livekit_token: str
    client_identity: str
    avatar_url: str
    avatar_token: str
    room: RoomName

    def message(self) -> str:
        """Simli's join info text; `livekit_url` first (clients detect the message by it)."""
        return json.dumps({"livekit_url": self.livekit_url, "livekit_token": self.livekit_token})


class ComposeSession:
    """Drives one avatar for one WebSocket client."""

    def __init__(self, session_id: str, request: SessionRequest, channel: Channel,
                 avatar: AvatarHandle, join: JoinInfo, limits: ComposeLimits,
                 on_closed: Callable[[ComposeSession], Awaitable[None]] | None = None) -> None:
        self.session_id = session_id
        self.request = request
        self.channel = channel
        self.avatar = avatar
        self.join = join
        self.limits = limits
        self.state = "open"
        self.close_reason = ""
        self._on_closed = on_closed
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client_joined = asyncio.Event()
        self._published = False
        self._started = False  # START sent: SPEAK/SILENT may follow
        self._speaking_now = False
        self._last_activity = time.monotonic()
        self._closed = asyncio.Event()
        playout = avatar.playout
        playout.on_speaking = self._speaking
        avatar.on_participant_connected = self._participant_connected
        avatar.on_disconnected = self._avatar_left
        avatar.on_failed = self._avatar_failed

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    # ---- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Send the join info, then let the avatar join while the timers run."""
        await self._send(self.join.message())
        self._spawn(self._join_avatar())
        self._spawn(self._deadline(self.limits.join_timeout, self._client_joined,
                                   "client did not join the room within "
                                   f"{self.limits.join_timeout:g} s"))
        self._spawn(self._session_timer())
        self._spawn(self._idle_timer())
        self._spawn(self._keepalive())

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _join_avatar(self) -> None:
        try:
            await asyncio.wait_for(self.avatar.join(self.join.avatar_url, self.join.avatar_token),
                                   self.limits.avatar_join_timeout)
        except Exception as exc:  # any failure ends this session only
            log.warning("avatar could not join: %r", exc, extra=self._log())
            await self.terminate(f"ERROR avatar could not join the room: {exc or type(exc)}")
            return
        self._published = True
        if self.closed:
            return
        for identity in self.avatar.remote_identities():
            self._participant_connected(identity)
        if self.state == "open" and self._client_joined.is_set():
            self.state = "live"
        await self._send(START)
        self._started = True
        if self._speaking_now and not self.closed:  # speech began before START went out
            await self._send(SPEAK)

    def _participant_connected(self, identity: str) -> None:
        if identity == self.join.client_identity and not self._client_joined.is_set():
            log.info("compose client joined the room", extra=self._log())
            self._client_joined.set()
            if self.state == "open" and self._published:
                self.state = "live"

    def _avatar_failed(self, reason: str) -> None:
        if not self.closed:
            self._spawn(self.terminate(f"ERROR avatar {reason}"))

    def _avatar_left(self) -> None:
        if not self.closed:
            self._spawn(self.terminate("CLOSING avatar was disconnected from the room"))

    # ---- client messages --------------------------------------------------------

    async def on_audio(self, data: bytes) -> None:
        """A binary frame: PCM16 16 kHz mono speech."""
        if self.closed:
            return
        if self.state == "draining":
            await self.terminate("ERROR audio received after DONE")
            return
        if len(data) % 2:
            await self.terminate(f"ERROR bad audio: {len(data)} bytes is not a whole number of "
                                 "16-bit samples")
            return
        if len(data) > self.limits.max_message_bytes:
            await self.terminate(f"ERROR bad audio: a {len(data)}-byte chunk exceeds "
                                 f"{self.limits.max_message_bytes} bytes")
            return
        self._last_activity = time.monotonic()
        playout = self.avatar.playout
        playout.push(np.frombuffer(data, dtype="<i2").astype(np.int16))
        if playout.queued_seconds > self.limits.buffer_seconds:
            await self.terminate(
                f"RATE audio arrives faster than real time: {playout.queued_seconds:.1f} s "
                f"queued, the bound is {self.limits.buffer_seconds:g} s")

    async def on_text(self, text: str) -> None:
        """A text frame: SKIP or DONE."""
        if self.closed:
            return
        command = text.strip().upper()
        if command == SKIP:
            self._last_activity = time.monotonic()
            self.avatar.playout.skip()
        elif command == DONE:
            if self.state != "draining":
                self.state = "draining"
                self._spawn(self._drain())
        else:
            await self.terminate(f"ERROR unknown message {text[:40]!r} (expected SKIP or DONE)")

    async def _drain(self) -> None:
        await self.avatar.playout.wait_drained()
        await asyncio.sleep(self.limits.done_grace)
        await self.terminate(STOP)

    # ---- events and timers --------------------------------------------------------

    def _speaking(self, speaking: bool) -> None:
        self._last_activity = time.monotonic()
        self._speaking_now = speaking
        if not self.closed and self._started:  # before START, it is told after START
            self._spawn(self._send(SPEAK if speaking else SILENT))

    async def _deadline(self, seconds: float, done: asyncio.Event, reason: str) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), seconds)
            return
        await self.terminate(f"CLOSING {reason}")

    async def _session_timer(self) -> None:
        await asyncio.sleep(self.request.max_session_length)
        await self.terminate(f"CLOSING max session length of {self.request.max_session_length}"
                             " s reached")

    async def _idle_timer(self) -> None:
        limit = self.request.max_idle_time
        while not self.closed:
            if self.avatar.playout.speaking:
                self._last_activity = time.monotonic()
            idle = time.monotonic() - self._last_activity
            if idle >= limit:
                await self.terminate(f"CLOSING max idle time of {limit} s reached")
                return
            await asyncio.sleep(min(1.0, limit - idle))

    async def _keepalive(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.limits.ack_interval)
            await self._send(ACK)

    # ---- sending and closing --------------------------------------------------------

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            if self.closed:
                return
            try:
                await self.channel.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.info("compose client went away: %r", exc, extra=self._log())
                self._spawn(self.close("client went away"))

    async def terminate(self, message: str) -> None:
        """Send `message` as the last thing on the socket, close it and release everything."""
        async with self._send_lock:
            if self.closed:
                return
            self.state = "closed"
            self.close_reason = message
            log.info("compose session ends: %s", message, extra=self._log())
            with contextlib.suppress(Exception):
                await self.channel.send_str(message)
        await self._release()

    async def close(self, reason: str) -> None:
        """End without a message (the client closed the socket)."""
        async with self._send_lock:
            if self.closed:
                return
            self.state = "closed"
            self.close_reason = reason
            log.info("compose session ends: %s", reason, extra=self._log())
        await self._release()

    async def _release(self) -> None:
        with contextlib.suppress(Exception):
            await self.channel.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        try:
            await self.avatar.aclose()
        except Exception:  # releasing must not fail the caller
            log.exception("avatar close failed", extra=self._log())
        if self._on_closed is not None:
            await self._on_closed(self)
        self._closed.set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("compose session task failed", exc_info=task.exception(),
                      extra=self._log())
            if not self.closed:
                self._spawn(self.terminate("ERROR internal error"))

    def _log(self) -> dict[str, str]:
        return {"room": self.join.room, "participant": self.join.client_identity,
                "session": self.session_id}

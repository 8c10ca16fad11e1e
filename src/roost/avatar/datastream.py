"""The LiveKit-agents avatar path: speech arrives as byte streams on `lk.audio_stream` from the
agent the avatar publishes for (its `lk.publish_on_behalf` attribute), `lk.clear_buffer`
interrupts, and each segment's end is reported with an `lk.playback_finished` RPC carrying
`playback_position` (seconds played) and `interrupted`."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from roost import client as rc
from roost.avatar.audio import ToSpeechRate
from roost.avatar.limits import ComposeLimits
from roost.avatar.playout import Playout
from roost.avatar.tokens import SessionRequest

if TYPE_CHECKING:
    from roost.avatar.agent import Avatar

log = logging.getLogger("roost.avatar")

AUDIO_STREAM_TOPIC = "lk.audio_stream"
RPC_CLEAR_BUFFER = "lk.clear_buffer"
RPC_PLAYBACK_FINISHED = "lk.playback_finished"
ATTRIBUTE_PUBLISH_ON_BEHALF = "lk.publish_on_behalf"
RPC_RETRIES = 3


class AgentAudioInput:
    """Feeds a playout from one agent's `lk.audio_stream` byte streams, one segment each."""

    def __init__(self, room: rc.Room, playout: Playout, agent_identity: str,
                 max_streams: int = 8) -> None:
        self.room = room
        self.playout = playout
        self.agent_identity = agent_identity
        self._readers: collections.deque[rc.ByteStreamReader] = collections.deque()
        self._max_streams = max_streams
        self._wakeup = asyncio.Event()
        self._segment = 0
        self._reading: int | None = None
        self._cleared: set[int] = set()
        self._notices: asyncio.Queue[tuple[float, bool]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.segments_finished = 0

    def start(self) -> None:
        """Register the stream handler and the RPC method, start reading and notifying."""
        self.room.register_byte_stream_handler(AUDIO_STREAM_TOPIC, self._on_stream)
        self.room.local_participant.register_rpc_method(RPC_CLEAR_BUFFER, self._clear_buffer)
        self.playout.on_segment_done = self._segment_done
        self._tasks = [asyncio.create_task(self._read_streams(), name="avatar-streams"),
                       asyncio.create_task(self._notify(), name="avatar-notify")]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            self.room.unregister_byte_stream_handler(AUDIO_STREAM_TOPIC)

    def _on_stream(self, reader: rc.ByteStreamReader, sender_identity: str) -> None:
        if sender_identity != self.agent_identity:
            log.warning("ignoring %s stream from %s (the avatar speaks for %s)",
                        AUDIO_STREAM_TOPIC, sender_identity, self.agent_identity)
            return
        if len(self._readers) >= self._max_streams:
            log.warning("too many queued audio streams from %s; dropping one", sender_identity)
            return
        self._readers.append(reader)
        self._wakeup.set()

    async def _read_streams(self) -> None:
        while True:
            while not self._readers:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._read_segment(self._readers.popleft())

    async def _read_segment(self, reader: rc.ByteStreamReader) -> None:
        log.debug("reading audio stream %s", reader.info.stream_id)
        self._segment += 1
        segment = self._reading = self._segment
        attrs = reader.info.attributes or {}
        try:
            convert = ToSpeechRate(int(attrs.get("sample_rate", "0")),
                                   int(attrs.get("num_channels", "0")))
        except ValueError as exc:
            log.warning("refusing audio stream %s: %s", reader.info.stream_id, exc)
            async for _ in reader:  # drain it; nothing is played
                pass
            return
        try:
            async for chunk in reader:
                if segment not in self._cleared:
                    self.playout.push(convert.push(chunk), segment)
        except rc.StreamError as exc:
            log.info("audio stream %s ended early: %s", reader.info.stream_id, exc)
        finally:
            self._reading = None
        if segment in self._cleared:
            self._cleared.discard(segment)
            return
        self.playout.push(convert.flush(), segment)
        self.playout.end_segment(segment)

    def _clear_buffer(self, data: rc.RpcInvocationData) -> str:
        if data.caller_identity != self.agent_identity:
            return "reject"
        if self._reading is not None:
            self._cleared.add(self._reading)
        self.playout.skip()
        return "ok"

    def _segment_done(self, segment: int, position: float, interrupted: bool) -> None:
        log.debug("segment %d played %.2f s (interrupted: %s)", segment, position, interrupted)
        self.segments_finished += 1
        self._notices.put_nowait((position, interrupted))

    async def _notify(self) -> None:
        while True:
            position, interrupted = await self._notices.get()
            payload = json.dumps({"playback_position": position, "interrupted": interrupted})
            for attempt in range(RPC_RETRIES):
                try:
                    started = time.monotonic()
                    await self.room.local_participant.perform_rpc(
                        destination_identity=self.agent_identity,
                        method=RPC_PLAYBACK_FINISHED, payload=payload)
                    log.debug("%s answered in %.0f ms", RPC_PLAYBACK_FINISHED,
                              (time.monotonic() - started) * 1000)
                    break
                except rc.RpcError as exc:
                    if attempt == RPC_RETRIES - 1:
                        log.warning("%s failed: %s", RPC_PLAYBACK_FINISHED, exc)
                    else:
                        await asyncio.sleep(0.1)


class AgentsSession:
    """An avatar that joined an agent's room (`/integrations/livekit/agents`) and speaks for it.

    It ends when the agent leaves, the avatar is disconnected, or the request's
    `maxSessionLength` / `maxIdleTime` (not speaking) pass.
    """

    def __init__(self, session_id: str, request: SessionRequest, avatar: Avatar,
                 limits: ComposeLimits,
                 on_closed: Callable[[AgentsSession], Awaitable[None]] | None = None) -> None:
        self.session_id = session_id
        self.request = request
        self.avatar = avatar
        self.limits = limits
        self.agent_identity = ""
        self.input: AgentAudioInput | None = None
        self.close_reason = ""
        self._on_closed = on_closed
        self._closed = False
        self._done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self, url: str, token: str) -> None:
        """Join, find the agent to speak for, start listening; raises if any step fails."""
        avatar = self.avatar
        await asyncio.wait_for(avatar.join(url, token), self.limits.avatar_join_timeout)
        room = avatar.room
        self.agent_identity = await asyncio.wait_for(self._find_agent(room),
                                                     self.limits.join_timeout)
        avatar.on_participant_disconnected = self._participant_left
        avatar.on_disconnected = lambda: self._spawn_close("avatar was disconnected")
        avatar.on_failed = lambda reason: self._spawn_close(f"avatar {reason}")
        self.input = AgentAudioInput(room, avatar.playout, self.agent_identity,
                                     self.limits.agent_max_streams)
        self.input.start()
        self._tasks = [asyncio.create_task(self._timers(), name="avatar-agents-timers")]
        log.info("avatar speaks for agent %s", self.agent_identity,
                 extra={"room": room.name, "participant": avatar.identity})

    async def _find_agent(self, room: rc.Room) -> str:
        wanted = room.local_participant.attributes.get(ATTRIBUTE_PUBLISH_ON_BEHALF, "")
        while True:
            agent_kind = rc.ParticipantKind.PARTICIPANT_KIND_AGENT
            for identity, participant in room.remote_participants.items():
                if identity == wanted or (not wanted and participant.kind == agent_kind):
                    return identity
            await asyncio.sleep(0.05)

    def _participant_left(self, identity: str) -> None:
        if identity == self.agent_identity:
            self._spawn_close(f"agent {identity} left the room")

    async def _timers(self) -> None:
        started = last_active = time.monotonic()
        while not self._closed:
            now = time.monotonic()
            if self.avatar.playout.speaking or self.avatar.playout.queued_seconds > 0:
                last_active = now
            if now - started >= self.request.max_session_length:
                self._spawn_close("max session length reached")
                return
            if now - last_active >= self.request.max_idle_time:
                self._spawn_close("max idle time reached")
                return
            await asyncio.sleep(0.5)

    def _spawn_close(self, reason: str) -> None:
        if not self._closed:
            task = asyncio.ensure_future(self.close(reason))
            self._tasks.append(task)

    async def close(self, reason: str) -> None:
        """Leave the room and release everything (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        log.info("agents avatar session ends: %s", reason, extra={"session": self.session_id})
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self.input is not None:
            await self.input.aclose()
        await self.avatar.aclose()
        if self._on_closed is not None:
            await self._on_closed(self)
        self._done.set()

    async def wait_closed(self) -> None:
        await self._done.wait()

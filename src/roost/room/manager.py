"""RoomManager: where rooms live on this node, joins, timeouts and lifecycle events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit.protocol import agent_dispatch, models
from livekit.protocol import room as room_pb

from roost.auth import Claims
from roost.config import Settings
from roost.ids import Identity, RoomName
from roost.room.participant import ClientParams, Participant, State
from roost.room.room import JoinError, Reason, Room

log = logging.getLogger("roost.rooms")

# (event name, room, participant or None, track or None)
Listener = Callable[[str, Room, Participant | None, models.TrackInfo | None], None]


@dataclass
class JoinResult:
    room: Room
    participant: Participant
    resumed: bool


class RoomManager:
    """All rooms hosted by this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rooms: dict[RoomName, Room] = {}
        self.listeners: list[Listener] = []
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._housekeeping())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def emit(self, event: str, room: Room, participant: Participant | None = None,
             track: models.TrackInfo | None = None) -> None:
        for listener in self.listeners:
            try:
                listener(event, room, participant, track)
            except Exception:
                log.exception("event listener failed", extra={"event": event})

    # -- rooms ---------------------------------------------------------------
    def create_room(
        self,
        name: RoomName,
        *,
        empty_timeout: int = 0,
        departure_timeout: int = 0,
        max_participants: int = 0,
        metadata: str = "",
        agents: list[agent_dispatch.RoomAgentDispatch] | None = None,
    ) -> Room:
        """Create `name` or return it if it exists (as CreateRoom does).

        `agents`: the room's agent dispatches (RoomConfiguration.agents); None or empty: the
        default dispatch for unnamed workers.
        """
        room = self.rooms.get(name)
        if room is not None and not room.closed:
            return room
        cfg = self.settings.room
        room = Room(
            name,
            empty_timeout=empty_timeout or cfg.empty_timeout,
            departure_timeout=departure_timeout or cfg.departure_timeout,
            max_participants=max_participants or cfg.max_participants,
            metadata=metadata,
        )
        room.on_participant_active.append(
            lambda r, p: self.emit("participant_joined", r, p))
        room.on_participant_left.append(self._participant_left)
        room.on_track.append(lambda r, p, pub, published: self.emit(
            "track_published" if published else "track_unpublished", r, p, pub.info))
        room.allow_pause = self.settings.rtc.allow_pause
        room.agent_dispatches = list(agents) if agents else None
        self.rooms[name] = room
        room.start()
        log.info("room created", extra=room.log_extra())
        self.emit("room_started", room)
        return room

    def delete_room(self, name: RoomName, reason: int = Reason.ROOM_DELETED) -> bool:
        room = self.rooms.pop(name, None)
        if room is None:
            return False
        room.close(reason)
        log.info("room closed", extra=room.log_extra())
        self.emit("room_finished", room)
        return True

    def _participant_left(self, room: Room, participant: Participant) -> None:
        self.emit("participant_left", room, participant)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.sweep(time.monotonic(), time.time())
            except Exception:
                log.exception("housekeeping failed")

    def sweep(self, mono: float, wall: float) -> None:
        """Close idle rooms and drop participants that never became active."""
        for room in list(self.rooms.values()):
            for p in list(room.participants.values()):
                if p.state != State.ACTIVE and wall - p.joined_at > self.settings.join_timeout:
                    room.remove(p, Reason.JOIN_FAILURE)
            if room.participants:
                continue
            if room.ever_joined:
                idle = mono - room.last_left_at
                limit = room.departure_timeout
            else:
                idle = wall - room.creation_time
                limit = room.empty_timeout
            if idle >= limit:
                self.delete_room(room.name, Reason.ROOM_CLOSED)

    # -- joins ---------------------------------------------------------------
    def join(self, claims: Claims, params: ClientParams, *,
             attributes: dict[str, str] | None = None,
             metadata: str | None = None) -> JoinResult:
        """Place a validated join: resume an existing session or create a new participant."""
        if self.draining:
            raise JoinError("server is shutting down", 503)
        name = claims.video.room
        room = self.rooms.get(name)
        if room is not None and room.closed:
            room = None
        existing = room.participants.get(claims.identity) if room is not None else None
        if params.reconnect:
            if existing is not None and existing.state != State.DISCONNECTED and (
                    not params.reconnect_sid or params.reconnect_sid == existing.sid) \
                    and existing.params.single_pc == params.single_pc:
                existing.params.initial_requests = params.initial_requests
                return JoinResult(room, existing, True)  # type: ignore[arg-type]
            raise ResumeRefused("no session to resume")
        if room is None:
            if not self.settings.room.auto_create and not claims.video.room_create:
                raise JoinError("requested room does not exist", 404)
            cfg = self.room_configuration(claims.room_config, claims.room_preset)
            room = self.create_room(
                name,
                empty_timeout=cfg.empty_timeout,
                departure_timeout=cfg.departure_timeout,
                max_participants=cfg.max_participants,
                metadata=cfg.metadata,
                agents=list(cfg.agents),
            )
        if existing is not None:
            room.remove(existing, Reason.DUPLICATE_IDENTITY)
        attrs = dict(claims.attributes)
        for k, v in (attributes or {}).items():
            if v:
                attrs[k] = v
        participant = Participant(
            identity=claims.identity,
            name=claims.name,
            metadata=claims.metadata if metadata is None else metadata,
            attributes=attrs,
            kind=claims.kind,
            permission=claims.video.to_permission(),
            params=params,
            api_key=claims.api_key,
            grant_raw=dict(claims.raw),
        )
        room.check_join(participant)
        return JoinResult(room, participant, False)

    def room_configuration(self, given: room_pb.RoomConfiguration | None,
                           preset: str = "") -> room_pb.RoomConfiguration:
        """A token's or CreateRoom's room configuration over the named preset's (a field the
        request leaves unset takes the preset's), as livekit's room allocator merges them.

        Raises JoinError for a preset `room.room_configurations` does not define.
        """
        out = room_pb.RoomConfiguration()
        if given is not None:
            out.CopyFrom(given)
        if not preset:
            return out
        base = self.settings.room.presets().get(preset)
        if base is None:
            raise JoinError(f"unknown room configuration {preset!r}", 400)
        for name in ("empty_timeout", "departure_timeout", "max_participants",
                     "min_playout_delay", "max_playout_delay", "metadata"):
            if not getattr(out, name):
                setattr(out, name, getattr(base, name))
        if not out.agents:
            out.agents.extend(base.agents)
        return out

    def find(self, room_name: RoomName, identity: Identity) -> tuple[Room, Participant] | None:
        room = self.rooms.get(room_name)
        if room is None:
            return None
        p = room.participants.get(identity)
        return (room, p) if p is not None else None

    def stats(self) -> dict[str, Any]:
        return {
            "rooms": len(self.rooms),
            "participants": sum(len(r.participants) for r in self.rooms.values()),
        }


class ResumeRefused(Exception):
    """A `reconnect=1` request names a session this node does not have."""

"""`Room`: connect to a LiveKit room and follow its participants, tracks and data.

Events (same names and arguments as `livekit.rtc.Room`): participant_connected/
disconnected/active, local_track_published/unpublished/subscribed, track_published/
unpublished/subscribed/unsubscribed/subscription_failed/muted/unmuted,
active_speakers_changed, room_metadata_changed, room_updated, participant_metadata/name/
attributes/permissions_changed, connection_quality_changed, data_received,
sip_dtmf_received, transcription_received, connection_state_changed, connected,
disconnected, reconnecting, reconnected, token_refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack
from livekit.protocol import models, rtc

from .data import DataPacket, SipDTMF, TranscriptionSegment
from .engine import RtcEngine
from .participant import LocalParticipant, RemoteParticipant
from .roster import RoomRoster
from .rpc import REQUEST_TOPIC, RESPONSE_TOPIC
from .signal import ConnectError
from .streams import ByteStreamHandler, StreamReceiver, TextStreamHandler
from .types import (
    ConnectionQuality,
    ConnectionState,
    DataPacketKind,
    DisconnectReason,
    ParticipantState,
    RoomOptions,
    SimulateScenarioKind,
    StreamState,
)

log = logging.getLogger("roost.client.room")
FULL_RECONNECT_ATTEMPTS = 3



@dataclass
class RtcStats:
    """aiortc statistics of both peer connections (one dict per stats object)."""

    publisher_stats: list[dict[str, Any]]
    subscriber_stats: list[dict[str, Any]]


class Room(RoomRoster):
    """A connection to one room (dual peer connection, aiortc media)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__()
        self._engine: RtcEngine | None = None
        self._info = models.Room()
        self._local: LocalParticipant | None = None
        self._remote: dict[str, RemoteParticipant] = {}
        self._state = ConnectionState.CONN_DISCONNECTED
        self._streams = StreamReceiver()
        self._pending_tracks: dict[str, tuple[MediaStreamTrack, str]] = {}
        self._speakers: dict[str, tuple[float, bool]] = {}
        self._token = ""
        self._url = ""
        self._restart_task: asyncio.Task[None] | None = None

    # ---- properties --------------------------------------------------------------

    @property
    async def sid(self) -> str:
        return self._info.sid

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def metadata(self) -> str:
        return self._info.metadata

    @property
    def num_participants(self) -> int:
        return self._info.num_participants

    @property
    def num_publishers(self) -> int:
        return self._info.num_publishers

    @property
    def creation_time(self) -> datetime.datetime:
        ms = self._info.creation_time_ms or self._info.creation_time * 1000
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)

    @property
    def local_participant(self) -> LocalParticipant:
        if self._local is None:
            raise RuntimeError("cannot access local participant before connecting")
        return self._local

    @property
    def remote_participants(self) -> dict[str, RemoteParticipant]:
        return self._remote

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def token(self) -> str:
        """The newest access token (the server refreshes it)."""
        return self._token

    def isconnected(self) -> bool:
        return self._state != ConnectionState.CONN_DISCONNECTED

    # ---- connect / disconnect ----------------------------------------------------

    async def connect(self, url: str, token: str, options: RoomOptions | None = None) -> None:
        """Join the room; returns once the primary peer connection is up."""
        if self._engine is not None and not self._engine.closed:
            raise RuntimeError("already connected")
        options = options or RoomOptions()
        engine = self._new_engine(options)
        self._url = url
        self._token = token
        engine.on_join = self._on_join
        try:
            await engine.connect(url, token)
        except ConnectError:
            self._engine = None
            self._local = None
            self._remote.clear()
            raise
        self._set_state(ConnectionState.CONN_CONNECTED)
        self.emit("connected")

    def _new_engine(self, options: RoomOptions) -> RtcEngine:
        engine = RtcEngine(options)
        self._engine = engine
        engine.on_message = self._on_message
        engine.on_data = self._on_data
        engine.on_track = self._on_remote_track
        engine.on_track_ended = self._on_track_ended
        engine.on_reconnecting = self._on_reconnecting
        engine.on_reconnected = self._on_reconnected
        engine.on_disconnected = self._cleanup
        engine.on_restart = self._on_restart
        engine.sync_state_extra = self._sync_state
        return engine

    def _on_restart(self, reason: int) -> None:
        task = asyncio.get_running_loop().create_task(self._full_reconnect(reason))
        self._restart_task = task

    async def _full_reconnect(self, reason: int) -> None:
        """Join again as a new session, keep the objects, republish the local tracks."""
        old = self._engine
        assert old is not None
        if self._state != ConnectionState.CONN_RECONNECTING:
            self._on_reconnecting()
        log.info("full reconnect (reason %s)", reason)
        for participant in self._remote.values():
            for publication in participant.track_publications.values():
                self._unsubscribe(publication, participant)
        self._pending_tracks.clear()
        for attempt in range(FULL_RECONNECT_ATTEMPTS):
            engine = self._new_engine(old.options)
            engine.on_join = self._on_rejoin
            try:
                await engine.connect(self._url, self._token)
                break
            except ConnectError as exc:
                log.info("full reconnect attempt %d failed: %s", attempt + 1, exc)
                await asyncio.sleep(1.0 + attempt)
        else:
            self._cleanup(reason)
            return
        if self._local is not None:
            await self._local._republish()
        self._on_reconnected()

    def _on_rejoin(self, join: rtc.JoinResponse) -> None:
        assert self._engine is not None and self._local is not None
        self._info = join.room
        self._local._engine = self._engine
        self._local._info = join.participant
        present = {info.identity for info in join.other_participants}
        for identity in [i for i in self._remote if i not in present]:
            self._remove(self._remote[identity], DisconnectReason.UNKNOWN_REASON)
        for info in join.other_participants:
            self._on_participant_info(info)

    async def disconnect(self, *, reason: int = DisconnectReason.CLIENT_INITIATED) -> None:
        """Leave the room."""
        restart, self._restart_task = self._restart_task, None
        if restart is not None and not restart.done():
            restart.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await restart
            self._cleanup(reason)
        engine = self._engine
        if engine is None or engine.closed:
            return
        await engine.close(send_leave=True, reason=reason)
        self._cleanup(reason)

    def _cleanup(self, reason: int) -> None:
        if self._state == ConnectionState.CONN_DISCONNECTED:
            return
        for participant in self._remote.values():
            for publication in participant.track_publications.values():
                if publication.track is not None:
                    publication.track._stop()
        self._streams.abort_all("Disconnected while receiving")
        if self._local is not None:
            self._local._close()
        self._set_state(ConnectionState.CONN_DISCONNECTED)
        self.emit("disconnected", reason)

    def _set_state(self, state: ConnectionState) -> None:
        if state != self._state:
            self._state = state
            self.emit("connection_state_changed", state)

    def _on_reconnecting(self) -> None:
        self._set_state(ConnectionState.CONN_RECONNECTING)
        self.emit("reconnecting")

    def _on_reconnected(self) -> None:
        self._set_state(ConnectionState.CONN_CONNECTED)
        self.emit("reconnected")

    async def simulate_scenario(self, scenario: int) -> None:
        """Trigger a failure for tests: SIGNAL_RECONNECT drops the signal socket."""
        if self._engine is None:
            raise RuntimeError("simulate_scenario requires a connected room")
        if scenario == SimulateScenarioKind.SIGNAL_RECONNECT:
            self._engine.simulate_signal_loss()
        elif scenario == SimulateScenarioKind.SERVER_LEAVE:
            req = rtc.SignalRequest()
            req.simulate.server_leave = True
            self._engine.send_signal(req)
        elif scenario == SimulateScenarioKind.FULL_RECONNECT:
            req = rtc.SignalRequest()
            req.simulate.leave_request_full_reconnect = True
            self._engine.send_signal(req)

    async def get_rtc_stats(self) -> RtcStats:
        """Statistics of both peer connections."""
        engine = self._engine
        if engine is None:
            raise RuntimeError("the room isn't connected")
        result: list[list[dict[str, Any]]] = []
        for pc in (engine.publisher, engine.subscriber):
            report = await pc.getStats() if pc is not None else {}
            result.append([vars(stat) for stat in report.values()])
        return RtcStats(result[0], result[1])

    # ---- stream handlers ---------------------------------------------------------

    def register_text_stream_handler(self, topic: str, handler: TextStreamHandler) -> None:
        """Call `handler(reader, sender_identity)` for each text stream on `topic`."""
        if topic in self._streams.text_handlers:
            raise ValueError(f"text stream handler for topic '{topic}' already set")
        self._streams.text_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        self._streams.text_handlers.pop(topic, None)

    def register_byte_stream_handler(self, topic: str, handler: ByteStreamHandler) -> None:
        """Call `handler(reader, sender_identity)` for each byte stream on `topic`."""
        if topic in self._streams.byte_handlers:
            raise ValueError(f"byte stream handler for topic '{topic}' already set")
        self._streams.byte_handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic: str) -> None:
        self._streams.byte_handlers.pop(topic, None)

    # ---- join and updates --------------------------------------------------------

    def _on_join(self, join: rtc.JoinResponse) -> None:
        assert self._engine is not None
        self._info = join.room
        self._local = LocalParticipant(self, self._engine, join.participant)
        self._remote.clear()
        rpc = self._local._rpc
        self._streams.text_handlers[REQUEST_TOPIC] = rpc.on_request_stream
        self._streams.text_handlers[RESPONSE_TOPIC] = rpc.on_response_stream
        for info in join.other_participants:
            participant = RemoteParticipant(info)
            self._remote[info.identity] = participant
            for track in info.tracks:
                participant._track_publications[track.sid] = self._publication(track, info.sid)

    def _on_message(self, msg: rtc.SignalResponse) -> None:
        which = msg.WhichOneof("message")
        local = self._local
        if which == "update":
            for info in msg.update.participants:
                self._on_participant_info(info)
        elif which == "track_published" and local is not None:
            local._track_published(msg.track_published)
        elif which == "track_unpublished" and local is not None:
            publication = local._track_publications.pop(msg.track_unpublished.track_sid, None)
            if publication is not None:
                self.emit("local_track_unpublished", publication)
        elif which == "mute" and local is not None:
            publication = local._track_publications.get(msg.mute.sid)
            if publication is not None and publication.track is not None:
                publication.track._set_muted(msg.mute.muted)
        elif which == "speakers_changed":
            self._on_speakers(msg.speakers_changed.speakers)
        elif which == "connection_quality":
            for update in msg.connection_quality.updates:
                participant = self._participant_by_sid(update.participant_sid)
                if participant is not None:
                    participant._connection_quality = ConnectionQuality(update.quality)
                    self.emit("connection_quality_changed", participant,
                              participant._connection_quality)
        elif which == "room_update":
            old = self._info.metadata
            self._info = msg.room_update.room
            if old != self._info.metadata:
                self.emit("room_metadata_changed", old, self._info.metadata)
            self.emit("room_updated")
        elif which == "refresh_token":
            self._token = msg.refresh_token
            self.emit("token_refreshed")
        elif which == "request_response" and local is not None:
            local._request_response(msg.request_response)
        elif which == "subscription_response":
            sid = msg.subscription_response.track_sid
            owner = next((p for p in self._remote.values() if sid in p.track_publications), None)
            self.emit("track_subscription_failed", owner, sid,
                      models.SubscriptionError.Name(msg.subscription_response.err))
        elif which == "track_subscribed" and local is not None:
            publication = local._track_publications.get(msg.track_subscribed.track_sid)
            if publication is not None:
                if not publication._first_subscription.done():
                    publication._first_subscription.set_result(None)
                self.emit("local_track_subscribed", publication.track)
        elif which == "stream_state_update":
            for state in msg.stream_state_update.stream_states:
                participant = self._participant_by_sid(state.participant_sid)
                pub = participant.track_publications.get(state.track_sid) if participant else None
                if pub is not None and pub.track is not None:
                    pub.track._stream_state = (StreamState.STATE_PAUSED if state.state
                                               else StreamState.STATE_ACTIVE)

    # ---- data --------------------------------------------------------------------

    def _on_data(self, packet: models.DataPacket, reliable: bool) -> None:
        which = packet.WhichOneof("value")
        sender = self._remote.get(packet.participant_identity)
        if which == "user":
            kind = DataPacketKind.KIND_RELIABLE if reliable else DataPacketKind.KIND_LOSSY
            self.emit("data_received", DataPacket(bytes(packet.user.payload), kind, sender,
                                                  packet.user.topic))
        elif which in ("rpc_request", "rpc_ack", "rpc_response") and self._local is not None:
            self._local._rpc.on_packet(packet)
        elif which in ("stream_header", "stream_chunk", "stream_trailer"):
            self._streams.on_packet(packet)
        elif which == "sip_dtmf":
            self.emit("sip_dtmf_received",
                      SipDTMF(packet.sip_dtmf.code, packet.sip_dtmf.digit, sender))
        elif which == "transcription":
            t = packet.transcription
            segments = [TranscriptionSegment(s.id, s.text, s.start_time, s.end_time, s.language,
                                             s.final) for s in t.segments]
            who = self._remote.get(t.transcribed_participant_identity) or (
                self._local if self._local and self._local.identity ==
                t.transcribed_participant_identity else None)
            publication = who.track_publications.get(t.track_id) if who is not None else None
            self.emit("transcription_received", segments, who, publication)

    # ---- resume ------------------------------------------------------------------

    def _sync_state(self, state: rtc.SyncState) -> None:
        if self._local is not None:
            self._local._sync_publications(state)
        assert self._engine is not None
        auto = self._engine.options.auto_subscribe
        state.subscription.subscribe = not auto
        for participant in self._remote.values():
            for publication in participant.track_publications.values():
                if publication._desired != auto:
                    state.subscription.track_sids.append(publication.sid)
                    tracks = state.subscription.participant_tracks.add()
                    tracks.participant_sid = participant.sid
                    tracks.track_sids.append(publication.sid)

    def __repr__(self) -> str:
        return (f"Room(sid={self._info.sid}, name={self.name}, "
                f"connection_state={self._state.name})")


__all__ = ["ParticipantState", "Room", "RtcStats"]

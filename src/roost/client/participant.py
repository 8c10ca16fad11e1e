"""Participants: the local one (publish tracks and data, metadata, RPC, streams) and remote ones."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from livekit.protocol import models, rtc

from .data import Transcription
from .outgoing import StreamSender
from .rpc import RpcHandler, RpcManager
from .track import (
    LocalTrack,
    LocalTrackPublication,
    LocalVideoTrack,
    RemoteTrack,
    RemoteTrackPublication,
    Track,
    TrackPublication,
)
from .types import (
    ConnectionQuality,
    ParticipantKind,
    ParticipantState,
    TrackKind,
    TrackPublishOptions,
    VideoCodec,
    participant_kind,
)

if TYPE_CHECKING:
    from .engine import RtcEngine
    from .room import Room

log = logging.getLogger("roost.client.participant")
UPDATE_TIMEOUT = 5.0
PUBLISH_TIMEOUT = 10.0


class PublishTrackError(Exception):
    """The server refused a track, or did not confirm it in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnpublishTrackError(PublishTrackError):
    """No published track has that sid."""


class PublishDataError(PublishTrackError):
    """The packet could not be sent (not connected, channel closed)."""


class Participant:
    """State shared by local and remote participants, read from their `ParticipantInfo`."""

    def __init__(self, info: models.ParticipantInfo) -> None:
        self._info = info
        self._connection_quality = ConnectionQuality.QUALITY_UNKNOWN
        self._audio_level = 0.0
        self._is_speaking = False
        self._track_publications: dict[str, Any] = {}

    @property
    def track_publications(self) -> dict[str, Any]:
        return self._track_publications

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def identity(self) -> str:
        return self._info.identity

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def metadata(self) -> str:
        return self._info.metadata

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self._info.attributes)

    @property
    def kind(self) -> ParticipantKind:
        return participant_kind(self._info.kind)

    @property
    def state(self) -> ParticipantState:
        return ParticipantState(self._info.state)

    @property
    def joined_at(self) -> datetime.datetime | None:
        ms = self._info.joined_at_ms or self._info.joined_at * 1000
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC) if ms else None

    @property
    def permissions(self) -> models.ParticipantPermission:
        return self._info.permission

    @property
    def connection_quality(self) -> ConnectionQuality:
        return self._connection_quality

    @property
    def disconnect_reason(self) -> int:
        return self._info.disconnect_reason

    @property
    def audio_level(self) -> float:
        return self._audio_level

    @property
    def is_speaking(self) -> bool:
        return self._is_speaking

    @property
    def client_protocol(self) -> int:
        return self._info.client_protocol


class RemoteParticipant(Participant):
    """Another participant in the room."""

    def __init__(self, info: models.ParticipantInfo) -> None:
        super().__init__(info)
        self._track_publications: dict[str, RemoteTrackPublication] = {}
        self._track_waiters: list[tuple[int, Callable[[Track], None]]] = []

    @property
    def track_publications(self) -> dict[str, RemoteTrackPublication]:
        return self._track_publications

    def _wait_for_track(self, source: int, bind: Callable[[Track], None]) -> None:
        """Call `bind` with the subscribed track of `source`, now or once it arrives."""
        for pub in self._track_publications.values():
            if pub.source == source and isinstance(pub.track, RemoteTrack):
                bind(pub.track)
                return
        self._track_waiters.append((source, bind))

    def _track_subscribed(self, publication: RemoteTrackPublication) -> None:
        waiting, self._track_waiters = self._track_waiters, []
        for source, bind in waiting:
            if source == publication.source and publication.track is not None:
                bind(publication.track)
            else:
                self._track_waiters.append((source, bind))

    def __repr__(self) -> str:
        return f"RemoteParticipant(sid={self.sid}, identity={self.identity}, name={self.name})"


class LocalParticipant(Participant, StreamSender):
    """This client's participant: publishes tracks and data, calls and serves RPC."""

    def __init__(self, room: Room, engine: RtcEngine, info: models.ParticipantInfo) -> None:
        super().__init__(info)
        self._room = room
        self._engine = engine
        self._track_publications: dict[str, LocalTrackPublication] = {}
        self._rpc = RpcManager(self)
        self._request_id = 0
        self._requests: dict[int, asyncio.Future[None]] = {}
        self._publishing: dict[str, asyncio.Future[models.TrackInfo]] = {}
        self._info_waiters: list[tuple[Callable[[models.ParticipantInfo], bool],
                                       asyncio.Future[None]]] = []

    @property
    def track_publications(self) -> dict[str, LocalTrackPublication]:
        return self._track_publications

    # ---- data --------------------------------------------------------------------

    async def _send_packet(self, packet: models.DataPacket, reliable: bool = True) -> None:
        packet.participant_identity = self.identity
        await self._engine.send_data(packet, reliable)

    async def publish_data(self, payload: bytes | str, *, reliable: bool = True,
                           destination_identities: list[str] | None = None,
                           topic: str = "") -> None:
        """Send a user packet to everyone, or to `destination_identities`."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        packet = models.DataPacket(destination_identities=list(destination_identities or []))
        packet.user.payload = payload
        packet.user.destination_identities.extend(destination_identities or [])
        if topic:
            packet.user.topic = topic
        try:
            await self._send_packet(packet, reliable)
        except ConnectionError as exc:
            raise PublishDataError(str(exc)) from exc

    async def publish_dtmf(self, *, code: int, digit: str) -> None:
        """Send a SIP DTMF tone event."""
        packet = models.DataPacket()
        packet.sip_dtmf.code = code
        packet.sip_dtmf.digit = digit
        await self._send_packet(packet)

    async def publish_transcription(self, transcription: Transcription) -> None:
        """Send transcription segments for a participant's track."""
        packet = models.DataPacket()
        t = packet.transcription
        t.transcribed_participant_identity = transcription.participant_identity
        t.track_id = transcription.track_sid
        for s in transcription.segments:
            t.segments.add(id=s.id, text=s.text, start_time=s.start_time, end_time=s.end_time,
                           final=s.final, language=s.language)
        await self._send_packet(packet)

    # ---- RPC ---------------------------------------------------------------------

    async def perform_rpc(self, *, destination_identity: str, method: str, payload: str,
                          response_timeout: float | None = None,
                          max_round_trip_latency: float | None = None) -> str:
        """Call `method` on another participant and return its answer (or raise RpcError)."""
        return await self._rpc.perform_rpc(
            destination_identity=destination_identity, method=method, payload=payload,
            response_timeout=response_timeout, max_round_trip_latency=max_round_trip_latency)

    def register_rpc_method(self, method_name: str, handler: RpcHandler | None = None) -> Any:
        """Serve `method_name` with `handler` (sync or async); also usable as a decorator."""
        def register(fn: RpcHandler) -> RpcHandler:
            self._rpc.handlers[method_name] = fn
            return fn

        return register(handler) if handler is not None else register

    def unregister_rpc_method(self, method: str) -> None:
        """Stop serving `method`."""
        self._rpc.handlers.pop(method, None)

    def _remote_client_protocol(self, identity: str) -> int | None:
        participant = self._room.remote_participants.get(identity)
        if participant is None:
            return None
        return min(participant.client_protocol, self._engine.options.client_protocol)

    def _server_version(self) -> str:
        join = self._engine.join
        return join.server_info.version if join is not None else ""

    # ---- metadata ----------------------------------------------------------------

    async def set_metadata(self, metadata: str) -> None:
        """Change this participant's metadata; returns once the server confirmed it."""
        await self._update(lambda u: setattr(u, "metadata", metadata),
                           lambda info: info.metadata == metadata)

    async def set_name(self, name: str) -> None:
        """Change this participant's name; returns once the server confirmed it."""
        await self._update(lambda u: setattr(u, "name", name), lambda info: info.name == name)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        """Set (or, with an empty value, delete) attributes; returns once confirmed."""
        def matches(info: models.ParticipantInfo) -> bool:
            return all(info.attributes.get(k, "") == v for k, v in attributes.items())

        await self._update(lambda u: u.attributes.update(attributes), matches)

    async def _update(self, fill: Callable[[rtc.UpdateParticipantMetadata], None],
                      done: Callable[[models.ParticipantInfo], bool]) -> None:
        self._request_id += 1
        request_id = self._request_id
        req = rtc.SignalRequest()
        req.update_metadata.request_id = request_id
        fill(req.update_metadata)
        loop = asyncio.get_running_loop()
        confirmed: asyncio.Future[None] = loop.create_future()
        refused: asyncio.Future[None] = loop.create_future()
        self._info_waiters.append((done, confirmed))
        self._requests[request_id] = refused
        self._engine.send_signal(req)
        try:
            finished, _ = await asyncio.wait({confirmed, refused}, timeout=UPDATE_TIMEOUT,
                                             return_when=asyncio.FIRST_COMPLETED)
            if not finished:
                raise TimeoutError("the server did not confirm the update within 5 s")
            if confirmed in finished:
                return
            refused.result()
        finally:
            self._requests.pop(request_id, None)
            self._info_waiters = [(p, f) for p, f in self._info_waiters if f is not confirmed]
            for fut in (confirmed, refused):
                if not fut.done():
                    fut.cancel()

    def _update_info(self, info: models.ParticipantInfo) -> None:
        self._info = info
        for predicate, fut in list(self._info_waiters):
            if not fut.done() and predicate(info):
                fut.set_result(None)

    def _request_response(self, resp: rtc.RequestResponse) -> None:
        if resp.reason == rtc.RequestResponse.Reason.OK:
            return
        error = RuntimeError(f"{rtc.RequestResponse.Reason.Name(resp.reason)}: {resp.message}")
        fut = self._requests.get(resp.request_id)
        if fut is not None and not fut.done():
            fut.set_exception(error)
        if resp.WhichOneof("request") == "add_track":
            pending = self._publishing.get(resp.add_track.cid)
            if pending is not None and not pending.done():
                pending.set_exception(PublishTrackError(str(error)))

    # ---- tracks ------------------------------------------------------------------

    async def publish_track(self, track: LocalTrack,
                            options: TrackPublishOptions | None = None) -> LocalTrackPublication:
        """Announce the track (AddTrack), wait for TrackPublished, then negotiate its media."""
        options = options or TrackPublishOptions()
        info = await self._announce(track, options)
        self._attach(track, options, info)
        publication = LocalTrackPublication(info, track)
        publication._options = options
        self._track_publications[info.sid] = publication
        await self._engine.negotiate_publisher()
        self._room.emit("local_track_published", publication, track)
        return publication

    async def _announce(self, track: LocalTrack, options: TrackPublishOptions
                        ) -> models.TrackInfo:
        """Send AddTrack (cid = the aiortc track id in the offer's msid); the server's TrackInfo."""
        cid = track.rtc_track.id
        req = rtc.SignalRequest()
        add = req.add_track
        add.cid = cid
        add.name = track.name
        add.source = options.source  # type: ignore[assignment]
        add.muted = track.muted
        add.disable_dtx = not options.dtx
        add.disable_red = True  # aiortc has no audio/red
        add.stream = options.stream
        if track.kind == TrackKind.KIND_VIDEO:
            add.type = models.TrackType.VIDEO
            if isinstance(track, LocalVideoTrack):
                add.width, add.height = track.source.width, track.source.height
        else:
            add.type = models.TrackType.AUDIO
        fut: asyncio.Future[models.TrackInfo] = asyncio.get_running_loop().create_future()
        self._publishing[cid] = fut
        self._engine.send_signal(req)
        try:
            return await asyncio.wait_for(fut, PUBLISH_TIMEOUT)
        except TimeoutError:
            raise PublishTrackError("the server did not confirm the track in time") from None
        finally:
            self._publishing.pop(cid, None)

    def _attach(self, track: LocalTrack, options: TrackPublishOptions,
                info: models.TrackInfo) -> None:
        if track.kind == TrackKind.KIND_VIDEO:
            codec = "video/H264" if options.video_codec == VideoCodec.H264 else "video/VP8"
        else:
            codec = "audio/opus"
        track._sender = self._engine.add_track(track.rtc_track, codec)
        track._sid = info.sid
        track._on_mute = self._on_local_mute

    async def _republish(self) -> None:
        """After a full reconnect: publish every track again (new sids, same objects)."""
        for old_sid, publication in list(self._track_publications.items()):
            track = publication.track
            if track is None:
                continue
            try:
                info = await self._announce(track, publication._options)
            except PublishTrackError:
                log.warning("could not republish %s", old_sid)
                continue
            self._attach(track, publication._options, info)
            self._track_publications.pop(old_sid, None)
            publication._info = info
            self._track_publications[info.sid] = publication
            self._room.emit("local_track_republished", publication, old_sid)
        if self._track_publications:
            await self._engine.negotiate_publisher()

    def _track_published(self, resp: rtc.TrackPublishedResponse) -> None:
        fut = self._publishing.get(resp.cid)
        if fut is not None and not fut.done():
            fut.set_result(resp.track)

    def _on_local_mute(self, track: LocalTrack, muted: bool) -> None:
        req = rtc.SignalRequest()
        req.mute.sid = track.sid
        req.mute.muted = muted
        self._engine.send_signal(req)
        publication = self._track_publications.get(track.sid)
        if publication is not None:
            publication._info.muted = muted
            self._room.emit("track_muted" if muted else "track_unmuted", self, publication)

    async def unpublish_track(self, track_sid: str) -> None:
        """Stop sending the track; the server notices and tells the room."""
        publication = self._track_publications.pop(track_sid, None)
        if publication is None or publication.track is None:
            raise UnpublishTrackError(f"no published track {track_sid}")
        track = publication.track
        if track._sender is not None:
            await self._engine.remove_track(track._sender)
            track._sender = None
        track.rtc_track.stop()
        await self._engine.negotiate_publisher()
        self._room.emit("local_track_unpublished", publication)

    def set_track_subscription_permissions(
        self, *, allow_all_participants: bool,
        participant_permissions: list[rtc.TrackPermission] | None = None,
    ) -> None:
        """Limit who may subscribe to this participant's tracks."""
        req = rtc.SignalRequest()
        req.subscription_permission.all_participants = allow_all_participants
        req.subscription_permission.track_permissions.extend(participant_permissions or [])
        self._engine.send_signal(req)

    def _sync_publications(self, state: rtc.SyncState) -> None:
        for publication in self._track_publications.values():
            track = publication.track
            item = state.publish_tracks.add()
            item.cid = track.rtc_track.id if track is not None else ""
            item.track.CopyFrom(publication._info)

    def _all_publications(self) -> list[TrackPublication]:
        return list(self._track_publications.values())

    def _close(self) -> None:
        self._rpc.close()
        for fut in self._publishing.values():
            if not fut.done():
                fut.set_exception(PublishTrackError("disconnected"))

    def __repr__(self) -> str:
        return f"LocalParticipant(sid={self.sid}, identity={self.identity}, name={self.name})"

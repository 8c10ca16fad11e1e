"""The room's view of its participants: ParticipantUpdates turned into objects and events,
remote tracks attached to their publications, active speakers."""

from __future__ import annotations

from typing import Any

from aiortc import MediaStreamTrack
from livekit.protocol import models

from .engine import RtcEngine
from .events import EventEmitter, EventTypes
from .participant import LocalParticipant, Participant, RemoteParticipant
from .track import RemoteAudioTrack, RemoteTrack, RemoteTrackPublication, RemoteVideoTrack
from .types import DisconnectReason, TrackKind


def _newer(a: models.ParticipantInfo, b: models.ParticipantInfo) -> bool:
    """Is `a` a later session than `b` (same identity)?"""
    return (a.joined_at, a.joined_at_ms, a.sid) > (b.joined_at, b.joined_at_ms, b.sid)


class RoomRoster(EventEmitter[EventTypes]):
    """Participants and their publications, kept in step with the server's updates."""

    _engine: RtcEngine | None
    _local: LocalParticipant | None
    _remote: dict[str, RemoteParticipant]
    _pending_tracks: dict[str, tuple[MediaStreamTrack, str]]
    _speakers: dict[str, tuple[float, bool]]

    def _publication(self, info: models.TrackInfo, participant_sid: str
                     ) -> RemoteTrackPublication:
        assert self._engine is not None
        return RemoteTrackPublication(info, participant_sid, self._engine.send_signal)

    def _participant_by_sid(self, sid: str) -> Participant | None:
        if self._local is not None and self._local.sid == sid:
            return self._local
        return next((p for p in self._remote.values() if p.sid == sid), None)

    def _on_participant_info(self, info: models.ParticipantInfo) -> None:
        local = self._local
        if local is not None and info.identity == local.identity:
            if info.sid == local.sid and (not info.version or info.version >= local._info.version):
                old = local._info
                local._update_info(info)
                self._emit_info_changes(local, old, info)
            return
        existing = self._remote.get(info.identity)
        if existing is not None and existing.sid != info.sid:
            if not _newer(info, existing._info):
                return
            self._remove(existing, DisconnectReason.DUPLICATE_IDENTITY)
            existing = None
        if info.state == models.ParticipantInfo.State.DISCONNECTED:
            if existing is not None:
                existing._info.disconnect_reason = info.disconnect_reason
                self._remove(existing, info.disconnect_reason)
            return
        if existing is None:
            participant = RemoteParticipant(info)
            self._remote[info.identity] = participant
            self.emit("participant_connected", participant)
            self._sync_tracks(participant, info)
            return
        if info.version and info.version < existing._info.version:
            return
        old = existing._info
        existing._info = info
        self._emit_info_changes(existing, old, info)
        if old.state != info.state and info.state == models.ParticipantInfo.State.ACTIVE:
            self.emit("participant_active", existing)
        self._sync_tracks(existing, info)

    def _emit_info_changes(self, participant: Participant, old: models.ParticipantInfo,
                           new: models.ParticipantInfo) -> None:
        if old.metadata != new.metadata:
            self.emit("participant_metadata_changed", participant, old.metadata, new.metadata)
        if old.name != new.name:
            self.emit("participant_name_changed", participant, old.name, new.name)
        changed = {k: v for k, v in new.attributes.items() if old.attributes.get(k) != v}
        changed.update({k: "" for k in old.attributes if k not in new.attributes})
        if changed:
            self.emit("participant_attributes_changed", changed, participant)
        if old.permission != new.permission:
            self.emit("participant_permissions_changed", participant, new.permission)

    def _sync_tracks(self, participant: RemoteParticipant, info: models.ParticipantInfo) -> None:
        current = {track.sid: track for track in info.tracks}
        for sid in [sid for sid in participant.track_publications if sid not in current]:
            gone = participant._track_publications.pop(sid)
            self._unsubscribe(gone, participant)
            self.emit("track_unpublished", gone, participant)
        for sid, track_info in current.items():
            publication = participant._track_publications.get(sid)
            if publication is None:
                publication = self._publication(track_info, participant.sid)
                participant._track_publications[sid] = publication
                self.emit("track_published", publication, participant)
                pending = self._pending_tracks.pop(sid, None)
                if pending is not None:
                    self._subscribe(publication, participant, pending[0])
                continue
            was_muted = publication._info.muted
            publication._info = track_info
            if track_info.muted != was_muted:
                if publication.track is not None:
                    publication.track._muted = track_info.muted
                self.emit("track_muted" if track_info.muted else "track_unmuted",
                          participant, publication)

    def _remove(self, participant: RemoteParticipant, reason: int) -> None:
        self._remote.pop(participant.identity, None)
        for publication in list(participant.track_publications.values()):
            self._unsubscribe(publication, participant)
            self.emit("track_unpublished", publication, participant)
        participant._track_publications.clear()
        if self._local is not None:
            self._local._rpc.participant_left(participant.identity)
        self._speakers.pop(participant.sid, None)
        self.emit("participant_disconnected", participant)

    # ---- media -------------------------------------------------------------------

    def _on_remote_track(self, rtc_track: MediaStreamTrack, participant_sid: str,
                         track_sid: str) -> None:
        for participant in self._remote.values():
            publication = participant.track_publications.get(track_sid)
            if publication is not None:
                self._subscribe(publication, participant, rtc_track)
                return
        self._pending_tracks[track_sid] = (rtc_track, participant_sid)

    def _subscribe(self, publication: RemoteTrackPublication, participant: RemoteParticipant,
                   rtc_track: MediaStreamTrack) -> None:
        if publication.track is not None:
            publication.track._stop()
        cls = RemoteVideoTrack if publication.kind == TrackKind.KIND_VIDEO else RemoteAudioTrack
        track: RemoteTrack = cls(publication._info, rtc_track)
        track._start()
        publication._track = track
        publication._subscribed = True
        self.emit("track_subscribed", track, publication, participant)
        participant._track_subscribed(publication)

    def _on_track_ended(self, track_sid: str) -> None:
        self._pending_tracks.pop(track_sid, None)
        for participant in self._remote.values():
            publication = participant.track_publications.get(track_sid)
            if publication is not None:
                self._unsubscribe(publication, participant)

    def _unsubscribe(self, publication: RemoteTrackPublication,
                     participant: RemoteParticipant) -> None:
        track = publication.track
        if track is None:
            return
        track._stop()
        publication._track = None
        publication._subscribed = False
        self.emit("track_unsubscribed", track, publication, participant)

    def _on_speakers(self, speakers: Any) -> None:
        for speaker in speakers:
            if speaker.active:
                self._speakers[speaker.sid] = (speaker.level, True)
            else:
                self._speakers.pop(speaker.sid, None)
        active: list[Participant] = []
        for sid, (level, _) in sorted(self._speakers.items(), key=lambda kv: -kv[1][0]):
            participant = self._participant_by_sid(sid)
            if participant is not None:
                participant._audio_level, participant._is_speaking = level, True
                active.append(participant)
        for participant in [self._local, *self._remote.values()]:
            if participant is not None and participant.sid not in self._speakers:
                participant._audio_level, participant._is_speaking = 0.0, False
        self.emit("active_speakers_changed", active)

"""Published tracks and subscriptions: AddTrack bookkeeping and who receives what."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from livekit.protocol import models, rtc

from roost import ids
from roost.ids import ParticipantSid, TrackSid

if TYPE_CHECKING:
    from roost.media.types import DownTrack, MediaInfo, UpTrack
    from roost.room.participant import Participant

log = logging.getLogger("roost.tracks")

RR = rtc.RequestResponse.Reason
TrackType = models.TrackType
Source = models.TrackSource

# Type letters LiveKit puts in track sids (TR_AM… microphone, TR_VC… camera, …).
_SID_TAGS = {
    (TrackType.AUDIO, Source.MICROPHONE): "AM",
    (TrackType.AUDIO, Source.SCREEN_SHARE_AUDIO): "As",
    (TrackType.VIDEO, Source.CAMERA): "VC",
    (TrackType.VIDEO, Source.SCREEN_SHARE): "VS",
}


class TrackRefused(Exception):
    """An AddTrack request was refused; `reason` is a RequestResponse.Reason."""

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Subscription:
    """One participant receiving one publication."""

    subscriber: Participant
    publication: TrackPublication
    down: DownTrack
    disabled: bool = False
    max_quality: int = models.VideoQuality.HIGH


@dataclass
class TrackPublication:
    """A track a participant published, with its media source once it arrived."""

    publisher: Participant
    info: models.TrackInfo
    cid: str
    up: UpTrack | None = None
    subscribers: dict[ParticipantSid, Subscription] = field(default_factory=dict)
    ever_subscribed: bool = False

    @property
    def sid(self) -> TrackSid:
        return TrackSid(self.info.sid)

    @property
    def published(self) -> bool:
        return self.up is not None


def new_track_info(req: rtc.AddTrackRequest) -> models.TrackInfo:
    """The TrackInfo roost answers an AddTrackRequest with."""
    tag = _SID_TAGS.get((req.type, req.source), "")
    info = models.TrackInfo(
        sid=ids.track_sid(tag),
        type=req.type,
        name=req.name,
        muted=req.muted,
        width=req.width,
        height=req.height,
        source=req.source,
        disable_dtx=req.disable_dtx,
        disable_red=req.disable_red,
        encryption=req.encryption,
        stream=req.stream or ("screen" if req.source in (Source.SCREEN_SHARE,
                                                          Source.SCREEN_SHARE_AUDIO)
                              else "camera"),
        backup_codec_policy=req.backup_codec_policy,
        simulcast=len(req.layers) > 1,
        stereo=req.stereo,
    )
    info.layers.extend(req.layers)
    info.audio_features.extend(req.audio_features)
    for sc in req.simulcast_codecs:
        codec = info.codecs.add()
        codec.mime_type = _mime(req.type, sc.codec)
        codec.cid = sc.cid
        codec.layers.extend(sc.layers or req.layers)
        codec.video_layer_mode = sc.video_layer_mode
    info.version.unix_micro = int(time.time() * 1_000_000)
    return info


def _mime(kind: int, codec: str) -> str:
    if not codec or "/" in codec:
        return codec
    return ("audio/" if kind == TrackType.AUDIO else "video/") + codec


class PublisherTracks:
    """One participant's publications: pending AddTracks and media matched to them."""

    MAX_PENDING = 20

    def __init__(self, participant: Participant) -> None:
        self.participant = participant
        self.pending: dict[str, TrackPublication] = {}  # by cid
        self.published: dict[TrackSid, TrackPublication] = {}
        self.unmatched: list[tuple[MediaInfo, UpTrack]] = []

    def add(self, req: rtc.AddTrackRequest) -> TrackPublication:
        """Validate an AddTrackRequest and register it as pending."""
        p = self.participant
        perm = p.permission
        if not perm.can_publish:
            raise TrackRefused(RR.NOT_ALLOWED, "does not have permission to publish")
        if perm.can_publish_sources and req.source not in perm.can_publish_sources:
            raise TrackRefused(RR.NOT_ALLOWED, "does not have permission to publish this source")
        if req.type not in (TrackType.AUDIO, TrackType.VIDEO):
            raise TrackRefused(RR.UNSUPPORTED_TYPE, "only audio and video tracks are published")
        if req.sid and req.sid not in self.published:
            raise TrackRefused(RR.NOT_FOUND, f"unknown track {req.sid}")
        if not req.cid:
            raise TrackRefused(RR.INVALID_REQUEST, "AddTrackRequest needs a cid")
        existing = self.pending.get(req.cid)
        if existing is not None:
            return existing
        for pub in self.published.values():
            if pub.cid == req.cid:
                return pub
        if len(self.pending) >= self.MAX_PENDING:
            raise TrackRefused(RR.LIMIT_EXCEEDED, "too many pending tracks")
        pub = TrackPublication(publisher=p, info=new_track_info(req), cid=req.cid)
        self.pending[req.cid] = pub
        return pub

    def match(self, media: MediaInfo, up: UpTrack) -> TrackPublication | None:
        """Bind arriving media to its pending AddTrack (by msid track id = cid)."""
        pub = self.pending.pop(media.track_id, None)
        if pub is None:
            for cid, cand in self.pending.items():
                if any(c.cid == media.track_id or c.sdp_cid == media.track_id
                       for c in cand.info.codecs):
                    pub = self.pending.pop(cid)
                    break
        if pub is None:
            kind = TrackType.AUDIO if media.kind == "audio" else TrackType.VIDEO
            for cid, cand in self.pending.items():
                if cand.info.type == kind:
                    pub = self.pending.pop(cid)
                    break
        if pub is None:
            self.unmatched.append((media, up))
            return None
        self._bind(pub, media, up)
        return pub

    def retry_unmatched(self) -> list[TrackPublication]:
        waiting, self.unmatched = self.unmatched, []
        return [pub for media, up in waiting if (pub := self.match(media, up)) is not None]

    def _bind(self, pub: TrackPublication, media: MediaInfo, up: UpTrack) -> None:
        pub.up = up
        info = pub.info
        info.mid = media.mid
        if media.mime_type:
            info.mime_type = media.mime_type
        if not info.codecs:
            codec = info.codecs.add()
            codec.mime_type = info.mime_type
            codec.cid = pub.cid
            codec.layers.extend(info.layers)
        for codec in info.codecs:
            if not codec.mid and (codec.mime_type.lower() == info.mime_type.lower()
                                  or len(info.codecs) == 1):
                codec.mid = media.mid
                if not codec.mime_type:
                    codec.mime_type = info.mime_type
        for i, layer in enumerate(info.layers):
            if i < len(media.rids) and not layer.rid:
                layer.rid = media.rids[i]
        self.published[pub.sid] = pub
        self.participant.tracks[pub.sid] = info

    def by_mid(self, mid: str) -> TrackPublication | None:
        for pub in self.published.values():
            if pub.info.mid == mid:
                return pub
        return None

    def remove(self, sid: TrackSid) -> TrackPublication | None:
        pub = self.published.pop(sid, None)
        if pub is not None:
            self.participant.tracks.pop(sid, None)
        return pub


def quality_for(info: models.TrackInfo, width: int, height: int) -> int:
    """The lowest layer that covers the requested size (LiveKit's 0.9 rule)."""
    if not info.layers or (width == 0 and height == 0):
        return models.VideoQuality.HIGH
    portrait = info.width and info.height and info.height > info.width
    want = width if portrait else height
    layers = sorted(info.layers, key=lambda la: la.height if not portrait else la.width)
    for layer in layers:
        size = layer.width if portrait else layer.height
        if size >= 0.9 * want:
            return int(layer.quality)
    return int(layers[-1].quality)

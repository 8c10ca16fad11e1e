"""Dynacast: tell publishers which simulcast layers anyone still watches."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from livekit.protocol import models, rtc

if TYPE_CHECKING:
    from roost.room.participant import Participant
    from roost.room.tracks import TrackPublication

DOWNGRADE_DELAY = 5.0  # seconds before layers nobody needs are switched off
Q = models.VideoQuality


def needed_quality(pub: TrackPublication) -> int:
    """Highest quality any enabled subscriber wants; OFF when nobody watches."""
    best = -1
    for s in pub.subscribers.values():
        if not s.disabled:
            best = max(best, min(int(s.max_quality), Q.HIGH))
    return best if best >= 0 else Q.OFF


def quality_update(pub: TrackPublication, max_quality: int) -> rtc.SignalResponse:
    msg = rtc.SignalResponse()
    upd = msg.subscribed_quality_update
    upd.track_sid = pub.sid
    qualities = [rtc.SubscribedQuality(quality=q, enabled=max_quality != Q.OFF
                                          and q <= max_quality)
                 for q in (Q.LOW, Q.MEDIUM, Q.HIGH)]
    upd.subscribed_qualities.extend(qualities)
    mime = (pub.info.mime_type or "video/vp8").split("/")[-1].lower()
    codec = upd.subscribed_codecs.add()
    codec.codec = mime
    codec.qualities.extend(qualities)
    return msg


class Dynacast:
    """Per publisher: sends SubscribedQualityUpdate; upgrades at once, downgrades late."""

    def __init__(self, publisher: Participant) -> None:
        self.publisher = publisher
        self.sent: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def update(self) -> None:
        for pub in self.publisher.publications.published.values():
            if pub.info.type != models.TrackType.VIDEO:
                continue
            want = needed_quality(pub)
            sent = self.sent.get(pub.sid)
            timer = self._timers.pop(pub.sid, None)
            if timer is not None:
                timer.cancel()
            if sent == want:
                continue
            if sent is None or (want != Q.OFF and (sent == Q.OFF or want > sent)):
                self._send(pub, want)
            else:
                loop = asyncio.get_running_loop()
                self._timers[pub.sid] = loop.call_later(DOWNGRADE_DELAY, self._send, pub, want)

    def _send(self, pub: TrackPublication, quality: int) -> None:
        self._timers.pop(pub.sid, None)
        if pub.sid not in self.publisher.publications.published:
            return
        self.sent[pub.sid] = quality
        self.publisher.send(quality_update(pub, quality))

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

"""Active speakers: SpeakersChanged deltas every 400 ms from the publishers' audio levels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from livekit.protocol import models, rtc

from roost.ids import ParticipantSid

if TYPE_CHECKING:
    from roost.room.participant import Participant
    from roost.room.room import Room

UPDATE_INTERVAL = 0.4
SPEAKING_LEVEL = 10 ** (-35 / 20)  # smoothed linear level at which a track counts as speaking


def quantize(level: float) -> float:
    """Round up to a multiple of 1/8, as LiveKit reports speaker levels."""
    return min(1.0, math.ceil(level * 8) / 8)


class ActiveSpeakers:
    """Tracks who is speaking and tells each participant what changed."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.last: dict[str, float] = {}  # participant sid → reported level

    def levels(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.room.participants.values():
            best = 0.0
            for pub in p.publications.published.values():
                if pub.up is None or pub.info.type != models.TrackType.AUDIO or pub.info.muted:
                    continue
                best = max(best, pub.up.audio_level)
            if best >= SPEAKING_LEVEL:
                out[p.sid] = quantize(best)
        return out

    def tick(self) -> None:
        now = self.levels()
        changed: list[models.SpeakerInfo] = []
        for sid, level in sorted(now.items(), key=lambda kv: -kv[1]):
            if self.last.get(sid) != level:
                changed.append(models.SpeakerInfo(sid=sid, level=level, active=True))
        for sid in self.last:
            if sid not in now:
                changed.append(models.SpeakerInfo(sid=sid, level=0.0, active=False))
        self.last = now
        if not changed:
            return
        for pub in self.room.subscriptions.publications():
            if pub.up is not None and pub.info.type == models.TrackType.VIDEO:
                pub.up.speaking = pub.publisher.sid in now
        for p in self.room.participants.values():
            if not p.connected:
                continue
            visible = self._visible_to(p)
            entries = [s for s in changed if s.sid in visible]
            if entries:
                msg = rtc.SignalResponse()
                msg.speakers_changed.speakers.extend(entries)
                p.send(msg)

    def _visible_to(self, p: Participant) -> set[ParticipantSid]:
        sids = {p.sid}
        for pub in self.room.subscriptions.publications():
            if p.sid in pub.subscribers:
                sids.add(pub.publisher.sid)
        return sids

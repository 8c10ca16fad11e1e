"""Connection quality every 5 s from the publisher's loss and the signalling RTT."""

from __future__ import annotations

from typing import TYPE_CHECKING

from livekit.protocol import models, rtc

if TYPE_CHECKING:
    from roost.room.participant import Participant
    from roost.room.room import Room

UPDATE_INTERVAL = 5.0
Quality = models.ConnectionQuality


def score(loss: float, rtt_ms: float) -> float:
    """A 0-100 score: loss dominates, high RTT costs a little (LiveKit-style thresholds)."""
    s = 100.0 - loss * 100.0 * 4.0 - max(0.0, rtt_ms - 200.0) / 20.0
    return max(0.0, min(100.0, s))


def to_quality(s: float) -> int:
    if s > 80:
        return Quality.EXCELLENT
    if s > 40:
        return Quality.GOOD
    if s > 20:
        return Quality.POOR
    return Quality.LOST


def mos(s: float) -> float:
    return 1 + 0.035 * s + 7e-6 * s * (s - 60) * (100 - s)


class ConnectionQualities:
    """Computes per-participant quality and sends ConnectionQualityUpdate on change."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.last: dict[str, int] = {}

    def measure(self, p: Participant) -> tuple[int, float]:
        losses = [pub.up.loss_fraction for pub in p.publications.published.values()
                  if pub.up is not None and not pub.info.muted]
        s = score(max(losses, default=0.0), float(p.signal_rtt_ms))
        return to_quality(s), mos(s)

    def tick(self) -> None:
        active = [p for p in self.room.participants.values() if p.active]
        infos: dict[str, rtc.ConnectionQualityInfo] = {}
        changed = False
        for p in active:
            quality, m = self.measure(p)
            if p.params.protocol <= 10 and quality == Quality.LOST:
                quality = Quality.POOR
            if self.last.get(p.sid) != quality:
                changed = True
            self.last[p.sid] = quality
            infos[p.sid] = rtc.ConnectionQualityInfo(participant_sid=p.sid,
                                                     quality=quality,  # type: ignore[arg-type]
                                                        score=m)
        if not changed:
            return
        for p in active:
            if p.params.protocol <= 4:
                continue
            wanted = {p.sid} | {pub.publisher.sid for pub in self.room.subscriptions.publications()
                                if p.sid in pub.subscribers}
            msg = rtc.SignalResponse()
            msg.connection_quality.updates.extend(infos[s] for s in wanted if s in infos)
            p.send(msg)

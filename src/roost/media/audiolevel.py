"""Audio levels and active speakers, following LiveKit's rules (protocol notes §3.4, §9.7).

`AudioLevel` turns the RFC 6464 levels of one track into a smoothed linear level;
`SpeakerTracker` turns per-participant levels into the SpeakersChanged entries of a tick.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SILENT_LEVEL = 127
ACTIVE_LEVEL = 35
MIN_PERCENTILE = 40
UPDATE_INTERVAL_MS = 400
SMOOTH_INTERVALS = 2
QUANTIZATION = 8


def level_to_linear(level: float) -> float:
    """Level in -dBov (0 loudest, 127 silent) to a linear 0..1 amplitude."""
    return math.pow(10.0, -level / 20.0)


class AudioLevel:
    """Per-track level observer: windowed activity, loudness weighting and EMA smoothing."""

    __slots__ = (
        "_active_ms",
        "_last_observed",
        "_loudest",
        "_observed_ms",
        "active_level",
        "active_threshold",
        "min_active_ms",
        "observe_ms",
        "smooth_factor",
        "smoothed",
    )

    def __init__(
        self,
        active_level: int = ACTIVE_LEVEL,
        min_percentile: int = MIN_PERCENTILE,
        observe_ms: int = UPDATE_INTERVAL_MS,
        smooth_intervals: int = SMOOTH_INTERVALS,
    ) -> None:
        self.active_level = active_level
        self.observe_ms = observe_ms
        self.min_active_ms = min_percentile * observe_ms / 100.0
        self.smooth_factor = 2.0 / (smooth_intervals + 1) if smooth_intervals > 0 else 1.0
        self.active_threshold = level_to_linear(active_level)
        self.smoothed = 0.0
        self._loudest = SILENT_LEVEL
        self._active_ms = 0.0
        self._observed_ms = 0.0
        self._last_observed = -math.inf

    def observe(self, level: int, duration_ms: float, now: float) -> None:
        """Account one packet: its level (0..127) covering `duration_ms`, arriving at `now` (s)."""
        self._last_observed = now
        self._observed_ms += duration_ms
        if level <= self.active_level:
            self._active_ms += duration_ms
            if level < self._loudest:
                self._loudest = level
        if self._observed_ms >= self.observe_ms:
            smoothed = 0.0
            if self._active_ms >= self.min_active_ms and self._active_ms > 0:
                weight = 20.0 * math.log10(self._active_ms / self.observe_ms)
                linear = level_to_linear(self._loudest - weight)
                smoothed = self.smoothed + (linear - self.smoothed) * self.smooth_factor
            self._reset(smoothed)

    def get_level(self, now: float) -> tuple[float, bool]:
        """(smoothed linear level, speaking?) at `now`; stale tracks decay to silence."""
        if (now - self._last_observed) * 1000.0 >= 2 * self.observe_ms:
            self._reset(0.0)
        return self.smoothed, self.smoothed >= self.active_threshold

    def _reset(self, smoothed: float) -> None:
        self.smoothed = smoothed
        self._loudest = SILENT_LEVEL
        self._active_ms = 0.0
        self._observed_ms = 0.0


def participant_level(levels: Iterable[tuple[float, bool]]) -> tuple[float, bool]:
    """A participant's level: the loudest of its microphone tracks."""
    best = (0.0, False)
    for level, active in levels:
        if level > best[0]:
            best = (level, active)
    return best


def quantize(level: float) -> float:
    """Round a level up to a multiple of 1/8, as SpeakerInfo levels are sent."""
    return math.ceil(level * QUANTIZATION) / QUANTIZATION


@dataclass(frozen=True)
class SpeakerLevel:
    """One SpeakerInfo entry: participant sid, quantized level, active flag."""

    sid: str
    level: float
    active: bool


def active_speakers(levels: Mapping[str, tuple[float, bool]]) -> list[SpeakerLevel]:
    """Active participants loudest first with quantized levels (LiveKit GetActiveSpeakers)."""
    speakers = [(lvl, sid) for sid, (lvl, active) in levels.items() if active]
    speakers.sort(key=lambda x: x[0], reverse=True)
    return [SpeakerLevel(sid, quantize(lvl), True) for lvl, sid in speakers]


class SpeakerTracker:
    """Remembers the last tick's speakers and reports only the changes."""

    def __init__(self) -> None:
        self._last: dict[str, SpeakerLevel] = {}

    @property
    def current(self) -> list[SpeakerLevel]:
        """Speakers as of the last tick, loudest first."""
        return list(self._last.values())

    def tick(self, levels: Mapping[str, tuple[float, bool]]) -> list[SpeakerLevel]:
        """Changes since the previous tick: new or re-levelled speakers, then those who stopped."""
        speakers = active_speakers(levels)
        changed: list[SpeakerLevel] = []
        nxt: dict[str, SpeakerLevel] = {}
        for s in speakers:
            prev = self._last.get(s.sid)
            if prev is None or prev.level != s.level:
                changed.append(s)
            nxt[s.sid] = s
        for sid in self._last:
            if sid not in nxt:
                changed.append(SpeakerLevel(sid, 0.0, False))
        self._last = nxt
        return changed

    def forget(self, sid: str) -> None:
        """Drop a participant that left without producing a stop entry."""
        self._last.pop(sid, None)

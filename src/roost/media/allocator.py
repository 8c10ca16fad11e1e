"""Stream allocation: how a subscriber's bandwidth is shared, and which layer each video gets.

The subscriber's estimate (today its REMB; congestion control will supply its own) is split
among its forwarded video tracks by `share_bandwidth`; each track's `LayerAllocator` then
picks the spatial layer that fits its share and the client's `max_quality`, with hysteresis:
down at once, up only after UPGRADE_HOLD, paused only after PAUSE_HOLD of not even the
lowest layer fitting (and only when pausing is allowed). Protocol notes §9.6.
"""

from __future__ import annotations

UPGRADE_HOLD = 2.0  # seconds the bandwidth must allow a higher layer before switching up
PAUSE_HOLD = 2.0  # seconds even the lowest layer must not fit before the track is paused
NO_CAP = 2  # bandwidth limit when there is no estimate: every layer

KEEP = -2  # `LayerAllocator.choose`: nothing calls for a change
PAUSE = -1  # `LayerAllocator.choose`: forward nothing until bandwidth allows the lowest layer


def share_bandwidth(estimate_bps: float | None, videos: int) -> float | None:
    """Bits/s each of `videos` forwarded video tracks may use; None: no limit is known.

    Audio is not counted and never paused.
    """
    if estimate_bps is None or videos <= 0:
        return None
    return estimate_bps / videos


class LayerAllocator:
    """The spatial layer one video subscription may receive, from its bandwidth share."""

    __slots__ = ("_raise_since", "_raise_to", "_starved_since", "bw_layer")

    def __init__(self) -> None:
        self.bw_layer = NO_CAP  # highest layer the share allows; -1: not even the lowest
        self._raise_since: float | None = None
        self._raise_to = NO_CAP
        self._starved_since: float | None = None

    def choose(self, available: list[int], rates: dict[int, float], share: float | None, *,
               max_quality: int, allow_pause: bool, paused: bool, simulcast: bool,
               now: float) -> int:
        """The layer to forward now, PAUSE, or KEEP.

        `available`: layers arriving, lowest first; `rates`: their measured bits/s; `share`:
        this track's bandwidth (None: unlimited); `paused`: whether it is paused now.
        """
        if not available:
            return KEEP
        self._update(available, rates, share, allow_pause, paused, now)
        if self.bw_layer < 0:
            return PAUSE
        if not simulcast and not paused:
            return KEEP
        cap = min(max_quality, self.bw_layer)
        fitting = [la for la in available if la <= cap]
        return fitting[-1] if fitting else available[0]

    def _update(self, available: list[int], rates: dict[int, float], share: float | None,
                allow_pause: bool, paused: bool, now: float) -> None:
        """Lower `bw_layer` at once when the share shrinks; raise it after UPGRADE_HOLD."""
        if share is None:
            fits = NO_CAP
        else:
            fits = max((la for la in available if rates.get(la, 0.0) <= share), default=-1)
            if fits == available[-1]:
                fits = NO_CAP  # everything that arrives fits: no limit from bandwidth
            elif fits < 0 and not allow_pause:
                fits = 0  # pausing not allowed: the lowest layer is the floor
        if fits >= 0 or paused:
            self._starved_since = None
        elif self._starved_since is None or now - self._starved_since < PAUSE_HOLD:
            # not even the lowest layer fits: keep it for PAUSE_HOLD before pausing (an
            # estimate dipping below the stream's own rate for a moment is normal)
            if self._starved_since is None:
                self._starved_since = now
            fits = 0
        if fits <= self.bw_layer:
            self.bw_layer = fits
            self._raise_since = None
        elif self._raise_since is None:
            self._raise_since = now
            self._raise_to = fits
        else:
            self._raise_to = min(self._raise_to, fits)
            if now - self._raise_since >= UPGRADE_HOLD:
                self.bw_layer = self._raise_to
                self._raise_since = None

"""Stream allocation: how a subscriber's bandwidth is shared, and which layer each video gets.

The subscriber's estimate (roost's own from TWCC feedback, else the client's REMB) is split
among its forwarded video tracks by `share_by_priority`: every track first gets its lowest
layer, highest priority first (screen share, then the active speakers' video, then the
rest), then the tracks are raised layer by layer in the same order while the estimate lasts.
Each track's `LayerAllocator` then picks the spatial layer that fits its share and the
client's `max_quality`, with hysteresis: down at once, up only after UPGRADE_HOLD (or at
once when a probe confirmed the bandwidth), paused only after PAUSE_HOLD of not even the
lowest layer fitting (and only when pausing is allowed). Protocol notes §9.6; livekit's
streamallocator is the reference for the behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

UPGRADE_HOLD = 2.0  # seconds the bandwidth must allow a higher layer before switching up
PAUSE_HOLD = 2.0  # seconds even the lowest layer must not fit before the track is paused
NO_CAP = 2  # bandwidth limit when there is no estimate: every layer

KEEP = -2  # `LayerAllocator.choose`: nothing calls for a change
PAUSE = -1  # `LayerAllocator.choose`: forward nothing until bandwidth allows the lowest layer


HEADROOM = 1.05  # a layer is kept while its measured rate is at most this x its share
RAISE_MARGIN = 1.15  # ... and moved up to only when its share is this x its rate


@dataclass(slots=True)
class VideoDemand:
    """What one forwarded video track asks of the subscriber's bandwidth."""

    priority: int  # higher first
    rates: list[float]  # bits/s of each arriving layer the client allows, lowest first
    key: str = ""  # tie-break (the track sid), so equal tracks keep their order

    @property
    def optimal_bps(self) -> float:
        return self.rates[-1] if self.rates else 0.0


def share_by_priority(estimate_bps: float | None,
                      demands: list[VideoDemand]) -> list[float | None]:
    """Bits/s each track may use, in `demands` order; None everywhere when no limit is known.

    Every layer is given RAISE_MARGIN over its measured rate where the estimate allows (the
    margin a layer needs before the allocator moves up to it), else its bare rate (enough to
    stay on it, not to move up). A track whose lowest layer does not fit gets what is left
    (possibly 0): its allocator then keeps it on the lowest layer or pauses it.
    """
    if estimate_bps is None:
        return [None] * len(demands)
    order = sorted(range(len(demands)), key=lambda i: (-demands[i].priority, demands[i].key))
    left = float(estimate_bps)
    level = [-1] * len(demands)  # index into each track's rates
    shares = [0.0] * len(demands)
    tight = [False] * len(demands)  # got a bare rate: raised no further

    def give(i: int, layer: int) -> bool:
        nonlocal left
        rate = demands[i].rates[layer]
        for want, bare in ((rate * RAISE_MARGIN, False), (rate, True)):
            if want - shares[i] <= left:
                left -= want - shares[i]
                shares[i], level[i], tight[i] = want, layer, bare
                return True
        return False

    for i in order:  # lowest layers first, by priority
        if demands[i].rates:
            give(i, 0)
    raised = True
    while raised:  # then one layer at a time, by priority, while the estimate lasts
        raised = False
        for i in order:
            nxt = level[i] + 1
            if level[i] >= 0 and not tight[i] and nxt < len(demands[i].rates):
                raised = give(i, nxt) or raised
    for i in order:  # what is left goes to the first track without its lowest layer
        if left > 0 and level[i] < 0:
            shares[i] = left
            left = 0.0
    return list(shares)


def deficit_bps(demands: list[VideoDemand], shares: list[float | None]) -> float:
    """Bits/s more the subscriber would need for every track's best allowed layer."""
    return sum(max(0.0, d.optimal_bps - (s or 0.0))
               for d, s in zip(demands, shares, strict=True) if s is not None)


class LayerAllocator:
    """The spatial layer one video subscription may receive, from its bandwidth share."""

    __slots__ = ("_confirmed", "_raise_since", "_raise_to", "_starved_since", "bw_layer")

    def __init__(self) -> None:
        self.bw_layer = NO_CAP  # highest layer the share allows; -1: not even the lowest
        self._confirmed = False  # a probe just showed the bandwidth: raise without the hold
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
        self._confirmed = False
        if self.bw_layer < 0:
            return PAUSE
        if not simulcast and not paused:
            return KEEP
        cap = min(max_quality, self.bw_layer)
        fitting = [la for la in available if la <= cap]
        return fitting[-1] if fitting else available[0]

    def _update(self, available: list[int], rates: dict[int, float], share: float | None,
                allow_pause: bool, paused: bool, now: float) -> None:
        """Lower `bw_layer` at once when the share no longer keeps it; raise it after
        UPGRADE_HOLD (or at once when confirmed) when the share has room for a higher one."""
        if share is None:
            fits = up_to = NO_CAP
        else:
            fits = max((la for la in available if rates.get(la, 0.0) <= share * HEADROOM),
                       default=-1)
            up_to = max((la for la in available if rates.get(la, 0.0) * RAISE_MARGIN <= share),
                        default=-1)
            if fits == available[-1]:
                fits = NO_CAP  # everything that arrives fits: no limit from bandwidth
            if up_to == available[-1]:
                up_to = NO_CAP
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
        if fits < self.bw_layer:
            self.bw_layer = fits
            self._raise_since = None
        elif up_to <= self.bw_layer:
            self._raise_since = None  # the share keeps this layer, with no room above
        elif self._confirmed:
            self.bw_layer = up_to
            self._raise_since = None
        elif self._raise_since is None:
            self._raise_since = now
            self._raise_to = up_to
        else:
            self._raise_to = min(self._raise_to, up_to)
            if now - self._raise_since >= UPGRADE_HOLD:
                self.bw_layer = self._raise_to
                self._raise_since = None

    def confirm(self) -> None:
        """A probe cluster just got through at a rate covering the raise: at the next
        choice, raise at once instead of waiting for UPGRADE_HOLD."""
        self._confirmed = True

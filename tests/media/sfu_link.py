"""A simulated SFU-to-subscriber link: one simulcast video forwarded at the layer the allocator
picks, over a bottleneck, with TWCC feedback, roost's estimator, allocator and prober.

Event-driven on a fake clock. The forwarder sends PACKET_SIZE-byte media packets at the
chosen layer's rate (an application-limited sender, as an SFU is); probe padding goes out
when roost's `Prober` asks for it, paced by the fake clock. Every packet queues behind the
ones before it on a link of `capacity(t)` bits/s (drop-tail beyond `max_queue` seconds of
backlog, as a `tbf` with that latency) and arrives `delay` later. Every `feedback_interval`
the receiver reports all packets up to the newest it has seen; the report reaches the
sender `delay` later and goes through the same steps as `RtpSession.on_rtcp`/`allocate`:
estimator, prober (a result raises the estimate, a success confirms the upgrade),
`share_by_priority`, `LayerAllocator.choose`, and a new probe when the track wants more.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.media.bwe_link import step

from roost.media.allocator import (
    KEEP,
    PAUSE,
    RAISE_MARGIN,
    LayerAllocator,
    VideoDemand,
    share_by_priority,
)
from roost.media.bwe import BandwidthEstimator, PacketResult
from roost.media.probe import Prober

__all__ = ["SfuLink", "step"]

PACKET_SIZE = 1000  # bytes of a media packet
PADDING_SIZE = 260  # bytes of a probe packet on the wire
LAYER_RATES = [150_000.0, 500_000.0, 1_700_000.0]  # a 720p simulcast's three layers
ALLOCATE_INTERVAL = 0.2  # as rtpsession.TWCC_ALLOCATE_INTERVAL


class _Timer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class SfuLink:
    """Forwarder, bottleneck, receiver and roost's congestion control for one video."""

    capacity: Callable[[float], float]
    probing: bool = True
    delay: float = 0.020
    max_queue: float = 0.1
    feedback_interval: float = 0.1
    layer: int = 2  # forwarded now
    timeline: list[tuple[float, int, int, float]] = field(default_factory=list)
    # (t, layer, estimate bps, bits/s delivered over the last feedback interval)

    def __post_init__(self) -> None:
        self.bwe = BandwidthEstimator()
        self.allocator = LayerAllocator()
        self.prober = Prober(self._pad, lambda: self._seq, self._call_later, lambda: self.t)
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...], _Timer]] = []
        self._order = itertools.count()
        self.t = 0.0
        self._seq = 0
        self._link_free = 0.0
        self._pending: list[tuple[int, int, float, float | None]] = []  # seq, size, sent, got
        self._delivered_bits = 0.0
        self._allocated_at = -1.0
        self._at(0.0, self._media)
        self._at(self.feedback_interval, self._report)

    # -- the fake clock -----------------------------------------------------------------
    def _at(self, t: float, fn: Callable[..., None], *args: Any) -> _Timer:
        timer = _Timer()
        heapq.heappush(self._events, (t, next(self._order), fn, args, timer))
        return timer

    def _call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> _Timer:
        return self._at(self.t + delay, fn, *args)

    def run_until(self, end: float) -> None:
        while self._events and self._events[0][0] <= end:
            t, _, fn, args, timer = heapq.heappop(self._events)
            self.t = t
            if not timer.cancelled:
                fn(*args)
        self.t = end

    # -- sender -------------------------------------------------------------------------
    def _send(self, size: int) -> None:
        t = self.t
        bits = size * 8
        got: float | None = None
        if self._link_free - t <= self.max_queue:
            leaves = max(t, self._link_free) + bits / self.capacity(t)
            self._link_free = leaves
            got = leaves + self.delay
        self._pending.append((self._seq, size, t, got))
        self._seq += 1

    def _media(self) -> None:
        self._send(PACKET_SIZE)
        self._at(self.t + PACKET_SIZE * 8 / LAYER_RATES[self.layer], self._media)

    def _pad(self, count: int) -> int:
        for _ in range(count):
            self._send(PADDING_SIZE)
        return count

    # -- receiver and roost's reaction --------------------------------------------------
    def _report(self) -> None:
        at = self.t
        newest = max((seq for seq, _, _, got in self._pending if got is not None and got <= at),
                     default=-1)
        results = [PacketResult(seq, size, sent, got)
                   for seq, size, sent, got in self._pending if seq <= newest]
        self._pending = [p for p in self._pending if p[0] > newest]
        self._delivered_bits = 8 * sum(r.size for r in results if r.arrival_time is not None)
        self._at(at + self.delay, self._feedback, results)
        self._at(at + self.feedback_interval, self._report)

    def _feedback(self, results: list[PacketResult]) -> None:
        now = self.t
        if results:
            self.bwe.on_feedback(results, now)
        confirmed = False
        if self.probing and self.prober.busy:
            bps = self.prober.on_results(results, now)
            if bps is not None:
                self.bwe.on_probe_result(bps, now)
                if self.prober.last_ok:
                    self.allocator.confirm()
                    confirmed = True
        if confirmed or now - self._allocated_at >= ALLOCATE_INTERVAL:
            self._allocate(now)
        self.timeline.append((now, self.layer, self.bwe.estimate_bps,
                              self._delivered_bits / self.feedback_interval))

    def _allocate(self, now: float) -> None:
        self._allocated_at = now
        demand = VideoDemand(0, LAYER_RATES, "video")
        estimate = self.bwe.estimate_bps
        (share,) = share_by_priority(estimate, [demand])
        rates = dict(enumerate(LAYER_RATES))
        choice = self.allocator.choose([0, 1, 2], rates, share, max_quality=2,
                                       allow_pause=False, paused=False, simulcast=True,
                                       now=now)
        if choice not in (KEEP, PAUSE):
            self.layer = choice
        if self.probing and self.bwe.state == "decrease":
            self.prober.on_overuse(now)
        elif self.probing:
            sending = LAYER_RATES[self.layer]
            self.prober.maybe_start(estimate, RAISE_MARGIN * demand.optimal_bps, sending, now)

    # -- reading the run ----------------------------------------------------------------
    def first_time(self, after: float, test: Callable[[int], bool]) -> float | None:
        """When, after `after`, the forwarded layer first passed `test`."""
        return next((t for t, layer, _, _ in self.timeline if t >= after and test(layer)),
                    None)

    def layers(self, start: float, end: float) -> set[int]:
        return {layer for t, layer, _, _ in self.timeline if start <= t < end}


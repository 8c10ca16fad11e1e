"""Bandwidth probing on a subscriber transport: padding clusters that test a higher rate.

A sender limited by what it forwards never learns that the link could take more: the
estimate grows only as fast as the acknowledged rate allows. Before the allocator raises a
layer, the `Prober` sends a short cluster (PROBE_DURATION) of padding-only RTX packets that
brings the transport's rate up to the goal, paced in PACE steps. When the subscriber's TWCC
feedback covers the cluster, the delivery rate is measured as libwebrtc's probe estimator
does (enough packets received, the lower of the send and receive rates, a margin off when
the receiver saw less than was sent) and handed to the estimator; a result that reached the
goal confirms the upgrade. A probe that fell short waits longer before the next one
(backing off to MAX_INTERVAL), so a congested link is not probed every second.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from roost.media.bwe import PacketResult

PROBE_DURATION = 0.05  # seconds of one cluster
PACE = 0.005  # seconds between the cluster's bursts
MIN_PACKETS = 5  # a cluster has at least this many packets (libwebrtc: 5)
MIN_RECEIVED = 0.8  # fraction of the cluster that must arrive for a result (libwebrtc: 80 %)
MAX_SPAN = 1.0  # seconds: a cluster sent or received over longer is not a measurement
SHORTFALL = 0.9  # receive rate below this x send rate: the link was full ...
UTILIZATION = 0.95  # ... and the result is this x the receive rate
SUCCESS = 0.9  # a result at this x the goal confirms the upgrade
MAX_FACTOR = 2.0  # the goal is at most this x the current estimate
OVERSHOOT = 1.2  # ... and this x what the tracks want (a result falls a little short)
MIN_STEP = 100_000.0  # bits/s: a probe asks for at least this much more than the estimate
INTERVAL, MAX_INTERVAL = 1.0, 4.0  # seconds between probes, after failures up to the max
RESULT_TIMEOUT = 2.0  # seconds: a cluster without feedback by then has failed
SOON = 0.25  # seconds to the next probe after one that got through
RAISED = 1.1  # a result this x the estimate it started from raised it well
FALSE_SUCCESS = 3.0  # seconds: overuse this soon after a success makes it a failure
PACKET_BITS_GUESS = 8 * 260  # one padding packet on the wire (header, extension, padding)


class Handle(Protocol):
    """A scheduled call that can be cancelled (asyncio.TimerHandle)."""

    def cancel(self) -> None: ...


@dataclass(slots=True)
class Cluster:
    """One probe in flight: the transport sequence numbers it spans and its goal."""

    goal_bps: float
    started: float
    first_seq: int
    last_seq: int = -1
    sending: bool = True
    results: dict[int, PacketResult] = field(default_factory=dict)  # by seq, as reported
    estimate_bps: float = 0.0  # the estimate when it started
    padding_bps: float = 0.0  # the padding rate that brings the transport to the goal
    clock_start: float = 0.0  # `clock()` when it started
    padded: int = 0  # padding packets sent so far


class Prober:
    """Probe clusters for one subscriber transport; results go to `on_result(bps, ok, now)`.

    `send_padding(count)` sends that many padding packets and returns how many went out;
    `next_seq()` is the transport sequence number the next packet will carry;
    `call_later(delay, fn, *args)` and `clock()` pace the cluster (the running loop's and
    time.monotonic, unless given): each burst sends what the padding rate owes by then, so
    late timers stretch no cluster below its rate.
    """

    __slots__ = ("_call_later", "_clock", "_cluster", "_handle", "_interval", "_next_at",
                 "_next_seq", "_send", "_succeeded_at",
                 "clusters", "failures", "last_ok", "last_result_bps", "successes")

    def __init__(self, send_padding: Callable[[int], int], next_seq: Callable[[], int],
                 call_later: Callable[..., Handle] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self._send = send_padding
        self._call_later = call_later
        self._clock = clock or time.monotonic
        self._next_seq = next_seq
        self._cluster: Cluster | None = None
        self._handle: Handle | None = None
        self._interval = INTERVAL
        self._next_at = -math.inf
        self._succeeded_at = -math.inf
        self.clusters = 0
        self.successes = 0
        self.failures = 0
        self.last_result_bps = 0.0
        self.last_ok = False  # the last finished cluster reached SUCCESS x its goal

    @property
    def busy(self) -> bool:
        return self._cluster is not None

    def goal(self, estimate_bps: float, wanted_bps: float) -> float:
        """The rate to probe for when the tracks want `wanted_bps` and the link is thought
        to take `estimate_bps`."""
        return min(max(OVERSHOOT * wanted_bps, estimate_bps + MIN_STEP),
                   MAX_FACTOR * estimate_bps)

    def maybe_start(self, estimate_bps: float, wanted_bps: float, sending_bps: float,
                    now: float) -> bool:
        """Start a cluster when the tracks want more than the estimate and it is time."""
        if self._succeeded_at > -math.inf and now - self._succeeded_at > FALSE_SUCCESS:
            self._succeeded_at = -math.inf  # no overuse followed: the success stands
            self._interval = INTERVAL
        cluster = self._cluster
        if cluster is not None:
            if now - cluster.started > RESULT_TIMEOUT:
                self._finish(ok=False)
            return False
        if now < self._next_at or wanted_bps <= estimate_bps or estimate_bps <= 0:
            return False
        goal = self.goal(estimate_bps, wanted_bps)
        padding_bps = max(goal - sending_bps, MIN_PACKETS * PACKET_BITS_GUESS / PROBE_DURATION)
        self._cluster = Cluster(goal, now, self._next_seq(), estimate_bps=estimate_bps,
                                padding_bps=padding_bps, clock_start=self._clock())
        self.clusters += 1
        self._burst()
        return True

    def _burst(self) -> None:
        cluster = self._cluster
        self._handle = None
        if cluster is None:
            return
        elapsed = self._clock() - cluster.clock_start
        last = elapsed + PACE >= PROBE_DURATION
        span = PROBE_DURATION if last else elapsed + PACE
        owed = math.ceil(cluster.padding_bps * span / PACKET_BITS_GUESS) - cluster.padded
        if owed > 0:
            sent = self._send(owed)
            if sent == 0 and cluster.padded == 0:
                self._finish(ok=False, retry=False)  # nothing to pad with (yet)
                return
            cluster.padded += sent
            cluster.last_seq = self._next_seq() - 1
        if last:
            cluster.sending = False
            if cluster.last_seq < 0:
                self._finish(ok=False, retry=False)
        else:
            call_later = self._call_later or asyncio.get_running_loop().call_later
            self._handle = call_later(PACE, self._burst)

    def on_results(self, results: list[PacketResult], now: float) -> float | None:
        """TWCC results (of one feedback): once feedback covered the whole cluster, its
        measured rate in bits/s (None before that, and when it cannot be measured)."""
        cluster = self._cluster
        if cluster is None or not results:
            return None
        first, last = cluster.first_seq, cluster.last_seq
        for r in results:
            if first <= r.seq and (r.seq <= last or cluster.sending):
                cluster.results[r.seq] = r
        if cluster.sending or results[-1].seq < last:
            return None  # the feedback for the end of the cluster is still to come
        mine = [cluster.results[q] for q in sorted(cluster.results) if q <= last]
        measured = measure(mine) if len(mine) >= (last - first + 1) * MIN_RECEIVED else None
        bps, saturated = measured if measured is not None else (None, True)
        ok = bps is not None and bps >= SUCCESS * cluster.goal_bps
        self.last_result_bps = bps or 0.0
        self.last_ok = ok
        # Short of the goal, but the receiver got it as fast as it was sent (the link was
        # not full) or it raised the estimate well: try again soon, higher, without backing
        # off (libwebrtc probes on from a result that reached most of its target too).
        onward = bps is not None and (not saturated or bps >= RAISED * cluster.estimate_bps)
        self._finish(ok=ok, onward=onward)
        return bps

    def _finish(self, *, ok: bool, retry: bool = True, onward: bool = False) -> None:
        cluster, self._cluster = self._cluster, None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if cluster is None:
            return
        if ok:
            self.successes += 1
            self._succeeded_at = cluster.started
        elif onward:
            self._interval = INTERVAL
        elif retry:
            self.failures += 1
            self._interval = min(MAX_INTERVAL, self._interval * 2)
        self._next_at = cluster.started + (SOON if ok or onward else self._interval)

    def on_overuse(self, now: float) -> None:
        """The estimator sees overuse: if a probe succeeded just before, it over-measured (a
        shaper's token bucket lets a short cluster through at line rate, for one): count it
        as a failure, so that the next probe waits longer."""
        if now - self._succeeded_at > FALSE_SUCCESS or self._cluster is not None:
            return
        self._succeeded_at = -math.inf
        self.successes -= 1
        self.failures += 1
        self._interval = min(MAX_INTERVAL, self._interval * 2)
        self._next_at = now + self._interval

    def close(self) -> None:
        self._finish(ok=False, retry=False)


def measure(results: list[PacketResult]) -> tuple[float, bool] | None:
    """A cluster's delivery rate in bits/s from its per-packet results, and whether the
    link was saturated (the receiver saw less than SHORTFALL of the send rate); None when
    too few packets arrived or the spans make no sense."""
    got = [r for r in results if r.arrival_time is not None]
    if len(got) < MIN_PACKETS or len(got) < MIN_RECEIVED * len(results):
        return None
    sent_span = got[-1].send_time - got[0].send_time
    arrivals = sorted(r.arrival_time for r in got if r.arrival_time is not None)
    recv_span = arrivals[-1] - arrivals[0]
    if not (0 < sent_span <= MAX_SPAN and 0 < recv_span <= MAX_SPAN):
        return None
    total = sum(r.size for r in got)
    send_bps = 8 * (total - got[-1].size) / sent_span
    recv_bps = 8 * (total - got[0].size) / recv_span
    if recv_bps < SHORTFALL * send_bps:
        return UTILIZATION * recv_bps, True
    return min(send_bps, recv_bps), False

"""Probing before upgrades: the cluster measurement, the prober's pacing and back-off, and the
whole loop (estimator, allocator, prober) on a simulated 720p simulcast subscriber link."""

from __future__ import annotations

from typing import Any

from tests.media.sfu_link import SfuLink, step

from roost.media.bwe import PacketResult
from roost.media.probe import INTERVAL, MAX_INTERVAL, PACE, PROBE_DURATION, Prober, measure


def cluster(n: int, size: int, send_gap: float, recv_gap: float,
            lost: set[int] | frozenset[int] = frozenset()) -> list[PacketResult]:
    return [PacketResult(i, size, i * send_gap, None if i in lost else 100 + i * recv_gap)
            for i in range(n)]


def test_a_cluster_that_got_through_measures_the_rate_it_was_sent_at() -> None:
    # 20 x 1000 bytes every 5 ms: 1.6 Mbit/s sent, received at the same spacing
    measured = measure(cluster(20, 1000, 0.005, 0.005))
    assert measured is not None
    bps, saturated = measured
    assert abs(bps - 1_600_000) < 1_000 and not saturated


def test_a_cluster_that_queued_measures_the_bottleneck_with_a_margin() -> None:
    # sent at 1.6 Mbit/s, spread out to 0.8 Mbit/s by the link
    measured = measure(cluster(20, 1000, 0.005, 0.010))
    assert measured is not None
    bps, saturated = measured
    assert abs(bps - 0.95 * 800_000) < 1_000 and saturated


def test_a_cluster_mostly_lost_or_too_short_measures_nothing() -> None:
    assert measure(cluster(20, 1000, 0.005, 0.005, lost=set(range(0, 20, 3)))) is None
    assert measure(cluster(4, 1000, 0.005, 0.005)) is None
    assert measure(cluster(20, 1000, 0.0, 0.005)) is None  # no send span


class FakeLoop:
    """call_later on a hand-driven clock (`late`: every timer fires that much late)."""

    def __init__(self, late: float = 0.0) -> None:
        self.calls: list[tuple[float, Any, tuple[Any, ...]]] = []
        self.t = 0.0
        self.late = late

    def clock(self) -> float:
        return self.t

    def call_later(self, delay: float, fn: Any, *args: Any) -> Any:
        self.calls.append((delay, fn, args))
        return self

    def cancel(self) -> None:
        self.calls.clear()

    def run(self) -> None:
        while self.calls:
            delay, fn, args = self.calls.pop(0)
            self.t += delay + self.late
            fn(*args)


class Wire:
    def __init__(self) -> None:
        self.seq = 0
        self.bursts: list[int] = []

    def pad(self, count: int) -> int:
        self.bursts.append(count)
        self.seq += count
        return count


def test_the_prober_paces_a_cluster_and_reports_its_result() -> None:
    loop, wire = FakeLoop(), Wire()
    prober = Prober(wire.pad, lambda: wire.seq, loop.call_later, loop.clock)
    assert not prober.maybe_start(1_000_000, 900_000, 800_000, 0.0)  # nothing wanted
    assert prober.maybe_start(1_000_000, 3_000_000, 800_000, 0.0)
    loop.run()
    steps = round(PROBE_DURATION / PACE)
    assert wire.seq > 0 and len(wire.bursts) == steps  # one burst per PACE
    goal = prober.goal(1_000_000, 3_000_000)
    assert goal == 2_000_000  # at most twice the estimate
    # the receiver saw it all at 2.2 Mbit/s: a success, the next probe comes soon
    results = [PacketResult(i, 1000, i * 0.004, 5 + i * 0.004) for i in range(wire.seq)]
    bps = prober.on_results(results, 0.2)
    assert bps is not None and bps > 0.9 * goal and prober.last_ok
    assert not prober.busy
    assert prober.maybe_start(2_000_000, 3_000_000, 800_000, 0.5)


def test_failed_probes_back_off_and_a_lost_cluster_times_out() -> None:
    loop, wire = FakeLoop(), Wire()
    prober = Prober(wire.pad, lambda: wire.seq, loop.call_later, loop.clock)
    t, begin = 0.0, 0
    assert prober.maybe_start(400_000, 2_000_000, 150_000, t)
    waits = []
    for _ in range(4):
        loop.run()
        # received at ~420 kbit/s: the link is full, not a success
        results = [PacketResult(i, 1000, t + (i - begin) * 0.001, 5 + (i - begin) * 0.019)
                   for i in range(begin, wire.seq)]
        assert prober.on_results(results, t + 0.1) is not None and not prober.last_ok
        wire.seq += 100  # the sequence moves on with media
        begin, start = wire.seq, t + 0.1
        while not prober.maybe_start(400_000, 2_000_000, 150_000, start):
            start += 0.05
        waits.append(round(start - t, 1))
        t = start
    assert waits[0] >= 2 * INTERVAL - 0.1 and waits[-1] <= MAX_INTERVAL + 0.2, waits
    assert waits == sorted(waits), waits
    loop.run()  # this cluster's feedback never comes
    assert not prober.maybe_start(400_000, 2_000_000, 150_000, t + 0.5)  # still waiting
    assert not prober.maybe_start(400_000, 2_000_000, 150_000, t + 3.0)  # timed out now
    assert not prober.busy and prober.failures == 5


def test_a_capped_subscriber_drops_to_the_low_layer_and_probing_brings_it_back() -> None:
    link = SfuLink(step((0, 5_000_000), (5, 400_000), (25, 5_000_000)))
    link.run_until(40)
    assert link.layers(4, 5) == {2}, "the high layer is forwarded on the free link"
    down = link.first_time(5, lambda layer: layer == 0)
    assert down is not None and down - 5 < 5, down
    assert link.layers(down + 1, 25) <= {0}, "it stays low while capped"
    up = link.first_time(25, lambda layer: layer == 2)
    assert up is not None and up - 25 < 10, up
    assert link.prober.successes > 0


def test_without_probing_the_estimate_stays_tied_to_what_is_forwarded() -> None:
    link = SfuLink(step((0, 5_000_000), (5, 400_000), (25, 5_000_000)), probing=False)
    link.run_until(40)
    up = link.first_time(25, lambda layer: layer == 2)
    assert up is None or up - 25 >= 10, up


def test_overuse_right_after_a_success_counts_it_as_a_failure() -> None:
    loop, wire = FakeLoop(), Wire()
    prober = Prober(wire.pad, lambda: wire.seq, loop.call_later, loop.clock)
    assert prober.maybe_start(400_000, 2_000_000, 150_000, 0.0)
    loop.run()
    # a token bucket let the whole cluster through at the rate it was sent
    results = [PacketResult(i, 1000, i * 0.001, 5 + i * 0.001) for i in range(wire.seq)]
    assert prober.on_results(results, 0.1) is not None and prober.last_ok
    prober.on_overuse(1.0)  # ... and the link was full after all
    assert (prober.successes, prober.failures) == (0, 1)
    assert not prober.maybe_start(400_000, 2_000_000, 150_000, 1.0 + INTERVAL)
    assert prober.maybe_start(400_000, 2_000_000, 150_000, 1.0 + 2 * INTERVAL)


def test_late_timers_do_not_thin_out_a_cluster() -> None:
    on_time, late = FakeLoop(), FakeLoop(late=0.004)
    counts = []
    for loop in (on_time, late):
        wire = Wire()
        prober = Prober(wire.pad, lambda w=wire: w.seq, loop.call_later, loop.clock)
        assert prober.maybe_start(1_000_000, 3_000_000, 800_000, 0.0)
        loop.run()
        counts.append(wire.seq)
    # fewer, bigger bursts when the timers fire late, but the same padding over the span
    assert abs(counts[0] - counts[1]) <= 2, counts


def test_a_short_result_on_a_link_that_was_not_full_probes_again_soon() -> None:
    loop, wire = FakeLoop(), Wire()
    prober = Prober(wire.pad, lambda: wire.seq, loop.call_later, loop.clock)
    assert prober.maybe_start(1_000_000, 3_000_000, 800_000, 0.0)
    loop.run()
    # sent and received at 1.5 Mbit/s (short of the 2 Mbit/s goal: the media was quieter)
    results = [PacketResult(i, 1000, i * 0.0053, 5 + i * 0.0053) for i in range(wire.seq)]
    assert prober.on_results(results, 0.2) is not None and not prober.last_ok
    assert prober.failures == 0
    assert prober.maybe_start(1_500_000, 3_000_000, 800_000, 0.3)

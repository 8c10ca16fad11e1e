"""The bandwidth estimator against a simulated link, fake clock in hand: it finds the bottleneck,
follows it down and back up, shrugs off light loss, backs off heavy loss, obeys REMB."""

from __future__ import annotations

import math
import random

from tests.media.bwe_link import Link, step

from roost.media.bwe import DECREASE, REMB_TIMEOUT, BandwidthEstimator, PacketResult


def test_a_link_with_headroom_grows_the_estimate_toward_the_offered_rate() -> None:
    link = Link(BandwidthEstimator(initial_bps=300_000), step((0, 10_000_000)),
                offered_bps=1_500_000)
    link.run_until(30.0)
    assert link.bwe.estimate_bps >= 1_400_000
    assert all(s.state != DECREASE for s in link.samples)  # nothing ever queued
    early, late = link.estimates(2, 3), link.estimates(15, 16)
    assert min(late) > max(early)


def test_a_500_kbit_bottleneck_pulls_the_estimate_down_to_it_and_keeps_it_there() -> None:
    link = Link(BandwidthEstimator(), step((0, 2_000_000), (10, 500_000)))
    link.run_until(10.0)
    assert link.bwe.estimate_bps > 1_500_000
    link.run_until(30.0)
    decreases = [s.t for s in link.samples if s.t >= 10 and s.state == DECREASE]
    assert decreases and decreases[0] < 11.0  # the queue is seen within a second
    settled = link.estimates(13, 30)
    assert all(350_000 <= e <= 650_000 for e in settled), (min(settled), max(settled))
    mean = sum(settled) / len(settled)
    assert 400_000 <= mean <= 550_000


def test_lifting_the_cap_lets_the_estimate_grow_again() -> None:
    link = Link(BandwidthEstimator(), step((0, 500_000), (10, 3_000_000)))
    link.run_until(10.0)
    capped = link.bwe.estimate_bps
    assert capped < 650_000
    link.run_until(22.0)
    assert link.bwe.estimate_bps > 1.4 * capped
    assert link.bwe.state == "increase"


def test_probe_results_bring_a_recovered_link_back_within_seconds() -> None:
    link = Link(BandwidthEstimator(), step((0, 500_000), (10, 3_000_000)),
                probe_interval=2.0)
    link.run_until(16.0)
    assert max(link.estimates(14, 16)) > 2_000_000
    bwe = BandwidthEstimator()
    bwe.on_probe_result(5_000_000, 0.0)
    assert bwe.estimate_bps == 5_000_000
    bwe.on_probe_result(2_000_000, 0.1)  # a probe that did not fill the link lowers nothing
    assert bwe.estimate_bps == 5_000_000
    bwe.on_probe_result(math.nan, 0.2)
    assert bwe.estimate_bps == 5_000_000


def test_five_percent_random_loss_does_not_crash_the_estimate() -> None:
    link = Link(BandwidthEstimator(initial_bps=1_000_000), step((0, 10_000_000)),
                offered_bps=1_000_000, loss=0.05, seed=7)
    link.run_until(20.0)
    assert min(link.estimates(1, 20)) >= 700_000
    fractions = [s.stats["loss_fraction"] for s in link.samples if s.t > 5]
    assert 0.02 < sum(fractions) / len(fractions) < 0.08


def test_twenty_percent_loss_brings_the_estimate_down() -> None:
    link = Link(BandwidthEstimator(initial_bps=1_000_000), step((0, 10_000_000)),
                offered_bps=1_000_000, loss=0.20, seed=3)
    link.run_until(10.0)
    assert link.bwe.estimate_bps < 500_000
    fractions = [s.stats["loss_fraction"] for s in link.samples if s.t > 2]
    assert 0.12 < sum(fractions) / len(fractions) < 0.30
    link.loss = 0.0
    low = link.bwe.estimate_bps
    link.run_until(20.0)
    assert link.bwe.estimate_bps > low  # loss gone: it grows back


def test_without_twcc_the_estimate_is_the_remb() -> None:
    bwe = BandwidthEstimator(min_bps=100_000, max_bps=5_000_000)
    bwe.on_remb(700_000, 1.0)
    assert bwe.estimate_bps == 700_000
    bwe.on_remb(2_500_000, 2.0)
    assert bwe.estimate_bps == 2_500_000
    bwe.on_remb(20_000, 3.0)
    assert bwe.estimate_bps == 100_000  # clamped to the floor
    bwe.on_remb(50_000_000, 4.0)
    assert bwe.estimate_bps == 5_000_000  # and to the ceiling
    bwe.on_remb(-5, 5.0)
    assert bwe.estimate_bps == 5_000_000  # nonsense is ignored


def test_a_recent_remb_caps_the_twcc_estimate_and_a_stale_one_does_not() -> None:
    remb_until = 10.0

    def send_remb(link: Link, now: float) -> None:
        if now < remb_until and round(now * 10) % 10 == 0:  # once a second
            link.bwe.on_remb(400_000, now)

    link = Link(BandwidthEstimator(), step((0, 10_000_000)), on_sample=send_remb)
    link.run_until(remb_until)
    assert max(link.estimates(1.5, remb_until)) <= 400_000
    link.run_until(remb_until + REMB_TIMEOUT + 3.0)
    assert link.bwe.estimate_bps > 400_000


def test_garbage_feedback_is_skipped_not_raised() -> None:
    bwe = BandwidthEstimator()
    start = bwe.estimate_bps
    bwe.on_feedback([], 0.0)
    good = [PacketResult(i, 1200, i * 0.01, 5.0 + i * 0.01) for i in range(50)]
    bwe.on_feedback(good, 0.6)
    bwe.on_feedback(good, 0.7)  # the same feedback twice
    bwe.on_feedback(list(reversed(good)), 0.8)  # old and reversed
    assert bwe.skipped == 100
    rng = random.Random(5)
    junk = [
        PacketResult(50, 1200, 0.5, -3600.0),  # arrival an hour back
        PacketResult(51, 1200, 0.51, 1e9),  # and then far ahead
        PacketResult(52, 1200, math.nan, 5.6),
        PacketResult(53, 1200, 0.53, math.inf),
        PacketResult(54, -1, 0.54, 5.64),
        PacketResult(55, 1200, 0.55, None),
        PacketResult(55, 1200, 0.55, 5.65),  # a duplicate inside one feedback
        PacketResult(57, 1200, 0.57, 5.2),  # before the one it follows
        PacketResult(56, 1200, 0.56, 5.66),  # out of sequence order
    ]
    bwe.on_feedback(junk, 0.9)
    bwe.on_feedback([PacketResult(60 + i, 1200, 0.6, rng.uniform(-9, 9)) for i in range(40)],
                    1.0)
    bwe.on_feedback([PacketResult(200 + i, 1200, 0.7 + i * 0.01, None) for i in range(40)],
                    1.2)  # everything lost
    assert 100_000 <= bwe.estimate_bps <= 2 * start
    assert isinstance(bwe.stats(), dict) and bwe.state in ("increase", "hold", "decrease")
    # ... and it still estimates afterwards: a clean link from here on is followed up
    link = Link(bwe, step((0, 10_000_000)), offered_bps=3_000_000, first_seq=1000)
    link.run_until(20.0)
    assert link.bwe.estimate_bps > 1_000_000


def test_an_outage_is_not_taken_for_congestion() -> None:
    """3 s with nothing arriving (a blackout), then the link is back as before: the
    estimate stays where it was instead of collapsing to the loss-based floor."""
    from roost.media.bwe import BandwidthEstimator, PacketResult

    def feed(bwe: BandwidthEstimator, first: int, t0: float, n: int, lost: bool) -> float:
        t = t0
        results = []
        for i in range(n):
            t = t0 + i * 0.01  # 1,200 bytes every 10 ms: ~1 Mbit/s
            results.append(PacketResult(first + i, 1200, t, None if lost else 100 + t + 0.02))
            if len(results) == 10:
                bwe.on_feedback(results, t + 0.05)
                results = []
        return t

    bwe = BandwidthEstimator(initial_bps=1_000_000)
    t = feed(bwe, 0, 0.0, 500, lost=False)  # 5 s of a steady 1 Mbit/s link
    before = bwe.estimate_bps
    blackout = [PacketResult(500 + i, 1200, t + 0.01 * (i + 1), None) for i in range(300)]
    back = [PacketResult(800 + i, 1200, t + 3.01 + 0.01 * i, 100 + t + 3.03 + 0.01 * i)
            for i in range(10)]
    bwe.on_feedback(blackout + back, t + 3.2)
    feed(bwe, 810, t + 3.11, 200, lost=False)
    assert bwe.outages == 1
    assert bwe.estimate_bps >= 0.8 * before, (before, bwe.estimate_bps)

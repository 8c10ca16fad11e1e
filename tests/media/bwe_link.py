"""A simulated subscriber link for bandwidth-estimator tests: a paced sender, a FIFO bottleneck.

Event-driven on a fake clock. The sender paces PACKET_SIZE-byte packets at the estimator's
estimate (capped by `offered_bps`, like an encoder that follows its target); each packet
may be dropped at random (`loss`), then queues behind the ones before it on a link of
`capacity(t)` bits/s (drop-tail beyond `max_queue` seconds of backlog) and arrives
`delay` seconds after leaving it. Every `feedback_interval` the receiver reports every
packet up to the newest it has seen (lost ones as None), and the report reaches the sender
`delay` seconds later. Arrival times carry a receiver clock offset: only differences count.

With `probe_interval`, every that many seconds the sender sends a probe cluster instead of
media: `probe_packets` packets paced at `probe_factor` x the estimate. Once feedback has
covered the whole cluster, its delivery rate (the lower of its send and receive rates,
from the first to the last packet) goes to `BandwidthEstimator.on_probe_result`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from roost.media.bwe import BandwidthEstimator, PacketResult

PACKET_SIZE = 1200  # bytes


@dataclass
class Sample:
    """The estimator seen at one feedback."""

    t: float
    estimate_bps: int
    capacity_bps: float
    sent_bps: float
    state: str
    stats: dict[str, float]


@dataclass
class Link:
    """The sender, the bottleneck and the receiver around one BandwidthEstimator."""

    bwe: BandwidthEstimator
    capacity: Callable[[float], float]  # bits/s of the bottleneck at time t
    offered_bps: float = 5_000_000.0  # the most the sender has to send
    loss: float = 0.0  # random loss before the bottleneck
    delay: float = 0.020  # one-way propagation, each direction
    max_queue: float = 0.5  # seconds of backlog before drop-tail
    feedback_interval: float = 0.1
    seed: int = 1
    clock_offset: float = 1000.0  # receiver clock minus sender clock
    first_seq: int = 0  # transport sequence number of the first packet
    samples: list[Sample] = field(default_factory=list)
    on_sample: Callable[[Link, float], None] | None = None  # called after each feedback
    probe_interval: float | None = None
    probe_factor: float = 2.0
    probe_packets: int = 10
    probes: list[tuple[float, float]] = field(default_factory=list)  # (t, measured bits/s)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._t = 0.0
        self._seq = self.first_seq
        self._next_send = 0.0
        self._next_report = self.feedback_interval
        self._link_free = 0.0
        self._pending: list[tuple[int, float, float | None]] = []  # seq, sent, arrived
        self._sent_bits = 0.0  # sent since the last report, for Sample.sent_bps
        self._next_probe = self.probe_interval if self.probe_interval else float("inf")
        self._cluster: list[tuple[int, float]] = []  # (seq, sent) of the probe being sent
        self._cluster_left = 0
        self._cluster_rate = 0.0
        self._cluster_got: dict[int, float | None] = {}

    def run_until(self, end: float) -> None:
        while True:
            report_at = self._next_report + self.delay  # when the report reaches the sender
            t = min(self._next_send, report_at)
            if t > end:
                self._t = end
                return
            self._t = t
            if t == report_at:
                self._report(self._next_report, t)
                self._next_report += self.feedback_interval
            else:
                self._send(t)

    def _send(self, t: float) -> None:
        seq = self._seq
        self._seq += 1
        bits = PACKET_SIZE * 8
        self._sent_bits += bits
        arrival: float | None = None
        if self._rng.random() >= self.loss and self._link_free - t <= self.max_queue:
            leaves = max(t, self._link_free) + bits / self.capacity(t)
            self._link_free = leaves
            arrival = leaves + self.delay
        self._pending.append((seq, t, arrival))
        if self._cluster_left:
            self._cluster.append((seq, t))
            self._cluster_left -= 1
        elif t >= self._next_probe and not self._cluster:
            self._cluster_left = self.probe_packets  # the packets after this one
            self._cluster_rate = self.probe_factor * self.bwe.estimate_bps
            self._next_probe = t + (self.probe_interval or 0.0)
        if self._cluster_left:
            rate = self._cluster_rate
        else:
            rate = min(float(self.bwe.estimate_bps), self.offered_bps)
        self._next_send = t + bits / rate

    def _report(self, at: float, now: float) -> None:
        """What the receiver knows at `at`, delivered to the estimator at `now`."""
        newest = -1
        for seq, _, arrival in self._pending:
            if arrival is not None and arrival <= at:
                newest = seq
        results = []
        keep = []
        for seq, sent, arrival in self._pending:
            if seq > newest:
                keep.append((seq, sent, arrival))
                continue
            got = arrival + self.clock_offset if arrival is not None else None
            results.append(PacketResult(seq, PACKET_SIZE, sent, got))
        self._pending = keep
        if results:
            self.bwe.on_feedback(results, now)
        if self._cluster and not self._cluster_left:
            self._probe_result(results, now)
        sent_bps = self._sent_bits / self.feedback_interval
        self._sent_bits = 0.0
        self.samples.append(Sample(now, self.bwe.estimate_bps, self.capacity(now), sent_bps,
                                   self.bwe.state, self.bwe.stats()))
        if self.on_sample is not None:
            self.on_sample(self, now)

    def _probe_result(self, results: list[PacketResult], now: float) -> None:
        seqs = {seq for seq, _ in self._cluster}
        for r in results:
            if r.seq in seqs:
                self._cluster_got[r.seq] = r.arrival_time
        if len(self._cluster_got) < len(self._cluster):
            return
        sent = [t for _, t in self._cluster]
        arrived = sorted(a for a in self._cluster_got.values() if a is not None)
        self._cluster, self._cluster_got = [], {}
        if len(arrived) < 2 or arrived[-1] <= arrived[0] or sent[-1] <= sent[0]:
            return
        bits = PACKET_SIZE * 8
        send_rate = bits * (len(sent) - 1) / (sent[-1] - sent[0])
        receive_rate = bits * (len(arrived) - 1) / (arrived[-1] - arrived[0])
        measured = min(send_rate, receive_rate)
        self.probes.append((now, measured))
        self.bwe.on_probe_result(measured, now)

    def estimates(self, start: float, end: float) -> list[int]:
        """The estimates sampled in [start, end)."""
        return [s.estimate_bps for s in self.samples if start <= s.t < end]


def step(*changes: tuple[float, float]) -> Callable[[float], float]:
    """A capacity schedule: `changes` are (from time, bits/s), in time order."""

    def capacity(t: float) -> float:
        bps = changes[0][1]
        for since, value in changes:
            if t >= since:
                bps = value
        return bps

    return capacity

"""Send-side bandwidth estimation for one subscriber transport (GCC: delay-based + loss-based).

Pure logic, no I/O: `BandwidthEstimator.on_feedback` takes one TWCC feedback's per-packet
results, `on_remb` a receiver estimate, and every time is a float in seconds passed in by the
caller (the sender's monotonic clock for `now` and `send_time`, the receiver's for
`arrival_time`, of which only differences are used).

The pipeline follows draft-ietf-rmcat-gcc-02 as libwebrtc's goog_cc implements it:

  received packets ─► 5 ms send-time groups ─► trendline of the queuing delay ─► overuse
  detector (adaptive threshold) ─► AIMD rate control (uses the acknowledged bitrate)
  all packets ─► loss fraction per window ─► loss-based bound
  estimate = min(delay-based, loss-based, recent REMB), clamped to [min_bps, max_bps]

Without any TWCC feedback the estimate is the client's REMB. Feedback that makes no sense
(empty, duplicated or old sequence numbers, times that are not finite, arrival times that
jump) is skipped, never raised on.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

# Inter-arrival grouping (libwebrtc inter_arrival_delta.cc, GCC §5.2).
GROUP_SPAN = 0.005  # packets sent within 5 ms of a group's first form one group
BURST_DELTA = 0.005  # ... and so do packets arriving within 5 ms with a shrinking delay
MAX_BURST = 0.100  # a burst group spans at most 100 ms of arrivals
CLOCK_JUMP = 3.0  # seconds: arrival and send deltas this far apart reset the delay state
MAX_REORDERED = 3  # groups in a row arriving before their predecessor reset it too

OUTAGE = 0.5  # seconds of consecutive losses that mean the link was down, not full

# Trendline filter and overuse detector (libwebrtc trendline_estimator.cc), in ms.
TREND_WINDOW = 20  # groups in the linear regression
TREND_SMOOTHING = 0.9  # exponential smoothing of the accumulated delay
TREND_GAIN = 4.0  # threshold gain applied to the slope
TREND_MAX_DELTAS = 60  # the slope is scaled by min(deltas seen, 60)
THRESHOLD_INITIAL = 12.5  # ms
THRESHOLD_MIN, THRESHOLD_MAX = 6.0, 600.0  # ms
K_UP, K_DOWN = 0.0087, 0.039  # threshold adaptation rates (per ms)
MAX_ADAPT_OFFSET = 15.0  # ms: a trend this far past the threshold does not move it
OVERUSE_TIME = 10.0  # ms the trend must stay above the threshold before overuse

# AIMD rate control (libwebrtc aimd_rate_control.cc, GCC §5.5).
BETA = 0.85  # decrease to 0.85 x the acknowledged bitrate
ETA = 1.08  # multiplicative increase per second while the link capacity is unknown
MIN_INCREASE = 1_000  # bits/s: the least a multiplicative step adds
MIN_ADDITIVE_RATE = 4_000  # bits/s per second: the least an additive ramp adds
PACKET_BITS = 1200 * 8  # the packet size the additive ramp assumes
FRAME_RATE = 30.0  # frames/s the additive ramp assumes
RESPONSE_EXTRA = 0.100  # s: the detector's own delay, added to the RTT
THROUGHPUT_HEADROOM = 1.5  # the estimate grows to at most 1.5 x acknowledged + 10 kbit/s
THROUGHPUT_SLACK = 10_000
REDUCE_INTERVAL_MIN, REDUCE_INTERVAL_MAX = 0.010, 0.200  # s: clamp of the RTT between cuts
CAPACITY_ALPHA = 0.05  # link capacity estimator smoothing (libwebrtc link_capacity_estimator)
CAPACITY_DEV_MIN, CAPACITY_DEV_MAX = 0.4, 2.5  # its normalised deviation bounds (kbit/s)
DEFAULT_RTT = 0.200  # s until feedback has measured one (libwebrtc kDefaultRtt)
RTT_SMOOTHING = 0.9

# Acknowledged bitrate: bytes received over a sliding window of arrival times.
ACK_WINDOW = 0.5  # s
ACK_MIN_SPAN = 0.1  # s of arrivals needed before the window's rate is trusted

# Loss-based control (GCC §6; libwebrtc send_side_bandwidth_estimation.cc).
LOSS_LOW, LOSS_HIGH = 0.02, 0.10  # below: may grow; above: cut
LOSS_GROWTH = 1.05  # growth per second below LOSS_LOW
LOSS_MIN_PACKETS = 20  # packets per loss window (kLimitNumPackets)
LOSS_MIN_INTERVAL = 0.300  # s per loss window, plus the RTT (kBweDecreaseInterval)

REMB_TIMEOUT = 3.0  # s: an older REMB no longer caps the TWCC estimate

INCREASE, HOLD, DECREASE = "increase", "hold", "decrease"
NORMAL, OVERUSING, UNDERUSING = 0, 1, -1


@dataclass(slots=True)
class PacketResult:
    """What one TWCC feedback says about one packet the transport sent."""

    seq: int  # transport-wide sequence number (unwrapped, monotonically increasing)
    size: int  # bytes on the wire (RTP packet including header)
    send_time: float  # seconds, the sender's monotonic clock
    arrival_time: float | None  # seconds, the receiver's clock; None = reported lost


class _InterArrival:
    """Groups packets into send-time bursts; yields (send, arrival) deltas between groups."""

    __slots__ = ("_first_arrival", "_first_send", "_last_arrival", "_prev", "_reordered",
                 "_send", "resets")

    def __init__(self) -> None:
        self.resets = -1
        self.reset()

    def reset(self) -> None:
        """Forget every group (the delay history built on them is void too)."""
        self.resets += 1
        self._first_send = self._send = self._first_arrival = self._last_arrival = math.nan
        self._prev: tuple[float, float] | None = None  # (send, arrival) of the last group
        self._reordered = 0

    def add(self, send: float, arrival: float) -> tuple[float, float] | None:
        """Add a received packet (in arrival order); the deltas of a group it completes."""
        if math.isnan(self._first_send):
            self._start(send, arrival)
            return None
        if abs((arrival - self._last_arrival) - (send - self._send)) > CLOCK_JUMP:
            self.reset()  # one clock jumped: what came before says nothing about now
            self._start(send, arrival)
            return None
        if send < self._first_send:
            return None  # sent before the group being built: reordered, skip
        if not self._starts_group(send, arrival):
            self._send = max(self._send, send)
            self._last_arrival = max(self._last_arrival, arrival)
            return None
        deltas = None
        if self._prev is not None:
            send_delta = self._send - self._prev[0]
            arrival_delta = self._last_arrival - self._prev[1]
            if arrival_delta < 0:
                self._reordered += 1
                if self._reordered >= MAX_REORDERED:
                    self.reset()
                    self._start(send, arrival)
                    return None
            else:
                self._reordered = 0
                deltas = (send_delta, arrival_delta)
        if deltas is not None or self._prev is None:
            self._prev = (self._send, self._last_arrival)
        self._start(send, arrival)
        return deltas

    def _start(self, send: float, arrival: float) -> None:
        self._first_send = self._send = send
        self._first_arrival = self._last_arrival = arrival

    def _starts_group(self, send: float, arrival: float) -> bool:
        arrival_delta = arrival - self._last_arrival
        send_delta = send - self._send
        if send_delta == 0:
            return False
        if (arrival_delta - send_delta < 0 and arrival_delta <= BURST_DELTA
                and arrival - self._first_arrival < MAX_BURST):
            return False  # a burst the network delivered back to back
        return send - self._first_send > GROUP_SPAN


class _Trendline:
    """Slope of the smoothed queuing delay over the last groups, and the overuse hypothesis."""

    __slots__ = ("_accumulated", "_first_arrival", "_history", "_last_threshold_update",
                 "_over_counter", "_over_time", "_prev_trend", "_smoothed", "deltas",
                 "hypothesis", "modified_trend", "threshold")

    def __init__(self) -> None:
        self.reset()
        self.threshold = THRESHOLD_INITIAL
        self._last_threshold_update = math.nan

    def reset(self) -> None:
        self._accumulated = self._smoothed = 0.0
        self._first_arrival = math.nan
        self._history: deque[tuple[float, float]] = deque(maxlen=TREND_WINDOW)
        self._prev_trend = 0.0
        self._over_time = -1.0
        self._over_counter = 0
        self.deltas = 0
        self.hypothesis = NORMAL
        self.modified_trend = 0.0

    def update(self, send_delta_ms: float, arrival_delta_ms: float, arrival_ms: float) -> None:
        self.deltas = min(self.deltas + 1, 1000)
        if math.isnan(self._first_arrival):
            self._first_arrival = arrival_ms
        self._accumulated += arrival_delta_ms - send_delta_ms
        self._smoothed = (TREND_SMOOTHING * self._smoothed
                          + (1 - TREND_SMOOTHING) * self._accumulated)
        self._history.append((arrival_ms - self._first_arrival, self._smoothed))
        trend = self._prev_trend
        if len(self._history) == TREND_WINDOW:
            slope = _slope(self._history)
            if slope is not None:
                trend = slope
        self._detect(trend, send_delta_ms, arrival_ms)

    def _detect(self, trend: float, send_delta_ms: float, now_ms: float) -> None:
        if self.deltas < 2:
            self.hypothesis = NORMAL
            return
        modified = min(self.deltas, TREND_MAX_DELTAS) * trend * TREND_GAIN
        self.modified_trend = modified
        if modified > self.threshold:
            if self._over_time < 0:
                self._over_time = send_delta_ms / 2
            else:
                self._over_time += send_delta_ms
            self._over_counter += 1
            if (self._over_time > OVERUSE_TIME and self._over_counter > 1
                    and trend >= self._prev_trend):
                self._over_time = 0.0
                self._over_counter = 0
                self.hypothesis = OVERUSING
        elif modified < -self.threshold:
            self._over_time = -1.0
            self._over_counter = 0
            self.hypothesis = UNDERUSING
        else:
            self._over_time = -1.0
            self._over_counter = 0
            self.hypothesis = NORMAL
        self._prev_trend = trend
        self._adapt_threshold(modified, now_ms)

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        if math.isnan(self._last_threshold_update):
            self._last_threshold_update = now_ms
        size = abs(modified)
        if size > self.threshold + MAX_ADAPT_OFFSET:
            self._last_threshold_update = now_ms  # a spike: do not chase it
            return
        k = K_DOWN if size < self.threshold else K_UP
        elapsed = min(max(now_ms - self._last_threshold_update, 0.0), 100.0)
        self.threshold += k * (size - self.threshold) * elapsed
        self.threshold = min(max(self.threshold, THRESHOLD_MIN), THRESHOLD_MAX)
        self._last_threshold_update = now_ms


def _slope(points: deque[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x; None when all x are equal."""
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    num = den = 0.0
    for x, y in points:
        dx = x - mean_x
        num += dx * (y - mean_y)
        den += dx * dx
    return num / den if den > 0 else None


class _AckedBitrate:
    """Bits/s the receiver got over the last ACK_WINDOW of arrival times."""

    __slots__ = ("_bytes", "_packets")

    def __init__(self) -> None:
        self._packets: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, arrival: float, size: int) -> None:
        packets = self._packets
        if packets and arrival < packets[-1][0] - CLOCK_JUMP:
            packets.clear()  # the receiver's clock went back: start over
            self._bytes = 0
        packets.append((arrival, size))
        self._bytes += size
        newest = max(arrival, packets[0][0])
        while len(packets) > 1 and packets[0][0] < newest - ACK_WINDOW:
            self._bytes -= packets.popleft()[1]

    def rate(self) -> float | None:
        packets = self._packets
        if len(packets) < 2:
            return None
        span = packets[-1][0] - packets[0][0]
        if span < ACK_MIN_SPAN:
            return None
        return (self._bytes - packets[0][1]) * 8 / span  # the first packet opens the span


class _LinkCapacity:
    """Average acknowledged bitrate at past overuses, with its deviation (kbit/s inside)."""

    __slots__ = ("_deviation", "estimate_kbps")

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self._deviation = CAPACITY_DEV_MIN

    def reset(self) -> None:
        self.estimate_kbps = None

    def on_overuse(self, acked_bps: float) -> None:
        sample = acked_bps / 1000
        if self.estimate_kbps is None:
            self.estimate_kbps = sample
        else:
            self.estimate_kbps = ((1 - CAPACITY_ALPHA) * self.estimate_kbps
                                  + CAPACITY_ALPHA * sample)
        error = self.estimate_kbps - sample
        self._deviation = ((1 - CAPACITY_ALPHA) * self._deviation
                           + CAPACITY_ALPHA * error * error / max(self.estimate_kbps, 1.0))
        self._deviation = min(max(self._deviation, CAPACITY_DEV_MIN), CAPACITY_DEV_MAX)

    def _spread_kbps(self) -> float:
        return 3 * math.sqrt(self._deviation * (self.estimate_kbps or 0.0))

    def upper_bps(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + self._spread_kbps()) * 1000

    def lower_bps(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - self._spread_kbps()) * 1000


class _AimdRateControl:
    """The delay-based estimate: GCC's increase / hold / decrease state machine."""

    __slots__ = ("_last_change", "_latest_acked", "bps", "capacity", "max_bps", "min_bps",
                 "state")

    def __init__(self, initial_bps: float, min_bps: float, max_bps: float) -> None:
        self.bps = initial_bps
        self.min_bps, self.max_bps = min_bps, max_bps
        self.state = INCREASE
        self.capacity = _LinkCapacity()
        self._last_change: float | None = None
        self._latest_acked: float | None = None

    def update(self, usage: int, acked: float | None, rtt: float, now: float) -> None:
        if acked is not None:
            self._latest_acked = acked
        previous = self.state
        self.state = _next_state(previous, usage)
        if self._last_change is None:
            self._last_change = now
        if self.state == INCREASE:
            if previous != INCREASE:
                self._last_change = now  # no credit for time spent holding
            self._increase(rtt, now)
        elif self.state == DECREASE:
            if previous != DECREASE or self._time_to_reduce(acked, rtt, now):
                self._decrease(acked, now)
        self.bps = min(max(self.bps, self.min_bps), self.max_bps)

    def _increase(self, rtt: float, now: float) -> None:
        assert self._last_change is not None
        elapsed = max(now - self._last_change, 0.0)
        self._last_change = now
        acked = self._latest_acked if self._latest_acked is not None else self.bps
        if acked > self.capacity.upper_bps():
            self.capacity.reset()  # far above the old capacity: ramp fast again
        limit = THROUGHPUT_HEADROOM * acked + THROUGHPUT_SLACK
        if self.bps >= limit:
            return  # well ahead of what is actually sent: growing further proves nothing
        if self.capacity.estimate_kbps is not None:
            frame_bits = self.bps / FRAME_RATE
            packet_bits = frame_bits / max(math.ceil(frame_bits / PACKET_BITS), 1)
            response = 2 * (rtt + RESPONSE_EXTRA)
            step = max(MIN_ADDITIVE_RATE, packet_bits / response) * elapsed
        else:
            step = max(self.bps * (ETA ** min(elapsed, 1.0) - 1), MIN_INCREASE)
        self.bps = min(self.bps + step, limit)

    def _time_to_reduce(self, acked: float | None, rtt: float, now: float) -> bool:
        assert self._last_change is not None
        interval = min(max(rtt, REDUCE_INTERVAL_MIN), REDUCE_INTERVAL_MAX)
        if now - self._last_change >= interval:
            return True
        return acked is not None and acked < 0.5 * self.bps

    def _decrease(self, acked: float | None, now: float) -> None:
        self._last_change = now
        if acked is None:
            self.bps /= 2  # overuse before any throughput is known (libwebrtc halves too)
            return
        target = BETA * acked
        if target > self.bps and self.capacity.estimate_kbps is not None:
            target = BETA * self.capacity.estimate_kbps * 1000
        if target < self.bps:
            self.bps = target
        if acked < self.capacity.lower_bps():
            self.capacity.reset()
        self.capacity.on_overuse(acked)

    def raise_to(self, bps: float, now: float) -> None:
        """A probe proved `bps` gets through: start from there, capacity unknown again."""
        if bps > self.bps:
            self.bps = min(bps, self.max_bps)
            self.capacity.reset()
            self._last_change = now


def _next_state(state: str, usage: int) -> str:
    """GCC's rate-control state table (draft-ietf-rmcat-gcc-02 §5.5)."""
    if usage == OVERUSING:
        return DECREASE
    if usage == UNDERUSING:
        return HOLD
    return HOLD if state == DECREASE else INCREASE


class _LossControl:
    """The loss-based bound: windows of >= LOSS_MIN_PACKETS packets, GCC §6's three bands.

    Above LOSS_HIGH the bound cuts what is sent now (the lower of itself and the delay-based
    estimate) by half the loss fraction; between the bands it holds there; below LOSS_LOW it
    grows 5 % a second and, once back at the delay-based estimate, stops binding (math.inf)
    until loss returns. So low loss never slows the delay-based ramp.
    """

    __slots__ = ("_expected", "_lost", "_window_start", "bps", "fraction")

    def __init__(self) -> None:
        self.bps = math.inf
        self.fraction = 0.0
        self._expected = self._lost = 0
        self._window_start: float | None = None

    def add(self, expected: int, lost: int, now: float) -> None:
        if self._window_start is None:
            self._window_start = now
        self._expected += expected
        self._lost += lost

    def update(self, delay_bps: float, rtt: float, now: float) -> None:
        """Close the window when it is long enough and apply its loss fraction."""
        start = self._window_start
        if (start is None or self._expected < LOSS_MIN_PACKETS
                or now - start < LOSS_MIN_INTERVAL + rtt):
            return
        self.fraction = self._lost / self._expected
        if self.fraction < LOSS_LOW:
            if self.bps < math.inf:
                self.bps *= LOSS_GROWTH ** min(now - start, 1.0)
                if self.bps >= delay_bps:
                    self.bps = math.inf
        elif self.fraction > LOSS_HIGH:
            self.bps = min(self.bps, delay_bps) * (1 - 0.5 * self.fraction)
        else:
            self.bps = min(self.bps, delay_bps)
        self._expected = self._lost = 0
        self._window_start = now


class BandwidthEstimator:
    """What one subscriber transport can carry, from its TWCC feedback and REMB."""

    def __init__(self, initial_bps: int = 1_000_000, min_bps: int = 100_000,
                 max_bps: int = 20_000_000) -> None:
        self.min_bps, self.max_bps = min_bps, max(max_bps, min_bps)
        initial = float(min(max(initial_bps, min_bps), self.max_bps))
        self._inter = _InterArrival()
        self._trend = _Trendline()
        self._acked = _AckedBitrate()
        self._delay = _AimdRateControl(initial, min_bps, self.max_bps)
        self._loss = _LossControl()
        self._rtt = DEFAULT_RTT
        self._rtt_measured = False
        self._resets = 0
        self._last_seq: int | None = None
        self._remb_bps: float | None = None
        self._remb_at = -math.inf
        self._feedback_seen = False
        self._estimate = int(initial)
        self.skipped = 0  # packet results ignored as duplicate, old or malformed
        self.outages = 0  # runs of losses taken for the link being down (`_outage_losses`)

    @property
    def estimate_bps(self) -> int:
        return self._estimate

    @property
    def state(self) -> str:
        """The delay-based rate control's state: "increase", "hold" or "decrease"."""
        return self._delay.state

    def on_feedback(self, results: list[PacketResult], now: float) -> None:
        """One TWCC feedback's packets, in sequence order."""
        packets = self._fresh(results)
        if not packets:
            return
        self._feedback_seen = True
        received = sorted((p for p in packets if p.arrival_time is not None),
                          key=_arrival)
        outage = self._outage_losses(packets)
        self._loss.add(len(packets) - outage, len(packets) - len(received) - outage, now)
        for p in received:
            arrival = _arrival(p)
            self._acked.add(arrival, p.size)
            deltas = self._inter.add(p.send_time, arrival)
            if self._inter.resets != self._resets:
                self._resets = self._inter.resets
                self._trend.reset()  # a clock jump or reordering: the delay history is void
            if deltas is None:
                continue
            self._trend.update(deltas[0] * 1000, deltas[1] * 1000, arrival * 1000)
        if received:
            self._update_rtt(received, now)
        self._delay.update(self._trend.hypothesis, self._acked.rate(), self._rtt, now)
        self._loss.update(self._delay.bps, self._rtt, now)
        self._combine(now)

    def _outage_losses(self, packets: list[PacketResult]) -> int:
        """Lost packets in runs sent over OUTAGE or more with nothing arriving: the link was
        down (a blackout, a handover), not congested, and they say nothing about the rate
        it takes. Congestion drops interleave with arrivals; such runs are left out of the
        loss-based bound (counted in `outages`)."""
        out = run = 0
        start = 0.0
        for p in packets:
            if p.arrival_time is None:
                if run == 0:
                    start = p.send_time
                run += 1
                continue
            if run and p.send_time - start >= OUTAGE:
                out += run
                self.outages += 1
            run = 0
        if run and packets[-1].send_time - start >= OUTAGE:
            out += run
            self.outages += 1
        return out

    def on_remb(self, bps: int, now: float) -> None:
        """A receiver estimate (REMB): used alone when the client sends no TWCC, else as an
        upper bound while it is recent (REMB_TIMEOUT)."""
        if not isinstance(bps, int | float) or not bps >= 0 or not math.isfinite(now):
            return
        self._remb_bps = float(bps)
        self._remb_at = now
        self._combine(now)

    def on_probe_result(self, bps: float, now: float) -> None:
        """A probe cluster's delivery rate: bits the receiver acknowledged of the cluster
        divided by the span of their arrival times, as the prober measured it.

        Raises the delay-based estimate to it (never lowers it: a probe that did not fill
        the link says nothing) unless the detector sees overuse right now, and forgets the
        link capacity so the ramp above it is multiplicative again (libwebrtc sets the
        estimate from a probe result the same way). The loss bound is lifted with it; a
        recent REMB still caps.
        """
        if not math.isfinite(bps) or bps <= 0 or self._trend.hypothesis == OVERUSING:
            return
        self._feedback_seen = True  # a probe is measured from TWCC feedback
        self._delay.raise_to(bps, now)
        if self._loss.bps <= self._delay.bps:
            self._loss.bps = math.inf
        self._combine(now)

    def stats(self) -> dict[str, float]:
        """Internals for plots: trend and threshold (ms), loss fraction, bitrates (bits/s)."""
        acked = self._acked.rate()
        capacity = self._delay.capacity.estimate_kbps
        return {
            "estimate_bps": float(self._estimate),
            "delay_bps": self._delay.bps,
            "loss_bps": self._loss.bps if self._loss.bps < math.inf else math.nan,
            "acked_bps": acked if acked is not None else math.nan,
            "remb_bps": self._remb_bps if self._remb_bps is not None else math.nan,
            "capacity_bps": capacity * 1000 if capacity is not None else math.nan,
            "trend_ms": self._trend.modified_trend,
            "threshold_ms": self._trend.threshold,
            "usage": float(self._trend.hypothesis),
            "loss_fraction": self._loss.fraction,
            "rtt_s": self._rtt,
            "skipped": float(self.skipped),
        }

    def _fresh(self, results: list[PacketResult]) -> list[PacketResult]:
        """The results worth using: new sequence numbers, finite times, in sequence order."""
        if not results:
            return []
        ordered = results
        if any(results[i].seq > results[i + 1].seq for i in range(len(results) - 1)):
            ordered = sorted(results, key=lambda p: p.seq)
        out: list[PacketResult] = []
        last = self._last_seq
        for p in ordered:
            arrival = p.arrival_time
            if ((last is not None and p.seq <= last) or not math.isfinite(p.send_time)
                    or (arrival is not None and not math.isfinite(arrival)) or p.size < 0):
                self.skipped += 1
                continue
            out.append(p)
            last = p.seq
        self._last_seq = last
        return out

    def _update_rtt(self, received: list[PacketResult], now: float) -> None:
        """RTT: now - send time, less the time the receiver held the packet before this
        feedback (libwebrtc's feedback RTT); the smallest over the feedback, smoothed."""
        latest = _arrival(received[-1])
        sample = min(now - p.send_time - (latest - _arrival(p)) for p in received)
        if not 0 <= sample < 10:
            return
        if self._rtt_measured:
            self._rtt = RTT_SMOOTHING * self._rtt + (1 - RTT_SMOOTHING) * sample
        else:
            self._rtt, self._rtt_measured = sample, True

    def _combine(self, now: float) -> None:
        remb = self._remb_bps
        if not self._feedback_seen:
            estimate = remb if remb is not None else float(self._estimate)
        else:
            estimate = min(self._delay.bps, self._loss.bps)
            if remb is not None and now - self._remb_at <= REMB_TIMEOUT:
                estimate = min(estimate, remb)
        self._estimate = int(min(max(estimate, self.min_bps), self.max_bps))


def _arrival(p: PacketResult) -> float:
    assert p.arrival_time is not None
    return p.arrival_time

"""Loss recovery: the down-track retransmission cache, the upstream NACK generator, PLI throttle.

Limits follow LiveKit (protocol notes §9.4/§9.5): a subscriber NACK is answered at most
3 times per packet and not more often than min(100 ms, 2·RTT) from a ring of the last
200 (audio) / 500 (video) sent packets; upstream gaps are NACKed up to 5 times with a
backoff between 20 and 400 ms, at most 100 outstanding; PLIs are throttled per layer.
`ReceptionStats` keeps the RFC 3550 loss/jitter counters for Receiver Reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from roost.media.rtcp import RtcpReportBlock, build_nack

T = TypeVar("T")

AUDIO_CACHE_SIZE = 200
VIDEO_CACHE_SIZE = 500


class RetransmitCache(Generic[T]):
    """Ring of what was sent, keyed by outgoing sequence number.

    Items are opaque: a down-track stores a reference to the shared publisher packet plus
    the munge state it was sent under (re-rendered on NACK), so memory stays per publisher
    packet rather than per subscriber packet.
    """

    __slots__ = ("_count", "_items", "_last", "_seqs", "max_retransmits", "min_interval", "size")

    def __init__(self, size: int, max_retransmits: int = 3, min_interval: float = 0.1) -> None:
        if size <= 0:
            raise ValueError("retransmit cache size must be positive")
        self.size = size
        self.max_retransmits = max_retransmits
        self.min_interval = min_interval
        self._items: list[T | None] = [None] * size
        self._seqs: list[int] = [-1] * size
        self._count: list[int] = [0] * size
        self._last: list[float] = [0.0] * size

    def store(self, seq: int, item: T | None) -> None:
        """Remember `item` (None for never-retransmit, e.g. padding) as sent with `seq`."""
        i = seq % self.size
        self._items[i] = item
        self._seqs[i] = seq
        self._count[i] = 0

    def get(self, seq: int) -> T | None:
        """The item stored for `seq`, ignoring rate limits."""
        i = seq % self.size
        return self._items[i] if self._seqs[i] == seq else None

    def answer(
        self, seqs: Iterable[int], now: float, rtt: float | None = None
    ) -> list[tuple[int, T]]:
        """(seq, item) to retransmit for a NACK, applying the count and spacing limits."""
        interval = self.min_interval if rtt is None else min(self.min_interval, 2.0 * rtt)
        out: list[tuple[int, T]] = []
        for seq in seqs:
            i = seq % self.size
            if self._seqs[i] != seq:
                continue  # older than the window (or never sent)
            item = self._items[i]
            if item is None or self._count[i] >= self.max_retransmits:
                continue
            if self._count[i] and now - self._last[i] < interval:
                continue
            self._count[i] += 1
            self._last[i] = now
            out.append((seq, item))
        return out


class NackGenerator:
    """Detects gaps in a publisher stream's sequence numbers and schedules NACKs."""

    def __init__(
        self,
        max_nacks: int = 100,
        max_tries: int = 5,
        min_interval: float = 0.02,
        max_interval: float = 0.4,
        backoff: float = 1.25,
        max_lifetime: float = 120.0,
        default_rtt: float = 0.07,
        max_gap: int = 3000,
    ) -> None:
        self.max_nacks = max_nacks
        self.max_tries = max_tries
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.backoff = backoff
        self.max_lifetime = max_lifetime
        self.default_rtt = default_rtt
        self.max_gap = max_gap  # a bigger jump is a stream restart, not loss
        self.rtt = default_rtt
        self._highest = -1
        # seq -> [born, tries, last_nacked]; dicts keep insertion (= age) order
        self._missing: dict[int, list[float]] = {}

    def set_rtt(self, rtt: float) -> None:
        """Feed an RTT sample in seconds (smoothed 75 % new / 25 % old)."""
        if rtt <= 0:
            self.rtt = self.default_rtt
        else:
            self.rtt = 0.75 * rtt + 0.25 * self.rtt

    @property
    def outstanding(self) -> int:
        """Sequence numbers currently waiting for a retransmission."""
        return len(self._missing)

    def needed(self, seq: int) -> bool:
        """Whether `seq` has not arrived yet: a gap still waiting for its retransmission,
        or newer than anything seen."""
        if seq in self._missing or self._highest < 0:
            return True
        return 0 < ((seq - self._highest) & 0xFFFF) < 0x8000

    def push(self, seq: int, now: float) -> None:
        """Record a received sequence number (call for every packet, in arrival order)."""
        hi = self._highest
        if hi < 0:
            self._highest = seq
            return
        diff = (seq - hi) & 0xFFFF
        if diff == 0:
            return
        if diff < 0x8000:
            if diff > 1:
                if diff > self.max_gap:
                    self._missing.clear()
                else:
                    missing = self._missing
                    first = max(1, diff - self.max_nacks)
                    for k in range(first, diff):
                        if len(missing) >= self.max_nacks:
                            del missing[next(iter(missing))]
                        missing[(hi + k) & 0xFFFF] = [now, 0.0, now]
            self._highest = seq
        elif self._missing:
            self._missing.pop(seq, None)

    def due(self, now: float) -> list[int]:
        """Sequence numbers to NACK now (marks them as tried); expired ones are dropped."""
        out: list[int] = []
        expired: list[int] = []
        rtt = self.rtt
        for seq, entry in self._missing.items():
            born, tries, last = entry
            if tries >= self.max_tries or now - born > self.max_lifetime:
                expired.append(seq)
                continue
            required = 0.0
            if tries > 0:
                required = min(self.max_interval, rtt * self.backoff ** (tries - 1))
            required = max(required, self.min_interval)
            if now - last < required:
                continue
            entry[1] = tries + 1
            entry[2] = now
            out.append(seq)
        for seq in expired:
            del self._missing[seq]
        return out

    def build(self, sender_ssrc: int, media_ssrc: int, now: float) -> bytes | None:
        """An RTCP NACK for everything due now, or None."""
        due = self.due(now)
        return build_nack(sender_ssrc, media_ssrc, due) if due else None


class PliThrottle:
    """Per-layer keyframe request throttle: 500 ms for layer 0, 1 s for the others."""

    def __init__(self, low: float = 0.5, other: float = 1.0) -> None:
        self.low = low
        self.other = other
        self._last: dict[int, float] = {}

    def allow(self, layer: int, now: float) -> bool:
        """True (and start the throttle window) if a PLI for `layer` may go upstream now."""
        last = self._last.get(layer)
        window = self.low if layer <= 0 else self.other
        if last is not None and now - last < window:
            return False
        self._last[layer] = now
        return True

    def reset(self, layer: int | None = None) -> None:
        """Forget throttle state (a layer restarted, or all layers)."""
        if layer is None:
            self._last.clear()
        else:
            self._last.pop(layer, None)


class ReceptionStats:
    """RFC 3550 reception statistics of one publisher SSRC, for Receiver Reports and quality."""

    __slots__ = (
        "_base",
        "_expected_prior",
        "_last_sr_at",
        "_last_sr_middle",
        "_max",
        "_received",
        "_received_prior",
        "_transit",
        "clock_rate",
        "fraction_lost",
        "jitter",
    )

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._base = -1  # extended sequence number of the first packet
        self._max = -1  # highest extended sequence number
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit: float | None = None
        self.jitter = 0.0  # in timestamp units
        self.fraction_lost = 0  # 0..255, of the last reporting interval
        self._last_sr_middle = 0
        self._last_sr_at = 0.0

    def update(self, seq: int, timestamp: int, arrival: float) -> None:
        """Account one received packet (arrival in seconds)."""
        if self._max < 0:
            self._base = self._max = seq
        else:
            diff = (seq - self._max) & 0xFFFF
            if diff < 0x8000:
                self._max += diff
        self._received += 1
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < 5 * self.clock_rate:  # ignore timestamp jumps (encoder restart, wrap)
                self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    def on_sender_report(self, ntp: int, now: float) -> None:
        """Remember the publisher's last SR for LSR/DLSR."""
        self._last_sr_middle = (ntp >> 16) & 0xFFFFFFFF
        self._last_sr_at = now

    @property
    def expected(self) -> int:
        """Packets expected so far (from the sequence number span)."""
        return 0 if self._max < 0 else self._max - self._base + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (may be negative with duplicates)."""
        return self.expected - self._received

    @property
    def loss_fraction(self) -> float:
        """Fraction lost in the last reporting interval (0..1)."""
        return self.fraction_lost / 256.0

    def report_block(self, ssrc: int, now: float) -> RtcpReportBlock:
        """A report block for `ssrc`; starts a new reporting interval."""
        expected = self.expected
        interval_expected = expected - self._expected_prior
        interval_lost = interval_expected - (self._received - self._received_prior)
        self._expected_prior = expected
        self._received_prior = self._received
        if interval_expected > 0 and interval_lost > 0:
            self.fraction_lost = min(255, (interval_lost << 8) // interval_expected)
        else:
            self.fraction_lost = 0
        dlsr = 0
        if self._last_sr_middle:
            dlsr = int((now - self._last_sr_at) * 65536) & 0xFFFFFFFF
        return RtcpReportBlock(
            ssrc=ssrc,
            fraction_lost=self.fraction_lost,
            packets_lost=max(-0x800000, min(0x7FFFFF, self.lost)),
            highest_sequence=max(0, self._max) & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self._last_sr_middle,
            dlsr=dlsr,
        )

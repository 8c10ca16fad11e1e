"""Receive-side transport-wide CC towards a publisher: record arrivals, send TWCC feedback."""

from __future__ import annotations

from collections.abc import Callable

from roost.media.rtcp import RtcpTwcc
from roost.telemetry import count_twcc_feedback_sent

FEEDBACK_INTERVAL = 0.05  # seconds between feedback rounds (libwebrtc: 50-250 ms; pion: 100)
HISTORY = 8192  # arrivals remembered, a power of two (~3 s at 2,500 packets/s)
_MASK = HISTORY - 1
MAX_SPAN = 4096  # sequence numbers one round may cover; older unreported ones are given up
LATE_WINDOW = 1024  # a packet this far behind the newest is too late to report
MAX_RECEIVED = 400  # received packets per feedback packet: at most ~1,000 bytes of RTCP
_NONE = -(1 << 62)  # the sequence number of a slot that holds no arrival
_WRAP = 0x10000
_TICK_US = 250  # receive-delta unit
_REF_US = 64_000  # reference-time unit


class FeedbackRecorder:
    """Transport sequence numbers and arrival times of one publisher connection's packets.

    `record` runs for every RTP packet the publisher sends (the hot path: it reads the
    transport-wide-cc element with a specialised walk of the extension block and never
    raises); `tick` builds RTCP transport-cc feedback every `FEEDBACK_INTERVAL` and hands it
    to `send`. Sequence numbers are unwrapped; duplicates are reported once; a packet that
    arrives after its number was reported lost (within `LATE_WINDOW`) makes the next
    feedback start again from it, as libwebrtc's receiver does; a gap wider than `MAX_SPAN`
    is not reported packet by packet.
    """

    __slots__ = ("_due", "_epoch", "_fb_count", "_floor", "_last_pkt", "_late_at_tick",
                 "_malformed_at_tick", "_max", "_recorded_at_tick", "_seqs", "_start",
                 "_times", "duplicates", "ext_id", "late", "malformed", "recorded", "resets",
                 "sender_ssrc", "sent")

    def __init__(self, ext_id: int, sender_ssrc: int, now: float) -> None:
        if not 1 <= ext_id <= 255:
            raise ValueError(f"transport-cc extension id {ext_id} out of range")
        self.ext_id = ext_id
        self.sender_ssrc = sender_ssrc
        self._epoch = now  # arrival times are sent relative to this
        self._due = now + FEEDBACK_INTERVAL
        self._seqs = [_NONE] * HISTORY  # unwrapped sequence number held by each slot
        self._times = [0.0] * HISTORY
        self._max = -1  # newest unwrapped sequence number (-1: none since the last reset)
        self._floor = 0  # every unwrapped number after a reset is above this
        self._start = 0  # the next feedback starts here
        self._fb_count = 0
        self._last_pkt = b""  # its SSRC names the media source in the feedback
        self._recorded_at_tick = self._late_at_tick = self._malformed_at_tick = 0
        # counters
        self.recorded = 0
        self.duplicates = 0
        self.late = 0
        self.malformed = 0  # a transport-cc element that is not two bytes, a cut block
        self.resets = 0
        self.sent = 0

    # -- per packet ----------------------------------------------------------------------
    def record(self, pkt: bytes, now: float) -> None:
        """Note the arrival of one decrypted RTP packet (at least 12 bytes); never raises."""
        b0 = pkt[0]
        if not b0 & 0x10:
            return
        at = 12 + ((b0 & 0x0F) << 2)
        n = len(pkt)
        if at + 4 > n:
            self.malformed += 1
            return
        i = at + 4
        end = i + (((pkt[at + 2] << 8) | pkt[at + 3]) << 2)
        if end > n:
            self.malformed += 1
            return
        eid = self.ext_id
        if pkt[at] == 0xBE and pkt[at + 1] == 0xDE:
            while True:
                if i >= end:
                    return
                b = pkt[i]
                if b >> 4 == eid:
                    if b & 0x0F != 1 or i + 3 > end:
                        self.malformed += 1
                        return
                    seq = (pkt[i + 1] << 8) | pkt[i + 2]
                    break
                if b < 0x10:  # padding, or id 0 with a length: the end
                    if b:
                        return
                    i += 1
                elif b >= 0xF0:  # id 15: the end
                    return
                else:
                    i += (b & 0x0F) + 2
        elif pkt[at] == 0x10 and not pkt[at + 1] & 0xF0:
            while True:
                if i + 1 >= end:
                    return
                b = pkt[i]
                if b == 0:
                    i += 1
                    continue
                length = pkt[i + 1]
                if b == eid:
                    if length != 2 or i + 4 > end:
                        self.malformed += 1
                        return
                    seq = (pkt[i + 2] << 8) | pkt[i + 3]
                    break
                i += 2 + length
        else:
            return
        last = self._max
        if last < 0:  # the first packet (since a reset)
            u = seq + ((self._floor + HISTORY) // _WRAP + 1) * _WRAP
            self._max = self._start = u
        else:
            u = last + ((seq - last + 0x8000) & 0xFFFF) - 0x8000
            if u > last:
                self._max = u
            elif u <= last - LATE_WINDOW:
                self.late += 1
                return
            elif self._seqs[u & _MASK] == u:
                self.duplicates += 1
                return
            elif u < self._start:
                self._start = u  # reported lost already: report again from here
        slot = u & _MASK
        self._seqs[slot] = u
        self._times[slot] = now
        self._last_pkt = pkt
        self.recorded += 1

    # -- periodic ------------------------------------------------------------------------
    def tick(self, now: float, send: Callable[[bytes], None]) -> int:
        """Every `FEEDBACK_INTERVAL`: send the feedback due; the number of packets sent."""
        if now < self._due:
            return 0
        self._due += FEEDBACK_INTERVAL  # 40 and 60 ms apart on the 20 ms MediaClock
        if self._due <= now:  # the loop stalled: start afresh
            self._due = now + FEEDBACK_INTERVAL
        if (self.recorded == self._recorded_at_tick and self.late > self._late_at_tick
                and self._max >= 0):
            self._restart()
        packets = self.feedback()
        for p in packets:
            send(p)
        self.sent += len(packets)
        count_twcc_feedback_sent(len(packets), self.malformed - self._malformed_at_tick,
                                 self.late - self._late_at_tick)
        self._recorded_at_tick = self.recorded
        self._late_at_tick = self.late
        self._malformed_at_tick = self.malformed
        return len(packets)

    def _restart(self) -> None:
        """Nothing but late packets since the last round: the sender started a new
        sequence (or jumped more than half the number space); follow it."""
        self.resets += 1
        self._floor = self._max
        self._max = -1

    def feedback(self) -> list[bytes]:
        """RTCP transport-cc packets for everything recorded since the last call (and again
        from a late arrival); [] when nothing new arrived."""
        if self._max < 0:
            return []
        end = self._max + 1
        start = max(self._start, end - MAX_SPAN)
        seqs, times = self._seqs, self._times
        media = int.from_bytes(self._last_pkt[8:12], "big") if len(self._last_pkt) >= 12 else 0
        epoch = self._epoch
        out: list[bytes] = []
        while start < end:
            u = start
            while u < end and seqs[u & _MASK] != u:
                u += 1
            if u >= end:
                break
            first_us = int((times[u & _MASK] - epoch) * 1e6)
            ref = first_us // _REF_US
            last_us = ref * _REF_US
            deltas: list[int | None] = [None] * (u - start)
            received = 0
            while u < end and received < MAX_RECEIVED:
                if seqs[u & _MASK] == u:
                    t_us = int((times[u & _MASK] - epoch) * 1e6)
                    d = (t_us - last_us + _TICK_US // 2) // _TICK_US
                    if not -0x8000 <= d <= 0x7FFF:
                        break  # too far from the previous arrival: a new feedback
                    deltas.append(d)
                    last_us += d * _TICK_US
                    received += 1
                else:
                    deltas.append(None)
                u += 1
            while deltas[-1] is None:
                deltas.pop()
            out.append(RtcpTwcc.build(self.sender_ssrc, media, start, ref & 0xFFFFFF,
                                      self._fb_count, deltas))
            self._fb_count = (self._fb_count + 1) & 0xFF
            start += len(deltas)
        self._start = end
        return out

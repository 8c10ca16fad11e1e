"""Transport-wide congestion control on a subscriber transport: sequence numbers and feedback.

Everything roost sends to a subscriber that negotiated the transport-wide-cc header extension
carries a transport sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01).
The forwarder reserves the element as the first of the packet's extension block (two zero
bytes); `TransportSequencer.stamp` writes the number in place just before SRTP and
remembers when and how much was sent. The subscriber's feedback (RTPFB FMT 15) is turned
back into per-packet results (sent at, arrived at or lost) for the bandwidth estimator.
"""

from __future__ import annotations

from roost.media.bwe import PacketResult
from roost.media.rtcp import RtcpTwcc

HISTORY = 8192  # packets remembered for feedback (a power of two); ~3 s at 2,500 pkt/s
REFERENCE_UNIT = 0.064  # seconds per TWCC reference-time step


class TransportSequencer:
    """The transport-wide sequence of one connection and the history of what was sent."""

    __slots__ = ("_sent_at", "_sizes", "feedback_errors", "next_seq", "stamped")

    def __init__(self) -> None:
        self.next_seq = 0  # unwrapped: the packet on the wire carries next_seq & 0xFFFF
        self._sent_at = [0.0] * HISTORY
        self._sizes = [0] * HISTORY
        self.stamped = 0
        self.feedback_errors = 0  # feedback naming packets never sent or long forgotten

    def stamp(self, pkt: bytes | bytearray, ext_id: int,
              now: float) -> bytes | bytearray:
        """`pkt` with the next sequence number in its reserved first element.

        A packet without that element (a forwarder without transport-cc, a malformed
        block) goes out unchanged and unrecorded.
        """
        if len(pkt) < 20 or not pkt[0] & 0x10 or pkt[0] & 0x0F:
            return pkt
        if pkt[12] == 0xBE and pkt[13] == 0xDE and pkt[16] == (ext_id << 4) | 1:
            at = 17
        elif pkt[12] == 0x10 and pkt[16] == ext_id and pkt[17] == 2:
            at = 18
        else:
            return pkt
        out = pkt if isinstance(pkt, bytearray) else bytearray(pkt)
        seq = self.next_seq
        self.next_seq = seq + 1
        out[at] = (seq >> 8) & 0xFF
        out[at + 1] = seq & 0xFF
        i = seq & (HISTORY - 1)
        self._sent_at[i] = now
        self._sizes[i] = len(out)
        self.stamped += 1
        return out

    def sent_bps(self, now: float, window: float = 0.5) -> float:
        """Bits/s stamped over the last `window` seconds (walks back through the history)."""
        total = 0
        seq = self.next_seq - 1
        oldest = max(0, self.next_seq - HISTORY)
        sent_at, sizes = self._sent_at, self._sizes
        while seq >= oldest and now - sent_at[seq & (HISTORY - 1)] <= window:
            total += sizes[seq & (HISTORY - 1)]
            seq -= 1
        return 8 * total / window

    def _unwrap(self, seq16: int) -> int:
        """The sent sequence number (at most 2^16 back) whose low 16 bits are `seq16`."""
        latest = self.next_seq - 1
        return latest - ((latest - seq16) & 0xFFFF)

    def results(self, fb: RtcpTwcc) -> list[PacketResult]:
        """Per-packet results of one feedback, in sequence order; [] when it names nothing
        this connection sent recently (counted in `feedback_errors`)."""
        if self.next_seq == 0 or fb.status_count == 0:
            return []
        base = self._unwrap(fb.base_sequence)
        oldest = self.next_seq - HISTORY
        if base < oldest or base + fb.status_count > self.next_seq:
            self.feedback_errors += 1
            return []
        ref = fb.reference_time
        if ref & 0x800000:  # a signed 24-bit value
            ref -= 0x1000000
        arrival = ref * REFERENCE_UNIT
        arrived: dict[int, float] = {}
        for seq16, delta_us in fb.received:
            arrival += delta_us * 1e-6
            offset = (seq16 - fb.base_sequence) & 0xFFFF
            if offset < fb.status_count:
                arrived[base + offset] = arrival
        sent_at, sizes = self._sent_at, self._sizes
        out = []
        for seq in range(base, base + fb.status_count):
            i = seq & (HISTORY - 1)
            out.append(PacketResult(seq, sizes[i], sent_at[i], arrived.get(seq)))
        return out

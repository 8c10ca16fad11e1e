"""RTCP wire types (RFC 3550, 4585, 5104, REMB, TWCC) and compound packet parse/build.

Every type has `parse(body)`-style construction through `parse_compound` and `__bytes__`
that re-serialises byte for byte (padding excepted). Hostile input raises only ValueError.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

Buffer = bytes | bytearray | memoryview

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206

RTPFB_NACK = 1
RTPFB_TWCC = 15
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15

SDES_CNAME = 1

MAX_COMPOUND = 65535
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

_HDR = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_II = struct.Struct("!II")
_HH = struct.Struct("!HH")
_SR = struct.Struct("!IQIII")
_BLOCK = struct.Struct("!IB3sIIII")


def _header(count: int, pt: int, body_len: int) -> bytes:
    if body_len % 4:
        raise ValueError(f"RTCP body length {body_len} is not a multiple of 4")
    return _HDR.pack(0x80 | count, pt, body_len // 4)


# --------------------------------------------------------------------------- time helpers


def ntp_now(now: float | None = None) -> int:
    """64-bit NTP timestamp for wall-clock `now` (seconds since the Unix epoch)."""
    t = time.time() if now is None else now
    return int((t + NTP_EPOCH_OFFSET) * 4294967296.0) & 0xFFFFFFFFFFFFFFFF


def ntp_to_seconds(ntp: int) -> float:
    """NTP 64-bit timestamp to float seconds (NTP era, not Unix)."""
    return ntp / 4294967296.0


def ntp_middle32(ntp: int) -> int:
    """Middle 32 bits of an NTP timestamp, as used in LSR."""
    return (ntp >> 16) & 0xFFFFFFFF


def rtt_from_report(lsr: int, dlsr: int, now_ntp: int) -> float | None:
    """Round-trip time in seconds from a report block's LSR/DLSR, or None if unknown."""
    if lsr == 0:
        return None
    rtt = (ntp_middle32(now_ntp) - lsr - dlsr) & 0xFFFFFFFF
    if rtt & 0x80000000:  # negative: clock trouble
        return 0.0
    return rtt / 65536.0


# --------------------------------------------------------------------------- report blocks


@dataclass
class RtcpReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0  # signed 24-bit cumulative
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def parse(cls, data: Buffer, off: int = 0) -> RtcpReportBlock:
        """Parse 24 bytes at `off`."""
        if len(data) - off < 24:
            raise ValueError("RTCP report block is truncated")
        ssrc, frac, lost, hi, jit, lsr, dlsr = _BLOCK.unpack_from(data, off)
        packets_lost = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, frac, packets_lost, hi, jit, lsr, dlsr)

    def __bytes__(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)).to_bytes(3, "big", signed=True)
        return _BLOCK.pack(
            self.ssrc,
            self.fraction_lost,
            lost,
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )


def _parse_blocks(body: Buffer, off: int, count: int) -> list[RtcpReportBlock]:
    if off + 24 * count > len(body):
        raise ValueError(f"RTCP packet too short for {count} report blocks")
    return [RtcpReportBlock.parse(body, off + 24 * i) for i in range(count)]


# --------------------------------------------------------------------------- packet types


@dataclass
class RtcpSenderReport:
    """SR (PT 200)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int = 0
    octet_count: int = 0
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""

    @classmethod
    def parse(cls, count: int, body: Buffer) -> RtcpSenderReport:
        """Parse the body after the 4-byte header."""
        if len(body) < 24:
            raise ValueError(f"RTCP SR body of {len(body)} bytes is shorter than 24")
        ssrc, ntp, rtp, pc, oc = _SR.unpack_from(body, 0)
        reports = _parse_blocks(body, 24, count)
        return cls(ssrc, ntp, rtp, pc, oc, reports, bytes(body[24 + 24 * count :]))

    def __bytes__(self) -> bytes:
        body = b"".join(
            [
                _SR.pack(
                    self.ssrc,
                    self.ntp_timestamp,
                    self.rtp_timestamp,
                    self.packet_count & 0xFFFFFFFF,
                    self.octet_count & 0xFFFFFFFF,
                ),
                *map(bytes, self.reports),
                self.extension,
            ]
        )
        return _header(len(self.reports), RTCP_SR, len(body)) + body


@dataclass
class RtcpReceiverReport:
    """RR (PT 201)."""

    ssrc: int
    reports: list[RtcpReportBlock] = field(default_factory=list)
    extension: bytes = b""

    @classmethod
    def parse(cls, count: int, body: Buffer) -> RtcpReceiverReport:
        """Parse the body after the 4-byte header."""
        if len(body) < 4:
            raise ValueError("RTCP RR body is shorter than 4 bytes")
        reports = _parse_blocks(body, 4, count)
        return cls(_U32.unpack_from(body, 0)[0], reports, bytes(body[4 + 24 * count :]))

    def __bytes__(self) -> bytes:
        body = b"".join([_U32.pack(self.ssrc), *map(bytes, self.reports), self.extension])
        return _header(len(self.reports), RTCP_RR, len(body)) + body


@dataclass
class RtcpSdesChunk:
    """One SDES chunk: an SSRC and its (type, value) items."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    def __bytes__(self) -> bytes:
        out = bytearray(_U32.pack(self.ssrc))
        for t, v in self.items:
            if not 1 <= t <= 255 or len(v) > 255:
                raise ValueError(f"SDES item type {t} / length {len(v)} out of range")
            out += bytes((t, len(v))) + v
        out += b"\x00" * (4 - len(out) % 4)  # terminator plus padding (at least one zero)
        return bytes(out)


@dataclass
class RtcpSdes:
    """SDES (PT 202)."""

    chunks: list[RtcpSdesChunk] = field(default_factory=list)

    @classmethod
    def parse(cls, count: int, body: Buffer) -> RtcpSdes:
        """Parse the body after the 4-byte header."""
        chunks = []
        i, n = 0, len(body)
        for _ in range(count):
            if i + 4 > n:
                raise ValueError("RTCP SDES chunk is truncated")
            chunk = RtcpSdesChunk(_U32.unpack_from(body, i)[0])
            i += 4
            while True:
                if i >= n:
                    raise ValueError("RTCP SDES items are not terminated")
                t = body[i]
                if t == 0:
                    i = (i + 4) & ~3  # skip the terminator and pad to the next word
                    break
                if i + 2 > n or i + 2 + body[i + 1] > n:
                    raise ValueError(f"RTCP SDES item type {t} is truncated")
                length = body[i + 1]
                chunk.items.append((t, bytes(body[i + 2 : i + 2 + length])))
                i += 2 + length
            chunks.append(chunk)
        return cls(chunks)

    def __bytes__(self) -> bytes:
        body = b"".join(map(bytes, self.chunks))
        return _header(len(self.chunks), RTCP_SDES, len(body)) + body


@dataclass
class RtcpBye:
    """BYE (PT 203)."""

    sources: list[int] = field(default_factory=list)
    reason: bytes | None = None

    @classmethod
    def parse(cls, count: int, body: Buffer) -> RtcpBye:
        """Parse the body after the 4-byte header."""
        if 4 * count > len(body):
            raise ValueError(f"RTCP BYE too short for {count} sources")
        sources = list(struct.unpack_from(f"!{count}I", body, 0))
        reason = None
        i = 4 * count
        if i < len(body):
            length = body[i]
            if i + 1 + length > len(body):
                raise ValueError("RTCP BYE reason is truncated")
            reason = bytes(body[i + 1 : i + 1 + length])
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        body = bytearray(struct.pack(f"!{len(self.sources)}I", *self.sources))
        if self.reason is not None:
            if len(self.reason) > 255:
                raise ValueError("RTCP BYE reason longer than 255 bytes")
            body += bytes((len(self.reason),)) + self.reason
            body += b"\x00" * (-len(body) % 4)
        return _header(len(self.sources), RTCP_BYE, len(body)) + bytes(body)


@dataclass
class RtcpNack:
    """Generic NACK (RTPFB FMT 1): (PID, BLP) pairs."""

    sender_ssrc: int
    media_ssrc: int
    pairs: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def parse(cls, sender: int, media: int, fci: Buffer) -> RtcpNack:
        """Parse the FCI after the sender/media SSRCs."""
        if len(fci) % 4:
            raise ValueError(f"RTCP NACK FCI of {len(fci)} bytes is not a multiple of 4")
        return cls(sender, media, [_HH.unpack_from(fci, i) for i in range(0, len(fci), 4)])

    @classmethod
    def from_lost(cls, sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> RtcpNack:
        """Build from sequence numbers (any order; encoded in ascending wrap-aware runs)."""
        return cls(sender_ssrc, media_ssrc, nack_pairs(lost))

    @property
    def lost(self) -> list[int]:
        """All sequence numbers the NACK asks for."""
        out = []
        for pid, blp in self.pairs:
            out.append(pid)
            for bit in range(16):
                if blp & (1 << bit):
                    out.append((pid + bit + 1) & 0xFFFF)
        return out

    def __bytes__(self) -> bytes:
        body = _II.pack(self.sender_ssrc, self.media_ssrc) + b"".join(
            _HH.pack(p, b) for p, b in self.pairs
        )
        return _header(RTPFB_NACK, RTCP_RTPFB, len(body)) + body


def nack_pairs(lost: Iterable[int]) -> list[tuple[int, int]]:
    """Encode sequence numbers (given in send order) as NACK (PID, BLP) pairs."""
    pairs: list[tuple[int, int]] = []
    pid = -1
    blp = 0
    for seq in lost:
        seq &= 0xFFFF
        if pid >= 0:
            diff = (seq - pid) & 0xFFFF
            if 1 <= diff <= 16:
                blp |= 1 << (diff - 1)
                continue
            if diff == 0:
                continue
            pairs.append((pid, blp))
        pid, blp = seq, 0
    if pid >= 0:
        pairs.append((pid, blp))
    return pairs


@dataclass
class RtcpPli:
    """Picture Loss Indication (PSFB FMT 1)."""

    sender_ssrc: int
    media_ssrc: int

    def __bytes__(self) -> bytes:
        return _header(PSFB_PLI, RTCP_PSFB, 8) + _II.pack(self.sender_ssrc, self.media_ssrc)


@dataclass
class RtcpFir:
    """Full Intra Request (PSFB FMT 4): (ssrc, command sequence number) entries."""

    sender_ssrc: int
    media_ssrc: int = 0
    entries: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def parse(cls, sender: int, media: int, fci: Buffer) -> RtcpFir:
        """Parse the FCI after the sender/media SSRCs."""
        if len(fci) % 8:
            raise ValueError(f"RTCP FIR FCI of {len(fci)} bytes is not a multiple of 8")
        entries = [(_U32.unpack_from(fci, i)[0], fci[i + 4]) for i in range(0, len(fci), 8)]
        return cls(sender, media, entries)

    def __bytes__(self) -> bytes:
        body = _II.pack(self.sender_ssrc, self.media_ssrc) + b"".join(
            _U32.pack(s) + bytes((n & 0xFF, 0, 0, 0)) for s, n in self.entries
        )
        return _header(PSFB_FIR, RTCP_PSFB, len(body)) + body


@dataclass
class RtcpRemb:
    """Receiver Estimated Maximum Bitrate (PSFB FMT 15, "REMB")."""

    sender_ssrc: int
    bitrate: int
    ssrcs: list[int] = field(default_factory=list)
    media_ssrc: int = 0

    @classmethod
    def parse(cls, sender: int, media: int, fci: Buffer) -> RtcpRemb:
        """Parse the FCI after the sender/media SSRCs."""
        if len(fci) < 8 or bytes(fci[:4]) != b"REMB":
            raise ValueError("RTCP AFB is not a REMB message")
        num = fci[4]
        if 8 + 4 * num > len(fci):
            raise ValueError(f"RTCP REMB too short for {num} SSRCs")
        exp = fci[5] >> 2
        mantissa = ((fci[5] & 0x03) << 16) | (fci[6] << 8) | fci[7]
        ssrcs = list(struct.unpack_from(f"!{num}I", fci, 8))
        return cls(sender, mantissa << exp, ssrcs, media)

    def __bytes__(self) -> bytes:
        if self.bitrate < 0:
            raise ValueError("REMB bitrate must not be negative")
        exp, mantissa = 0, self.bitrate
        while mantissa >= 1 << 18:
            mantissa >>= 1
            exp += 1
        if exp > 63 or len(self.ssrcs) > 255:
            raise ValueError("REMB bitrate or SSRC count out of range")
        body = (
            _II.pack(self.sender_ssrc, self.media_ssrc)
            + b"REMB"
            + bytes(
                (
                    len(self.ssrcs),
                    (exp << 2) | (mantissa >> 16),
                    (mantissa >> 8) & 0xFF,
                    mantissa & 0xFF,
                )
            )
            + b"".join(_U32.pack(s) for s in self.ssrcs)
        )
        return _header(PSFB_AFB, RTCP_PSFB, len(body)) + body


@dataclass
class RtcpTwcc:
    """Transport-wide CC feedback (RTPFB FMT 15), parse-only; re-serialises its raw bytes."""

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    status_count: int
    reference_time: int  # units of 64 ms
    fb_packet_count: int
    received: list[tuple[int, int]]  # (transport seq, receive delta in µs)
    raw: bytes = b""

    @classmethod
    def parse(cls, sender: int, media: int, fci: Buffer, raw: bytes) -> RtcpTwcc:
        """Decode packet status chunks and receive deltas."""
        n = len(fci)
        if n < 8:
            raise ValueError("RTCP TWCC FCI is shorter than 8 bytes")
        base, count = _HH.unpack_from(fci, 0)
        ref = (fci[4] << 16) | (fci[5] << 8) | fci[6]
        fb_count = fci[7]
        i = 8
        symbols: list[int] = []  # status per received packet, interleaved with seq
        seqs: list[int] = []
        seq = base
        remaining = count
        delta_bytes = 0
        while remaining > 0:
            if i + 2 > n:
                raise ValueError("RTCP TWCC packet status chunks are truncated")
            chunk = (fci[i] << 8) | fci[i + 1]
            i += 2
            if not chunk & 0x8000:  # run length
                status = (chunk >> 13) & 0x03
                run = min(chunk & 0x1FFF, remaining)
                if status in (1, 2):
                    delta_bytes += run * status
                    if i + delta_bytes > n:
                        raise ValueError("RTCP TWCC run length exceeds the receive deltas")
                    for k in range(run):
                        seqs.append((seq + k) & 0xFFFF)
                        symbols.append(status)
                seq += run
                remaining -= run
            else:
                two_bit = bool(chunk & 0x4000)
                width, total = (2, 7) if two_bit else (1, 14)
                for k in range(min(total, remaining)):
                    shift = (total - 1 - k) * width
                    status = (chunk >> shift) & (0x03 if two_bit else 0x01)
                    if status in (1, 2):
                        seqs.append(seq & 0xFFFF)
                        symbols.append(status)
                        delta_bytes += status
                    seq += 1
                    remaining -= 1
        received: list[tuple[int, int]] = []
        for s, status in zip(seqs, symbols, strict=True):
            if status == 1:
                if i + 1 > n:
                    raise ValueError("RTCP TWCC receive deltas are truncated")
                delta = fci[i]
                i += 1
            else:
                if i + 2 > n:
                    raise ValueError("RTCP TWCC receive deltas are truncated")
                delta = int.from_bytes(fci[i : i + 2], "big", signed=True)
                i += 2
            received.append((s, delta * 250))
        return cls(sender, media, base, count, ref, fb_count, received, raw)

    def __bytes__(self) -> bytes:
        if not self.raw:
            raise ValueError("RtcpTwcc can only re-serialise a parsed packet")
        return self.raw

    @staticmethod
    def build(sender: int, media: int, base: int, reference_time: int, fb_count: int,
              deltas: list[int | None]) -> bytes:
        """Feedback for packets `base`, `base`+1, ...: each receive delta in 250 µs steps
        (the first from `reference_time` x 64 ms, then from the previous arrival), None for
        a packet not received.

        Status chunks as libwebrtc writes them: a run-length chunk for 14 or more equal
        symbols (up to 8191), else a one-bit status vector (14 symbols) when none of them
        is a large delta, else a two-bit vector (7). Deltas in 0..255 take one byte, others
        (negative or over 63.75 ms) two, signed.
        """
        n = len(deltas)
        if not n or n > 0xFFFF:
            raise ValueError("TWCC feedback covers 1..65535 packets")
        symbols = [0 if d is None else 1 if 0 <= d <= 255 else 2 for d in deltas]
        body = bytearray(_HH.pack(base & 0xFFFF, n))
        body += bytes(((reference_time >> 16) & 0xFF, (reference_time >> 8) & 0xFF,
                       reference_time & 0xFF, fb_count & 0xFF))
        i = 0
        while i < n:
            sym = symbols[i]
            run = 1
            while i + run < n and run < 0x1FFF and symbols[i + run] == sym:
                run += 1
            if run >= 14:
                body += ((sym << 13) | run).to_bytes(2, "big")
                i += run
                continue
            group = symbols[i:i + 14]
            if 2 not in group:
                chunk = 0x8000
                for k, s in enumerate(group):
                    chunk |= s << (13 - k)
                i += 14
            else:
                chunk = 0xC000
                for k, s in enumerate(group[:7]):
                    chunk |= s << (2 * (6 - k))
                i += 7
            body += chunk.to_bytes(2, "big")
        for d, sym in zip(deltas, symbols, strict=True):
            if sym == 1:
                body.append(d)  # type: ignore[arg-type]
            elif sym == 2:
                if not -32768 <= d <= 32767:  # type: ignore[operator]
                    raise ValueError(f"TWCC receive delta {d} does not fit 16 bits")
                body += int(d).to_bytes(2, "big", signed=True)  # type: ignore[arg-type]
        body += b"\x00" * (-(len(body) + 8) % 4)
        fci = _U32.pack(sender) + _U32.pack(media) + bytes(body)
        return _header(RTPFB_TWCC, RTCP_RTPFB, len(fci)) + fci


@dataclass
class RtcpUnknown:
    """Any other RTCP packet, kept verbatim (header included)."""

    packet_type: int
    count: int
    raw: bytes

    def __bytes__(self) -> bytes:
        return self.raw


RtcpPacket = (
    RtcpSenderReport
    | RtcpReceiverReport
    | RtcpSdes
    | RtcpBye
    | RtcpNack
    | RtcpPli
    | RtcpFir
    | RtcpRemb
    | RtcpTwcc
    | RtcpUnknown
)


def _parse_feedback(pt: int, fmt: int, body: Buffer, raw: bytes) -> RtcpPacket:
    if len(body) < 8:
        raise ValueError(f"RTCP feedback PT {pt} FMT {fmt} is shorter than 8 bytes")
    sender, media = _II.unpack_from(body, 0)
    fci = body[8:]
    if pt == RTCP_RTPFB:
        if fmt == RTPFB_NACK:
            return RtcpNack.parse(sender, media, fci)
        if fmt == RTPFB_TWCC:
            return RtcpTwcc.parse(sender, media, fci, raw)
    else:
        if fmt == PSFB_PLI:
            return RtcpPli(sender, media)
        if fmt == PSFB_FIR:
            return RtcpFir.parse(sender, media, fci)
        if fmt == PSFB_AFB and bytes(fci[:4]) == b"REMB":
            return RtcpRemb.parse(sender, media, fci)
    return RtcpUnknown(pt, fmt, raw)


def parse_compound(data: Buffer) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram; raises ValueError and nothing else on bad input."""
    n = len(data)
    if n < 4:
        raise ValueError(f"RTCP packet length {n} is shorter than a header")
    if n > MAX_COMPOUND:
        raise ValueError(f"RTCP packet length {n} exceeds {MAX_COMPOUND}")
    view = memoryview(data)
    out: list[RtcpPacket] = []
    pos = 0
    try:
        while pos < n:
            if pos + 4 > n:
                raise ValueError(f"RTCP header truncated at offset {pos}")
            b0, pt, words = _HDR.unpack_from(data, pos)
            if b0 >> 6 != 2:
                raise ValueError(f"RTCP version {b0 >> 6} is not 2 at offset {pos}")
            end = pos + 4 + 4 * words
            if end > n:
                raise ValueError(f"RTCP packet at offset {pos} claims {4 * words} bytes, past end")
            raw = bytes(view[pos:end])
            body_end = end
            if b0 & 0x20:
                pad = data[end - 1]
                if pad == 0 or pos + 4 + pad > end:
                    raise ValueError(f"RTCP padding {pad} invalid at offset {pos}")
                body_end = end - pad
            body = view[pos + 4 : body_end]
            count = b0 & 0x1F
            pkt: RtcpPacket
            if pt == RTCP_SR:
                pkt = RtcpSenderReport.parse(count, body)
            elif pt == RTCP_RR:
                pkt = RtcpReceiverReport.parse(count, body)
            elif pt == RTCP_SDES:
                pkt = RtcpSdes.parse(count, body)
            elif pt == RTCP_BYE:
                pkt = RtcpBye.parse(count, body)
            elif pt in (RTCP_RTPFB, RTCP_PSFB):
                pkt = _parse_feedback(pt, count, body, raw)
            else:
                pkt = RtcpUnknown(pt, count, raw)
            out.append(pkt)
            pos = end
    except (struct.error, IndexError, OverflowError) as exc:  # defensive: never leak these
        raise ValueError(f"malformed RTCP packet: {exc}") from None
    return out


def build_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialise packets back to back into one compound datagram."""
    return b"".join(bytes(p) for p in packets)


# --------------------------------------------------------------------------- fast builders


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """12-byte PLI."""
    return bytes(RtcpPli(sender_ssrc, media_ssrc))


def build_nack(sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    """Generic NACK for the given sequence numbers."""
    return bytes(RtcpNack.from_lost(sender_ssrc, media_ssrc, lost))


def build_sdes_cname(ssrc: int, cname: str) -> bytes:
    """SDES packet with one CNAME item."""
    return bytes(RtcpSdes([RtcpSdesChunk(ssrc, [(SDES_CNAME, cname.encode()[:255])])]))

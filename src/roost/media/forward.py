"""The forwarder: one `Forwarder` per subscription munges publisher packets onto its own stream.

Per publisher packet the up-track calls `inspect()` once (header, keyframe, VP8 descriptor);
per subscriber `Forwarder.forward()` returns the plaintext packet to protect and send, or
None. Outgoing sequence numbers and timestamps stay continuous across pauses, mutes and
simulcast layer switches (protocol notes §9.2); filtered packets are compacted away.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Iterable

from roost.media.extensions import ExtensionRewriter
from roost.media.nack import AUDIO_CACHE_SIZE, VIDEO_CACHE_SIZE, RetransmitCache
from roost.media.rtcp import RtcpReportBlock, RtcpSenderReport, build_sdes_cname, ntp_middle32
from roost.media.rtp import (
    Buffer,
    RtpHeader,
    Vp8Descriptor,
    h264_is_keyframe,
    parse_header,
    parse_vp8,
    red_primary,
    rewrite_vp8,
    wrap_rtx,
)

PADDING_SIZE = 240  # padding bytes in one probe packet (the most RTP padding is 255)
_PADDING_HEAD = struct.Struct("!BBHII")  # V=2 P=1 X=1, PT, seq, timestamp, SSRC

CODEC_OTHER = 0
CODEC_OPUS = 1
CODEC_VP8 = 2
CODEC_H264 = 3
CODEC_RED = 4
_CODECS = {"opus": CODEC_OPUS, "vp8": CODEC_VP8, "h264": CODEC_H264, "red": CODEC_RED}

MAX_TEMPORAL = 3
TS_TOLERANCE = 0.5  # seconds a candidate timestamp may differ from the wall-clock estimate
DROP_MEMORY = 128  # dropped sequence numbers remembered for out-of-order packets

_FIXED = struct.Struct("!BBHII")


def codec_of(mime: str) -> int:
    """CODEC_* constant for a mime type such as "video/VP8" or "audio/opus"."""
    return _CODECS.get(mime.rsplit("/", 1)[-1].lower(), CODEC_OTHER)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


class Munge:
    """Offsets in force for a run of packets; replaced (never mutated) when they change."""

    __slots__ = ("kidx_off", "pid_off", "tl0_off", "ts_off", "vp8")

    def __init__(self, ts_off: int, pid_off: int, tl0_off: int, kidx_off: int, vp8: bool) -> None:
        self.ts_off = ts_off  # out_ts = in_ts + ts_off (mod 2^32)
        self.pid_off = pid_off  # VP8 picture id offset (mod 2^7 or 2^15)
        self.tl0_off = tl0_off
        self.kidx_off = kidx_off
        self.vp8 = vp8  # whether the VP8 descriptor needs rewriting at all


class PacketInfo(RtpHeader):
    """A parsed publisher packet plus what the forwarder needs to know about it."""

    __slots__ = ("keyframe", "layer", "padding_only", "pkt", "start", "tid", "vp8", "y")

    def __init__(self) -> None:
        super().__init__()
        self.pkt: Buffer = b""  # the packet this describes (kept for retransmissions)
        self.layer = 0
        self.keyframe = False
        self.padding_only = False
        self.vp8: Vp8Descriptor | None = None
        self.tid = 0  # temporal layer (0 when unknown)
        self.start = True  # first packet of a picture (VP8 S bit, partition 0)
        self.y = False  # VP8 layer sync


def inspect(pkt: Buffer, codec: int, layer: int = 0) -> PacketInfo:
    """Parse a (decrypted) publisher packet once; ValueError when it is malformed."""
    info = PacketInfo()
    parse_header(pkt, info)
    info.pkt = pkt
    info.layer = layer
    off, end = info.payload_offset, info.payload_end
    if off == end:
        info.padding_only = True
        return info
    if codec == CODEC_VP8:
        d = parse_vp8(pkt, off, end)
        info.vp8 = d
        info.keyframe = d.keyframe
        info.start = d.start and d.partition_index == 0
        if d.tid > 0:
            info.tid = d.tid
        info.y = d.y
    elif codec == CODEC_H264:
        info.keyframe = h264_is_keyframe(pkt, off, end)
    else:
        info.keyframe = True  # audio (and unknown codecs) can start anywhere
    return info


class SenderReportStore:
    """Latest publisher Sender Report per layer: (NTP 64-bit, RTP timestamp, arrival)."""

    def __init__(self) -> None:
        self._sr: dict[int, tuple[int, int, float]] = {}

    def update(self, layer: int, ntp: int, rtp: int, arrival: float) -> None:
        """Record an SR received on `layer` at monotonic time `arrival`."""
        self._sr[layer] = (ntp, rtp, arrival)

    def get(self, layer: int) -> tuple[int, int, float] | None:
        """The last SR of `layer`, if any."""
        return self._sr.get(layer)


class Forwarder:
    """One subscriber's view of a published track: its own SSRC, seq/ts space and cache."""

    # slots: the fan-out touches every down-track per packet; a compact object keeps
    # hundreds of them closer to the CPU caches than instance dicts would.
    __slots__ = (
        "_cur_layer",
        "_cur_ssrc",
        "_drop_horizon",
        "_drops",
        "_head",
        "_in_hi",
        "_in_hi_ext",
        "_in_start_ext",
        "_last_kf_request",
        "_last_kidx",
        "_last_layer",
        "_last_out_at",
        "_last_out_ts",
        "_last_pid",
        "_last_pid_bits",
        "_last_src_ssrc",
        "_last_tl0",
        "_m",
        "_munges",
        "_out_hi_ext",
        "_pending_temporal",
        "_rtx_seq",
        "_sn_off",
        "_sr_sent",
        "_started",
        "_tail",
        "_want_keyframe",
        "cache",
        "clock_rate",
        "clocks",
        "cname",
        "codec",
        "max_temporal",
        "muted",
        "octets_sent",
        "packets_sent",
        "payload_type",
        "rewriter",
        "rtt",
        "rtx_payload_type",
        "rtx_ssrc",
        "ssrc",
        "strip_red",
        "target_layer",
        "video",
    )

    def __init__(
        self,
        ssrc: int,
        payload_type: int,
        clock_rate: int,
        codec: int,
        *,
        video: bool | None = None,
        rewriter: ExtensionRewriter | None = None,
        mid: str | None = None,
        mid_ext_id: int = 0,
        transport_cc_ext_id: int = 0,
        rtx_ssrc: int = 0,
        rtx_payload_type: int = -1,
        strip_red: bool = False,
        clocks: SenderReportStore | None = None,
        cname: str = "roost",
        cache_size: int | None = None,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.codec = codec
        self.video = codec in (CODEC_VP8, CODEC_H264) if video is None else video
        self.rewriter = rewriter
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self.strip_red = strip_red
        self.clocks = clocks
        self.cname = cname
        size = cache_size or (VIDEO_CACHE_SIZE if self.video else AUDIO_CACHE_SIZE)
        # What was sent under each outgoing sequence number: the shared PacketInfo (which
        # holds the publisher's packet) and the munge epoch, in two rings - no per-packet
        # container, so forwarding creates nothing the cyclic GC must track.
        self.cache: RetransmitCache[PacketInfo] = RetransmitCache(size)
        self._munges: list[Munge | None] = [None] * size
        self._tail = self._head = b""
        if (mid and mid_ext_id) or transport_cc_ext_id:
            if rewriter is None:
                self.rewriter = rewriter = ExtensionRewriter({})
            if mid and mid_ext_id:
                self._tail = rewriter.element(mid_ext_id, mid.encode())
            if transport_cc_ext_id:  # stamped by the transport's TransportSequencer
                self._head = rewriter.element(transport_cc_ext_id, b"\x00\x00")
        # selection
        self.target_layer: int | None = 0
        self.max_temporal = MAX_TEMPORAL
        self._pending_temporal = -1
        self.muted = False
        self._want_keyframe = False
        self._last_kf_request = -math.inf
        # munger state
        self._started = False
        self._cur_layer: int | None = None
        self._cur_ssrc = -1
        self._last_layer: int | None = None
        self._last_src_ssrc = -1
        self._sn_off = 0  # out_ext = in_ext + _sn_off
        self._m = Munge(0, 0, 0, 0, False)  # timestamp / VP8 offsets of the current epoch
        self._in_hi = 0
        self._in_hi_ext = 0
        self._in_start_ext = 0
        self._out_hi_ext = -1
        self._last_out_ts = 0
        self._last_out_at = 0.0
        self._drops: deque[int] = deque()
        self._drop_horizon = -1
        # VP8 munger state
        self._last_pid = -1
        self._last_pid_bits = 15
        self._last_tl0 = -1
        self._last_kidx = -1
        # RTCP state
        self.packets_sent = 0
        self.octets_sent = 0
        self.rtt: float | None = None
        self._rtx_seq = 0
        self._sr_sent: dict[int, float] = {}

    # ------------------------------------------------------------------ control

    def set_target(self, layer: int | None, max_temporal: int = MAX_TEMPORAL) -> None:
        """Choose the spatial layer to forward (None pauses) and the highest temporal layer."""
        if layer is None:
            self._cur_layer = None
        elif layer != self._cur_layer:
            self._want_keyframe = self.video
        self.target_layer = layer
        if max_temporal > self.max_temporal and self._started:
            self._pending_temporal = max_temporal  # takes effect at a switching point
        else:
            self.max_temporal = max_temporal
            self._pending_temporal = -1

    def set_muted(self, muted: bool) -> None:
        """Stop (or resume) forwarding; resuming continues the outgoing seq/ts space."""
        self.muted = muted
        if muted:
            self._cur_layer = None
        elif self.target_layer is not None:
            self._want_keyframe = self.video

    @property
    def current_layer(self) -> int | None:
        """The layer being forwarded right now, if any."""
        return self._cur_layer

    def keyframe_request(self, now: float) -> int | None:
        """Layer to send a PLI for when this track waits for a keyframe (self-throttled)."""
        if not self._want_keyframe or self.muted or self.target_layer is None:
            return None
        interval = 0.2 if self.rtt is None else max(0.2, min(2.0 * self.rtt, 1.0))
        if now - self._last_kf_request < interval:
            return None
        self._last_kf_request = now
        return self.target_layer

    def source_sequence(self, out_seq: int) -> tuple[int, int] | None:
        """(layer, publisher sequence number) an outgoing sequence number stands for.

        Used to pass a subscriber NACK the cache cannot answer on to the publisher. Exact
        for the current source while nothing was filtered; None when unknown.
        """
        if not self._started or self._cur_layer is None or self._out_hi_ext < 0:
            return None
        out_ext = self._out_hi_ext - ((self._out_hi_ext - out_seq) & 0xFFFF)
        in_ext = out_ext - self._sn_off
        if in_ext < self._in_start_ext:
            return None
        return self._cur_layer, in_ext & 0xFFFF

    def on_pli(self) -> int | None:
        """A subscriber PLI/FIR: the layer to ask the publisher for a keyframe, if forwarding."""
        if self._cur_layer is not None:
            return self._cur_layer
        return self.target_layer if not self.muted else None

    # ------------------------------------------------------------------ hot path

    def forward(self, pkt: Buffer, info: PacketInfo, now: float) -> bytes | bytearray | None:
        """The rewritten plaintext packet for this subscriber, or None to send nothing."""
        if info.layer != self._cur_layer or info.ssrc != self._cur_ssrc:
            if self.muted or info.layer != self.target_layer:
                return None
            if self.video and not info.keyframe:
                self._want_keyframe = True
                return None
            self._switch(info, now)

        seq = info.sequence_number
        diff = (seq - self._in_hi) & 0xFFFF
        drop = info.padding_only or info.tid > self.max_temporal
        if diff == 0:
            return None  # duplicate of the newest packet
        if diff < 0x8000:
            in_ext = self._in_hi_ext + diff
            self._in_hi = seq
            self._in_hi_ext = in_ext
            if self._pending_temporal >= 0 and info.start and (info.tid == 0 or info.y):
                self.max_temporal = self._pending_temporal
                self._pending_temporal = -1
                drop = info.padding_only or info.tid > self.max_temporal
            if drop:
                self._drop(in_ext, info)
                return None
            out_ext = in_ext + self._sn_off
            newest = True
        else:
            in_ext = self._in_hi_ext - (0x10000 - diff)
            if in_ext < self._in_start_ext or in_ext <= self._drop_horizon or drop:
                return None
            later = 0
            for d_ext in reversed(self._drops):
                if d_ext < in_ext:
                    break
                if d_ext == in_ext:
                    return None
                later += 1
            out_ext = in_ext + self._sn_off + later
            newest = False

        m = self._m
        try:
            out = self._render(pkt, info, out_ext & 0xFFFF, m, now, newest)
        except ValueError:  # a malformed RED payload
            if newest:
                self._drop(in_ext, info)
            return None
        if newest:
            self._out_hi_ext = out_ext
            self._last_out_ts = (info.timestamp + m.ts_off) & 0xFFFFFFFF
            self._last_out_at = now
        if info.pkt is not pkt:
            info.pkt = pkt
        out_seq = out_ext & 0xFFFF
        cache = self.cache  # RetransmitCache.store, inlined
        i = out_seq % cache.size
        cache._items[i] = info
        cache._seqs[i] = out_seq
        cache._count[i] = 0
        self._munges[i] = m
        self.packets_sent += 1
        self.octets_sent += info.payload_end - info.payload_offset
        return out

    def _render(
        self, pkt: Buffer, info: PacketInfo, out_seq: int, m: Munge, now: float, note: bool
    ) -> bytes | bytearray:
        """Build the outgoing plaintext packet for `info` under munge epoch `m`."""
        off, end = info.payload_offset, info.payload_end
        if self.strip_red:
            _, off, end = red_primary(pkt, off, end)
        rw = self.rewriter
        ext = rw.packet_block(pkt, info, now, self._tail, self._head) if rw is not None else b""
        b1 = (0x80 | self.payload_type) if info.marker else self.payload_type
        out_ts = (info.timestamp + m.ts_off) & 0xFFFFFFFF
        head = _FIXED.pack(0x90 if ext else 0x80, b1, out_seq, out_ts, self.ssrc)
        d = info.vp8
        # with a transport-cc element the session stamps it in place: build a bytearray
        join = bytearray().join if self._head else b"".join
        if d is None:
            return join((head, ext, memoryview(pkt)[off:end]))
        if not m.vp8:
            if note:
                self._note_vp8(d.picture_id, d.picture_id_bits, d.tl0picidx, d.keyidx)
            return join((head, ext, memoryview(pkt)[off:end]))
        buf = bytearray(head)
        buf += ext
        poff = len(buf)
        buf += memoryview(pkt)[off:end]
        pid = d.picture_id
        if d.picture_id_bits:
            pid = (pid + m.pid_off) & (0x7FFF if d.picture_id_bits == 15 else 0x7F)
        tl0 = (d.tl0picidx + m.tl0_off) & 0xFF if d.tl0picidx >= 0 else -1
        kidx = (d.keyidx + m.kidx_off) & 0x1F if d.keyidx >= 0 else -1
        rewrite_vp8(buf, poff, d, pid, tl0, kidx)
        if note:
            self._note_vp8(pid, d.picture_id_bits, tl0, kidx)
        return buf

    def _drop(self, in_ext: int, info: PacketInfo) -> None:
        """Compact a filtered packet out of the outgoing sequence (and picture id) space."""
        self._sn_off -= 1
        drops = self._drops
        drops.append(in_ext)
        if len(drops) > DROP_MEMORY:
            self._drop_horizon = drops.popleft()
        d = info.vp8
        if d is not None and info.start and d.picture_id >= 0 and not info.padding_only:
            m = self._m
            self._m = Munge(m.ts_off, m.pid_off - 1, m.tl0_off, m.kidx_off, True)

    def _note_vp8(self, pid: int, bits: int, tl0: int, kidx: int) -> None:
        if bits:
            self._last_pid = pid
            self._last_pid_bits = bits
        if tl0 >= 0:
            self._last_tl0 = tl0
        if kidx >= 0:
            self._last_kidx = kidx

    def _switch(self, info: PacketInfo, now: float) -> None:
        """Start forwarding a new source so its first packet follows the last one sent."""
        seq, ts = info.sequence_number, info.timestamp
        m = self._m
        ts_off = m.ts_off
        if not self._started:
            self._started = True
            self._sn_off = 0
        else:
            self._sn_off = self._out_hi_ext + 1 - seq
            ts_off = (self._pick_ts(info, now) - ts) & 0xFFFFFFFF
        self._in_hi = (seq - 1) & 0xFFFF  # the first packet is then simply "the next one"
        self._in_hi_ext = seq - 1
        self._in_start_ext = seq
        self._drops.clear()
        self._drop_horizon = -1
        self._cur_layer = self._last_layer = info.layer
        self._cur_ssrc = self._last_src_ssrc = info.ssrc
        self._want_keyframe = False
        if self._pending_temporal >= 0:
            self.max_temporal = self._pending_temporal
            self._pending_temporal = -1
        pid_off, tl0_off, kidx_off = m.pid_off, m.tl0_off, m.kidx_off
        d = info.vp8
        if d is not None:
            if self._last_pid >= 0 and d.picture_id >= 0:
                mod = 0x8000 if d.picture_id_bits == 15 else 0x80
                pid_off = (self._last_pid + 1 - d.picture_id) % mod
            if self._last_tl0 >= 0 and d.tl0picidx >= 0:
                tl0_off = (self._last_tl0 + 1 - d.tl0picidx) & 0xFF
            if self._last_kidx >= 0 and d.keyidx >= 0:
                kidx_off = (self._last_kidx + 1 - d.keyidx) & 0x1F
        vp8 = bool(pid_off or tl0_off or kidx_off)
        self._m = Munge(ts_off, pid_off, tl0_off, kidx_off, vp8)

    def _pick_ts(self, info: PacketInfo, now: float) -> int:
        """Outgoing timestamp for the first packet after a switch or resume."""
        rate = self.clock_rate
        elapsed = max(0.0, now - self._last_out_at)
        expected = (self._last_out_ts + max(1, int(elapsed * rate))) & 0xFFFFFFFF
        cand = -1
        if info.ssrc == self._last_src_ssrc:
            cand = (info.timestamp + self._m.ts_off) & 0xFFFFFFFF
        elif self.clocks is not None and self._last_layer is not None:
            old = self.clocks.get(self._last_layer)
            new = self.clocks.get(info.layer)
            if old is not None and new is not None:
                ntp_delta = (new[0] - old[0]) / 4294967296.0
                since_sr = _s32(info.timestamp - new[1])
                cand = (old[1] + self._m.ts_off + round(ntp_delta * rate) + since_sr) & 0xFFFFFFFF
        if cand >= 0 and abs(_s32(cand - expected)) <= TS_TOLERANCE * rate:
            if _s32(cand - self._last_out_ts) <= 0:
                return (self._last_out_ts + 1) & 0xFFFFFFFF
            return cand
        return expected

    # ------------------------------------------------------------------ RTCP

    def on_nack(self, seqs: Iterable[int], now: float,
                max_bytes: float = math.inf) -> list[bytes | bytearray]:
        """Plaintext retransmissions answering a subscriber NACK (RTX-wrapped if negotiated),
        at most `max_bytes` of them.

        Packets of a higher layer than the one forwarded now are not resent: they precede
        a downgrade, which started over at a keyframe, and a link that just forced the
        downgrade is the last place for them."""
        out: list[bytes | bytearray] = []
        wanted = self._answerable(seqs, self._cur_layer, max_bytes)
        for seq, info in self.cache.answer(wanted, now, self.rtt):
            m = self._munges[seq % self.cache.size]
            if m is None:
                continue
            try:
                p = self._render(info.pkt, info, seq, m, now, False)
            except ValueError:
                continue
            if self.rtx_ssrc:
                self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
                h = parse_header(p)
                p = wrap_rtx(p, h, self.rtx_ssrc, self._rtx_seq, self.rtx_payload_type)
            out.append(p)
        return out

    def padding(self, count: int, size: int = PADDING_SIZE) -> list[bytearray]:
        """`count` padding-only RTX packets of `size` padding bytes each, for a bandwidth
        probe: on the RTX SSRC, with the transport-cc element reserved (the transport stamps
        it), the last forwarded timestamp, no payload. [] unless both RTX and transport-cc
        were negotiated and something was forwarded (the probe could not be measured)."""
        rw = self.rewriter
        if not (self.rtx_ssrc and self._head and self._started) or rw is None:
            return []
        size = max(1, min(255, size))
        block = rw.block(self._head)
        pad = bytes(size - 1) + bytes((size,))
        out = []
        for _ in range(count):
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            head = _PADDING_HEAD.pack(0xB0, self.rtx_payload_type & 0x7F, self._rtx_seq,
                                      self._last_out_ts, self.rtx_ssrc)
            out.append(bytearray().join((head, block, pad)))
        return out

    def _answerable(self, seqs: Iterable[int], current: int | None,
                    max_bytes: float) -> list[int]:
        """`seqs` less those of a layer above `current` (see `on_nack`), up to `max_bytes`
        of cached packets (before the cache counts them as retransmitted)."""
        cache = self.cache
        out = []
        for seq in seqs:
            i = seq % cache.size
            item = cache._items[i]
            if cache._seqs[i] != seq or item is None:
                continue
            if self.video and current is not None and item.layer > current:
                continue
            max_bytes -= len(item.pkt)
            if max_bytes < 0:
                break
            out.append(seq)
        return out

    def on_receiver_report(self, block: RtcpReportBlock, now: float) -> float | None:
        """Update the RTT from a report block about this track's SSRC; returns it (seconds)."""
        sent = self._sr_sent.get(block.lsr)
        if block.lsr == 0 or sent is None:
            return None
        rtt = max(0.0, now - sent - block.dlsr / 65536.0)
        self.rtt = rtt if self.rtt is None else 0.875 * self.rtt + 0.125 * rtt
        return rtt

    def sender_report(self, now: float) -> bytes | None:
        """SR + SDES compound for this down-track, timed through the publisher's SR mapping."""
        if not self._started or self.clocks is None or self._last_layer is None:
            return None
        sr = self.clocks.get(self._last_layer)
        if sr is None:
            return None
        ntp, rtp, arrival = sr
        elapsed = now - arrival
        ntp_out = (ntp + int(elapsed * 4294967296.0)) & 0xFFFFFFFFFFFFFFFF
        rtp_out = (rtp + int(elapsed * self.clock_rate) + self._m.ts_off) & 0xFFFFFFFF
        if len(self._sr_sent) >= 16:
            self._sr_sent.pop(next(iter(self._sr_sent)))
        self._sr_sent[ntp_middle32(ntp_out)] = now
        report = RtcpSenderReport(self.ssrc, ntp_out, rtp_out, self.packets_sent, self.octets_sent)
        return bytes(report) + build_sdes_cname(self.ssrc, self.cname)

"""Forwarder munging: continuity across mute, resume, source and layer switches; filtering."""

from __future__ import annotations

import itertools

from tests.engine.packets import rtp as build_rtp
from tests.engine.packets import vp8_payload

from roost.media import rtp
from roost.media.forward import (
    CODEC_OPUS,
    CODEC_VP8,
    ExtensionRewriter,
    Forwarder,
    PacketInfo,
    SenderReportStore,
    codec_of,
    inspect,
)
from roost.media.rtcp import (
    RtcpReportBlock,
    RtcpSdes,
    RtcpSenderReport,
    ntp_middle32,
    parse_compound,
)

OUT_SSRC = 0xA0A0A0A0


def out_fields(pkt: bytes | bytearray) -> tuple[int, int, int, int]:
    h = rtp.parse_header(pkt)
    return h.sequence_number, h.timestamp, h.ssrc, h.payload_type


class AudioSource:
    """A 20 ms Opus publisher stream."""

    def __init__(self, ssrc: int = 0x1111, seq: int = 500, ts: int = 10_000) -> None:
        self.ssrc, self.seq, self.ts = ssrc, seq, ts

    def next(self, **kw: object) -> tuple[bytes, PacketInfo]:
        raw = build_rtp(self.seq, self.ts, ssrc=self.ssrc, **kw)  # type: ignore[arg-type]
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 960) & 0xFFFFFFFF
        return raw, inspect(raw, CODEC_OPUS)


class Vp8Layer:
    """One simulcast layer: 30 fps, 2 packets per frame, optional temporal layers."""

    def __init__(self, layer: int, ssrc: int, seq: int, ts: int, pid: int, tl0: int) -> None:
        self.layer, self.ssrc, self.seq, self.ts = layer, ssrc, seq, ts
        self.pid, self.tl0, self.frame = pid, tl0, 0

    def frame_packets(self, keyframe: bool = False, tid: int = 0) -> list[tuple[bytes, PacketInfo]]:
        out = []
        for part in range(2):
            payload = vp8_payload(
                self.pid, tl0=self.tl0, tid=tid, keyframe=keyframe and part == 0, start=part == 0
            )
            raw = build_rtp(
                self.seq, self.ts, ssrc=self.ssrc, pt=96, payload=payload, marker=part == 1
            )
            out.append((raw, inspect(raw, CODEC_VP8, self.layer)))
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 3000) & 0xFFFFFFFF
        self.pid = (self.pid + 1) & 0x7FFF
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        return out


def send(dt: Forwarder, items: list[tuple[bytes, PacketInfo]], now: float) -> list[bytes]:
    return [bytes(o) for raw, info in items if (o := dt.forward(raw, info, now)) is not None]


def test_audio_is_forwarded_with_own_ssrc_and_payload_type() -> None:
    dt = Forwarder(OUT_SSRC, 109, 48000, CODEC_OPUS)
    src = AudioSource()
    raw, info = src.next(marker=True)
    out = dt.forward(raw, info, 0.0)
    assert out is not None
    h = rtp.parse_header(out)
    assert (h.sequence_number, h.timestamp, h.ssrc, h.payload_type) == (500, 10_000, OUT_SSRC, 109)
    assert h.marker and bytes(out[h.payload_offset :]) == raw[info.payload_offset :]
    assert dt.packets_sent == 1 and dt.octets_sent == info.payload_size


def test_sequence_wrap_on_input_stays_continuous() -> None:
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    src = AudioSource(seq=65533)
    seqs = [out_fields(dt.forward(*src.next(), 0.0) or b"")[0] for _ in range(6)]
    assert seqs == [65533, 65534, 65535, 0, 1, 2]


def test_mute_and_resume_continue_sequence_and_advance_timestamp_by_wall_clock() -> None:
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    src = AudioSource()
    now = 100.0
    last = b""
    for _ in range(50):
        last = bytes(dt.forward(*src.next(), now) or b"")
        now += 0.02
    last_seq, last_ts, _, _ = out_fields(last)
    dt.set_muted(True)
    for _ in range(100):  # the publisher keeps sending for 2 s; nothing goes out
        assert dt.forward(*src.next(), now) is None
        now += 0.02
    dt.set_muted(False)
    out = dt.forward(*src.next(), now)
    assert out is not None
    seq, ts, _, _ = out_fields(out)
    assert seq == (last_seq + 1) & 0xFFFF
    assert abs((ts - last_ts) - 2.02 * 48000) <= 0.03 * 48000


def test_publisher_restart_with_new_ssrc_is_stitched_on() -> None:
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    first, second = AudioSource(ssrc=1, seq=100, ts=0), AudioSource(ssrc=2, seq=40_000, ts=7)
    now = 0.0
    for _ in range(10):
        dt.forward(*first.next(), now)
        now += 0.02
    now += 0.5
    out = [dt.forward(*second.next(), now + 0.02 * i) for i in range(3)]
    seqs = [out_fields(o or b"")[0] for o in out]
    tss = [out_fields(o or b"")[1] for o in out]
    assert seqs == [110, 111, 112]
    assert abs(tss[0] - (9 * 960 + int(0.52 * 48000))) <= 2
    assert tss[1] - tss[0] == 960


def test_padding_only_packets_are_dropped_and_compacted() -> None:
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    src = AudioSource()
    got = []
    for i in range(10):
        raw, info = src.next(payload=b"" if i % 3 == 1 else b"\xfcdata", padding=4)
        out = dt.forward(raw, info, 0.0)
        if out is not None:
            got.append(out_fields(out)[0])
            h = rtp.parse_header(out)
            assert h.padding == 0
    assert got == list(range(500, 500 + len(got))) and len(got) == 7


def test_out_of_order_packet_after_a_drop_gets_its_own_slot() -> None:
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    src = AudioSource()
    pkts = [src.next(payload=b"" if i == 3 else b"\xfcx") for i in range(8)]
    order = [0, 1, 3, 4, 5, 2, 6, 7]  # 2 arrives late, 3 is padding (dropped)
    out = {}
    for i in order:
        o = dt.forward(*pkts[i], 0.0)
        if o is not None:
            out[i] = out_fields(o)[0]
    assert out == {0: 500, 1: 501, 2: 502, 4: 503, 5: 504, 6: 505, 7: 506}
    assert dt.forward(*pkts[7], 0.0) is None  # a duplicate of the newest is dropped
    assert dt.forward(*pkts[3], 0.0) is None  # so is a repeated dropped packet


def test_late_filtered_packet_cannot_be_compacted_and_is_not_sent() -> None:
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    src = AudioSource()
    pkts = [src.next(payload=b"" if i == 2 else b"\xfcx") for i in range(4)]
    seqs = [out_fields(o)[0] for i in (0, 1, 3, 2) if (o := dt.forward(*pkts[i], 0.0))]
    assert seqs == [500, 501, 503]  # 502 stays a hole; a NACK for it finds nothing
    assert dt.on_nack([502], 1.0) == []


def _simulcast() -> tuple[Forwarder, Vp8Layer, Vp8Layer, SenderReportStore]:
    clocks = SenderReportStore()
    dt = Forwarder(OUT_SSRC, 98, 90000, CODEC_VP8, clocks=clocks)
    low = Vp8Layer(0, 0x10, seq=1000, ts=50_000, pid=300, tl0=10)
    high = Vp8Layer(1, 0x20, seq=30_000, ts=900_000, pid=7000, tl0=200)
    return dt, low, high, clocks


def test_simulcast_switch_waits_for_keyframe_and_keeps_everything_continuous() -> None:
    dt, low, high, _ = _simulcast()
    now = 10.0
    sent: list[bytes] = []
    sent += send(dt, low.frame_packets(keyframe=True), now)
    for _ in range(5):
        now += 1 / 30
        sent += send(dt, low.frame_packets(), now)
        assert send(dt, high.frame_packets(), now) == []  # not the target
    dt.set_target(1)
    assert dt.keyframe_request(now) == 1
    assert dt.keyframe_request(now + 0.05) is None  # self-throttled
    now += 1 / 30
    sent += send(dt, low.frame_packets(), now)  # low continues while waiting
    assert send(dt, high.frame_packets(), now) == []  # high delta frame: still waiting
    now += 1 / 30
    sent += send(dt, low.frame_packets(), now)
    switched = send(dt, high.frame_packets(keyframe=True), now + 0.001)
    assert len(switched) == 2 and dt.current_layer == 1
    assert send(dt, low.frame_packets(), now) == []  # the old layer stops
    now += 1 / 30
    after = send(dt, high.frame_packets(), now)
    last_low = sent[-1]
    seqs = [out_fields(p)[0] for p in [last_low, *switched, *after]]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    last_ts, first_ts = out_fields(last_low)[1], out_fields(switched[0])[1]
    assert 0 < first_ts - last_ts <= 3000 + 200  # one frame of wall clock
    assert out_fields(after[0])[1] - first_ts == 3000
    pids = []
    for p in [last_low, switched[0], after[0]]:
        h = rtp.parse_header(p)
        d = rtp.parse_vp8(p, h.payload_offset, h.payload_end)
        pids.append((d.picture_id, d.tl0picidx))
    assert pids[1] == ((pids[0][0] + 1) & 0x7FFF, (pids[0][1] + 1) & 0xFF)
    assert pids[2] == ((pids[1][0] + 1) & 0x7FFF, (pids[1][1] + 1) & 0xFF)
    hk = rtp.parse_header(switched[0])
    assert rtp.parse_vp8(switched[0], hk.payload_offset, hk.payload_end).keyframe
    # a NACK for packets on both sides of the switch re-renders exactly what was sent
    nacked = [out_fields(last_low)[0], out_fields(after[1])[0]]
    assert [bytes(p) for p in dt.on_nack(nacked, now + 1)] == [last_low, after[1]]


def test_retransmit_cache_shares_the_publishers_packet_between_subscribers() -> None:
    a = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    b = Forwarder(OUT_SSRC + 1, 111, 48000, CODEC_OPUS)
    raw, info = AudioSource().next()
    a.forward(raw, info, 0.0)
    b.forward(raw, info, 0.0)
    item_a, item_b = a.cache.get(500), b.cache.get(500)
    assert item_a is not None and item_b is not None
    assert item_a is item_b and item_a.pkt is raw


def test_simulcast_switch_uses_sender_reports_to_translate_timestamps() -> None:
    dt, low, high, clocks = _simulcast()
    ntp0 = 0xE000_0000_0000_0000
    # both layers sampled the same instant: low ts 50_000 <-> high ts 900_000
    clocks.update(0, ntp0, 50_000, 0.0)
    clocks.update(1, ntp0, 900_000, 0.0)
    now = 10.0
    sent = send(dt, low.frame_packets(keyframe=True), now)
    high.frame_packets()
    for _ in range(9):
        now += 1 / 30
        sent += send(dt, low.frame_packets(), now)
        high.frame_packets()
    dt.set_target(1)
    now += 1 / 30
    low.frame_packets()
    first = send(dt, high.frame_packets(keyframe=True), now + 0.01)  # arrives 10 ms late
    # the high frame was captured with low frame 10 (ts 80_000); low's offset is 0
    assert out_fields(first[0])[1] == 50_000 + 10 * 3000


def test_temporal_layer_filter_compacts_sequence_and_picture_ids() -> None:
    dt = Forwarder(OUT_SSRC, 96, 90000, CODEC_VP8)
    layer = Vp8Layer(0, 0x10, seq=10, ts=0, pid=100, tl0=5)
    dt.set_target(0, max_temporal=0)
    pattern = [0, 2, 1, 2, 0, 2, 1, 2, 0]
    sent = send(dt, layer.frame_packets(keyframe=True), 0.0)
    for tid in pattern[1:]:
        sent += send(dt, layer.frame_packets(tid=tid), 0.0)
    seqs = [out_fields(p)[0] for p in sent]
    assert seqs == list(range(10, 10 + 6))  # 3 TL0 frames x 2 packets, no gaps
    pids = []
    for p in sent[::2]:
        h = rtp.parse_header(p)
        pids.append(rtp.parse_vp8(p, h.payload_offset, h.payload_end).picture_id)
    assert pids == [100, 101, 102]


def test_temporal_upswitch_waits_for_a_sync_point() -> None:
    dt = Forwarder(OUT_SSRC, 96, 90000, CODEC_VP8)
    layer = Vp8Layer(0, 0x10, seq=10, ts=0, pid=100, tl0=5)
    dt.set_target(0, max_temporal=0)
    send(dt, layer.frame_packets(keyframe=True), 0.0)
    dt.set_target(0, max_temporal=2)
    assert send(dt, layer.frame_packets(tid=2), 0.0) == []  # no sync point yet
    assert len(send(dt, layer.frame_packets(tid=0), 0.0)) == 2
    assert len(send(dt, layer.frame_packets(tid=2), 0.0)) == 2


def test_pause_and_resume_video_is_keyframe_gated() -> None:
    dt = Forwarder(OUT_SSRC, 96, 90000, CODEC_VP8)
    layer = Vp8Layer(0, 0x10, seq=10, ts=0, pid=100, tl0=5)
    sent = send(dt, layer.frame_packets(keyframe=True), 0.0)
    dt.set_target(None)
    for i in range(1, 30):  # one second of frames at the source's own pace
        assert send(dt, layer.frame_packets(), i / 30) == []
    assert dt.keyframe_request(1.0) is None
    dt.set_target(0)
    assert send(dt, layer.frame_packets(), 1.0) == []
    assert dt.keyframe_request(1.0) == 0
    resumed = send(dt, layer.frame_packets(keyframe=True), 31 / 30)
    assert out_fields(resumed[0])[0] == out_fields(sent[-1])[0] + 1
    # same source: its own clock is kept (31 frames later), consistent with the wall clock
    assert out_fields(resumed[0])[1] - out_fields(sent[-1])[1] == 31 * 3000


def test_extensions_are_remapped_with_mid_and_abs_send_time() -> None:
    rewriter = ExtensionRewriter({1: 5}, abs_send_time_id=3)
    a = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS, rewriter=rewriter, mid="7", mid_ext_id=9)
    b = Forwarder(OUT_SSRC + 1, 111, 48000, CODEC_OPUS, rewriter=rewriter, mid="12", mid_ext_id=9)
    raw, info = AudioSource().next(ext=[(1, b"\x8a"), (4, b"0"), (10, b"q")])  # level, mid, rid
    outs = [a.forward(raw, info, 1.5), b.forward(raw, info, 1.5)]
    for out, mid in zip(outs, [b"7", b"12"], strict=True):
        assert out is not None
        h = rtp.parse_header(out)
        found = {i: bytes(out[o : o + n]) for i, o, n in rtp.iter_extensions(out, h)}
        assert found == {5: b"\x8a", 3: rtp.abs_send_time(1.5), 9: mid}
        assert bytes(out[h.payload_offset :]) == raw[info.payload_offset :]


def test_red_is_stripped_for_subscribers_without_red() -> None:
    primary = b"\xfcPRIMARY"
    payload = bytes([0x80 | 111, 0x0F, 0x00, 3]) + bytes([111]) + b"old" + primary
    raw = build_rtp(1, 960, pt=63, payload=payload)
    dt = Forwarder(OUT_SSRC, 111, 48000, codec_of("audio/red"), strip_red=True)
    out = dt.forward(raw, inspect(raw, codec_of("audio/red")), 0.0)
    assert out is not None
    h = rtp.parse_header(out)
    assert h.payload_type == 111 and bytes(out[h.payload_offset :]) == primary


def test_nack_is_answered_from_the_cache_with_and_without_rtx() -> None:
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    src = AudioSource()
    sent = [bytes(dt.forward(*src.next(), 0.0) or b"") for _ in range(5)]
    assert [bytes(p) for p in dt.on_nack([501, 503], 1.0)] == [sent[1], sent[3]]
    rtx = Forwarder(OUT_SSRC, 96, 90000, CODEC_VP8, rtx_ssrc=0xBEEF, rtx_payload_type=97)
    layer = Vp8Layer(0, 0x10, seq=10, ts=0, pid=1, tl0=1)
    vsent = send(rtx, layer.frame_packets(keyframe=True), 0.0)
    (re,) = rtx.on_nack([11], 1.0)
    h = rtp.parse_header(re)
    assert (h.ssrc, h.payload_type, h.sequence_number) == (0xBEEF, 97, 1)
    assert rtp.unwrap_rtx(re, h, OUT_SSRC, 96) == vsent[1]


def test_sender_report_translates_the_publishers_mapping() -> None:
    clocks = SenderReportStore()
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS, clocks=clocks, cname="sub-cname")
    assert dt.sender_report(0.0) is None
    src = AudioSource(ts=48_000)
    for i in range(3):
        dt.forward(*src.next(), i * 0.02)
    ntp = 0xE100_0000_8000_0000
    clocks.update(0, ntp, 48_000, 1.0)
    raw = dt.sender_report(1.5)
    assert raw is not None
    sr, sdes = parse_compound(raw)
    assert isinstance(sr, RtcpSenderReport) and isinstance(sdes, RtcpSdes)
    assert sdes.chunks[0].items == [(1, b"sub-cname")]
    assert sr.ssrc == OUT_SSRC and sr.packet_count == 3
    assert sr.rtp_timestamp == 48_000 + 24_000  # + offset 0
    assert sr.ntp_timestamp == ntp + (1 << 31)
    block = RtcpReportBlock(OUT_SSRC, lsr=ntp_middle32(sr.ntp_timestamp), dlsr=65536 // 10)
    rtt = dt.on_receiver_report(block, 1.65)
    assert rtt is not None and abs(rtt - 0.05) < 1e-3


def test_a_long_run_is_forwarded_in_sequence_with_rewritten_extensions() -> None:
    """2000 packets through the rewrite step: consecutive sequence numbers, own SSRC, the
    kept extension under its subscriber id. (How fast it is: bench/forward_loop.py.)"""
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS, rewriter=ExtensionRewriter({1: 1}))
    src = AudioSource()
    items = [src.next(ext=[(1, b"\x30"), (4, b"0")]) for _ in range(2000)]
    out = [dt.forward(raw, info, 0.0) for raw, info in items]
    assert all(packet is not None for packet in out)
    headers = [rtp.parse_header(packet) for packet in out if packet is not None]
    assert all(h.ssrc == OUT_SSRC for h in headers)
    seqs = [h.sequence_number for h in headers]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    assert all(rtp.read_audio_level(packet, h, 1) == 0x30
               for packet, h in zip([p for p in out if p is not None], headers, strict=True))


def test_hostile_publisher_packets_are_rejected_or_forwarded_never_crash() -> None:
    import random

    rng = random.Random(7)
    layer = Vp8Layer(0, 0x10, seq=10, ts=0, pid=1, tl0=1)
    seeds = [p for p, _ in layer.frame_packets(keyframe=True) + layer.frame_packets()]
    red = build_rtp(1, 1, pt=63, payload=bytes([0x80 | 111, 0, 0, 200, 111]) + b"x" * 10)
    vp8 = Forwarder(OUT_SSRC, 96, 90000, CODEC_VP8)
    strip = Forwarder(OUT_SSRC, 111, 48000, codec_of("audio/red"), strip_red=True)
    for _ in range(3000):
        seed = rng.choice([*seeds, red])
        data = bytearray(seed[: rng.randrange(1, len(seed) + 1)])
        for _ in range(rng.randrange(4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        codec = codec_of("audio/red") if seed is red else CODEC_VP8
        try:
            info = inspect(bytes(data), codec)
        except ValueError:
            continue
        (strip if seed is red else vp8).forward(bytes(data), info, 0.0)


def test_a_nack_is_answered_within_its_byte_allowance() -> None:
    dt = Forwarder(OUT_SSRC, 111, 48000, CODEC_OPUS)
    src = AudioSource()
    sent = [bytes(dt.forward(*src.next(), 0.0) or b"") for _ in range(5)]
    size = len(sent[0])
    assert [bytes(p) for p in dt.on_nack([500, 501, 502], 1.0, 2 * size)] == sent[:2]
    for k in range(10):
        assert dt.on_nack([503], 2.0 + k, size - 1) == []  # not even one fits ...
    assert [bytes(p) for p in dt.on_nack([503], 20.0)] == [sent[3]]  # ... nor was it spent


def test_after_a_downgrade_packets_of_the_higher_layer_are_not_resent() -> None:
    dt, low, high, _ = _simulcast()
    now = 10.0
    dt.set_target(1)
    before = send(dt, high.frame_packets(keyframe=True), now)
    dt.set_target(0)
    now += 1 / 30
    after = send(dt, low.frame_packets(keyframe=True), now)
    assert dt.current_layer == 0 and before and after
    nacked = [out_fields(p)[0] for p in before + after]
    assert [bytes(p) for p in dt.on_nack(nacked, now + 1)] == after

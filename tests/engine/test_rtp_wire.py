"""RTP wire format: parse, round trip, rewrite, extensions, codec payload inspection."""

from __future__ import annotations

import fractions
import random
import struct

import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import HeaderExtensionsMap
from aiortc.rtp import RtpPacket as AiortcRtpPacket
from av import VideoFrame
from tests.engine.packets import rtp as build_rtp
from tests.engine.packets import vp8_payload
from tests.helpers.rtp import RtpPacket, read_twcc_seq

from roost.media import rtp
from roost.media.rtp import parse_header

AUDIO_LEVEL_ID = 1
MID_ID = 4


def test_opus_packet_with_extensions_round_trips_byte_for_byte() -> None:
    raw = build_rtp(1000, 48000, ext=[(AUDIO_LEVEL_ID, b"\x9e"), (MID_ID, b"0")], marker=True)
    pkt = RtpPacket.parse(raw)
    assert (pkt.sequence_number, pkt.timestamp, pkt.ssrc) == (1000, 48000, 0x11223344)
    assert pkt.marker and pkt.payload_type == 111
    assert pkt.extensions == [(AUDIO_LEVEL_ID, b"\x9e"), (MID_ID, b"0")]
    assert bytes(pkt) == raw


def test_csrc_padding_and_two_byte_extensions_round_trip() -> None:
    raw = build_rtp(7, 9, csrc=(1, 2, 3), padding=4, ext=[(20, b"long-extension-value-over-16")])
    h = parse_header(raw)
    assert h.csrc_count == 3 and h.padding == 4
    assert h.ext_profile == rtp.TWO_BYTE_PROFILE
    assert rtp.iter_extensions(raw, h) == [(20, h.ext_offset + 2, 28)]
    pkt = RtpPacket.parse(raw)
    assert pkt.csrc == [1, 2, 3] and pkt.padding[-1] == 4
    assert bytes(pkt) == raw


def test_matches_aiortc_parser_on_its_own_serialisation() -> None:
    ext_map = HeaderExtensionsMap()
    theirs = AiortcRtpPacket(payload_type=96, marker=1, sequence_number=65535, timestamp=1 << 31)
    theirs.ssrc = 0xDEADBEEF
    theirs.csrc = [42]
    theirs.payload = b"\x90\x80\x12\x34payload"
    raw = theirs.serialize(ext_map)
    mine = RtpPacket.parse(raw)
    assert (mine.payload_type, mine.marker, mine.sequence_number) == (96, True, 65535)
    assert (mine.timestamp, mine.ssrc, mine.csrc) == (1 << 31, 0xDEADBEEF, [42])
    assert mine.payload == theirs.payload
    assert bytes(mine) == raw
    back = AiortcRtpPacket.parse(bytes(mine), ext_map)
    assert back.payload == theirs.payload and back.sequence_number == 65535


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x6f\x00", "shorter than the 12-byte"),
        (b"\x40" + bytes(11), "version 1 is not 2"),
        (b"\x83" + bytes(11) + bytes(8), "truncates 3 CSRC"),
        (b"\x90" + bytes(11) + b"\xbe\xde", "truncates the extension header"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4), "runs past packet end"),
        (b"\xa0" + bytes(11) + b"\x00", "padding length 0"),
        (b"\xa0" + bytes(11) + b"\x01\x09", "padding length 9"),
    ],
)
def test_truncated_or_malformed_headers_raise_precise_value_errors(
    data: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_header(data)


def test_hostile_bytes_raise_only_value_error() -> None:
    rng = random.Random(1234)
    good = build_rtp(5, 5, ext=[(1, b"\x10"), (3, b"\x01\x02\x03")], padding=2, csrc=(9,))
    for _ in range(3000):
        data = bytearray(good[: rng.randrange(len(good) + 1)])
        for _ in range(rng.randrange(4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            h = parse_header(bytes(data))
            rtp.iter_extensions(data, h)
            rtp.find_extension(data, h, 3)
            RtpPacket.parse(bytes(data))
        except ValueError:
            pass


def test_in_place_rewrite_changes_only_header_fields() -> None:
    raw = build_rtp(1, 2, ext=[(AUDIO_LEVEL_ID, b"\x30")])
    buf = bytearray(raw)
    rtp.rewrite_header(buf, ssrc=0xCAFE, seq=0x1_0005, ts=-1, payload_type=63, marker=1)
    h = parse_header(buf)
    assert (h.ssrc, h.sequence_number, h.timestamp) == (0xCAFE, 5, 0xFFFFFFFF)
    assert h.payload_type == 63 and h.marker
    assert buf[h.ext_offset :] == raw[h.ext_offset :]


def test_extension_readers() -> None:
    raw = build_rtp(1, 2, ext=[(1, b"\x7f"), (5, b"\x12\x34"), (9, b"q")])
    h = parse_header(raw)
    assert rtp.read_audio_level(raw, h, 1) == 127
    assert rtp.read_audio_level(raw, h, 2) == -1
    assert read_twcc_seq(raw, h, 5) == 0x1234
    assert rtp.read_sdes_extension(raw, h, 9) == "q"


def _frame(i: int) -> VideoFrame:
    frame = VideoFrame(width=320, height=240, format="yuv420p")
    for plane in frame.planes:
        plane.update(bytes([i * 10 % 256]) * plane.buffer_size)
    frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
    return frame


def test_vp8_descriptor_of_a_real_libvpx_keyframe() -> None:
    encoder = Vp8Encoder()
    payloads, _ = encoder.encode(_frame(0), force_keyframe=True)
    d = rtp.parse_vp8(payloads[0], 0, len(payloads[0]))
    assert d.keyframe and d.start and d.picture_id_bits == 15
    payloads, _ = encoder.encode(_frame(1))
    d2 = rtp.parse_vp8(payloads[0], 0, len(payloads[0]))
    assert not d2.keyframe and d2.start
    assert d2.picture_id == (d.picture_id + 1) & 0x7FFF


def test_vp8_descriptor_fields_and_rewrite() -> None:
    payload = vp8_payload(0x1234, tl0=200, tid=2, y=True, keyidx=7, keyframe=True)
    d = rtp.parse_vp8(payload, 0, len(payload))
    assert (d.picture_id, d.tl0picidx, d.tid, d.y, d.keyidx) == (0x1234, 200, 2, True, 7)
    assert d.keyframe and d.size == 6
    buf = bytearray(b"HEAD" + payload)
    rtp.rewrite_vp8(buf, 4, d, 0x7FFF, 3, 31)
    d2 = rtp.parse_vp8(buf, 4, len(buf))
    assert (d2.picture_id, d2.tl0picidx, d2.tid, d2.keyidx) == (0x7FFF, 3, 2, 31)
    assert buf[4 + d.size :] == payload[d.size :]


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_truncated_vp8_descriptor_raises(cut: int) -> None:
    payload = vp8_payload(0x1234)
    with pytest.raises(ValueError, match="VP8"):
        rtp.parse_vp8(payload, 0, cut)


def test_h264_keyframe_detection() -> None:
    sps, pps, idr, slice_ = b"\x67\x42\x00", b"\x68\xce", b"\x65\x88\x84", b"\x41\x9a"
    stap = b"\x78" + b"".join(struct.pack("!H", len(n)) + n for n in (sps, pps))
    fu_start = b"\x7c\x85" + bytes(10)  # FU-A, S bit, type 5 (IDR)
    fu_middle = b"\x7c\x05" + bytes(10)
    for payload, expected in [
        (sps, True),
        (idr, True),
        (slice_, False),
        (stap, True),
        (fu_start, True),
        (fu_middle, False),
        (b"\x78\x00\x10\x67", False),  # STAP-A claiming more than present
        (b"", False),
    ]:
        assert rtp.h264_is_keyframe(payload, 0, len(payload)) is expected, payload


def test_h264_keyframe_of_a_real_x264_stream() -> None:
    encoder = H264Encoder()
    payloads, _ = encoder.encode(_frame(0), force_keyframe=True)
    assert rtp.h264_is_keyframe(payloads[0], 0, len(payloads[0]))
    payloads, _ = encoder.encode(_frame(1))
    assert not any(rtp.h264_is_keyframe(p, 0, len(p)) for p in payloads)


def test_opus_durations() -> None:
    assert rtp.opus_duration_ms(b"\xfc\xff\xfe", 0, 3) == 20.0  # CELT FB 20 ms, code 0
    assert rtp.opus_duration_ms(b"\x78", 0, 1) == 20.0  # SILK WB 20 ms
    assert rtp.opus_duration_ms(b"\xfd", 0, 1) == 40.0  # code 1: two frames
    assert rtp.opus_duration_ms(b"\xf3\x03", 0, 2) == 30.0  # code 3: 3 x 10 ms
    with pytest.raises(ValueError):
        rtp.opus_duration_ms(b"\xf3", 0, 1)


def test_red_primary_block_is_extracted_for_plain_opus_subscribers() -> None:
    redundant, primary = b"\xfcOLD-FRAME", b"\xfcNEW-FRAME!!"
    red_payload = bytes([0x80 | 111, (960 >> 6) & 0xFF, ((960 & 0x3F) << 2), len(redundant)])
    red_payload += bytes([111]) + redundant + primary
    raw = build_rtp(10, 4800, pt=63, payload=red_payload, ext=[(1, b"\x20")])
    h = parse_header(raw)
    blocks = rtp.parse_red(raw, h.payload_offset, h.payload_end)
    assert [(pt, ts, raw[o : o + n]) for pt, ts, o, n in blocks] == [
        (111, 960, redundant),
        (111, 0, primary),
    ]
    pt, off, end = rtp.red_primary(raw, h.payload_offset, h.payload_end)
    assert pt == 111 and raw[off:end] == primary
    with pytest.raises(ValueError, match="RED"):
        rtp.red_primary(red_payload[:3], 0, 3)
    with pytest.raises(ValueError, match="overrun"):
        rtp.red_primary(red_payload[:8], 0, 8)


def test_rtx_wrap_and_unwrap_restore_the_original() -> None:
    raw = build_rtp(321, 9000, ssrc=5, pt=96, payload=b"\x10\x00frame", ext=[(4, b"1")])
    h = parse_header(raw)
    rtx_pkt = rtp.wrap_rtx(raw, h, rtx_ssrc=6, rtx_seq=77, rtx_pt=97)
    rh = parse_header(rtx_pkt)
    assert (rh.ssrc, rh.sequence_number, rh.payload_type) == (6, 77, 97)
    assert rtx_pkt[rh.payload_offset : rh.payload_offset + 2] == b"\x01\x41"
    assert rtp.unwrap_rtx(rtx_pkt, rh, ssrc=5, payload_type=96) == raw


def test_extension_block_builder_chooses_the_form() -> None:
    assert rtp.build_extension_block([]) == b""
    one = rtp.build_extension_block([(1, b"\x01"), (2, b"ab")])
    assert one[:2] == b"\xbe\xde" and len(one) % 4 == 0
    two = rtp.build_extension_block([(15, b"x")])
    assert two[:2] == b"\x10\x00" and len(two) % 4 == 0
    with pytest.raises(ValueError):
        rtp.build_extension_block([(300, b"x")])

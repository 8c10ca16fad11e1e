"""RTCP wire types: round trips against aiortc's encoder, compound packets, hostile input."""

from __future__ import annotations

import random
import struct

import pytest
from aiortc import rtp as artp

from roost.media import rtcp
from roost.media.rtcp import (
    RtcpBye,
    RtcpFir,
    RtcpNack,
    RtcpPli,
    RtcpReceiverReport,
    RtcpRemb,
    RtcpReportBlock,
    RtcpSdes,
    RtcpSdesChunk,
    RtcpSenderReport,
    RtcpTwcc,
    RtcpUnknown,
    parse_compound,
)

BLOCK = artp.RtcpReceiverInfo(
    ssrc=0x1234, fraction_lost=12, packets_lost=-3, highest_sequence=70000, jitter=44,
    lsr=0xABCD0000, dlsr=65536,
)  # fmt: skip


def _aiortc_sr_sdes() -> bytes:
    sr = artp.RtcpSrPacket(
        ssrc=0x11, sender_info=artp.RtcpSenderInfo(0xE000000012345678, 960, 50, 6000),
        reports=[BLOCK],
    )  # fmt: skip
    sdes = artp.RtcpSdesPacket(chunks=[artp.RtcpSourceInfo(ssrc=0x11, items=[(1, b"cname!")])])
    return bytes(sr) + bytes(sdes)


def test_sender_report_and_sdes_from_aiortc_round_trip() -> None:
    raw = _aiortc_sr_sdes()
    sr, sdes = parse_compound(raw)
    assert isinstance(sr, RtcpSenderReport) and isinstance(sdes, RtcpSdes)
    assert (sr.ssrc, sr.ntp_timestamp, sr.rtp_timestamp) == (0x11, 0xE000000012345678, 960)
    assert (sr.packet_count, sr.octet_count) == (50, 6000)
    block = sr.reports[0]
    assert (block.ssrc, block.fraction_lost, block.packets_lost) == (0x1234, 12, -3)
    assert (block.highest_sequence, block.lsr, block.dlsr) == (70000, 0xABCD0000, 65536)
    assert sdes.chunks == [RtcpSdesChunk(0x11, [(1, b"cname!")])]
    assert rtcp.build_compound([sr, sdes]) == raw


def test_receiver_report_bye_and_feedback_from_aiortc_round_trip() -> None:
    rr = bytes(artp.RtcpRrPacket(ssrc=7, reports=[BLOCK, BLOCK]))
    bye = bytes(artp.RtcpByePacket(sources=[7, 8]))
    nack = bytes(artp.RtcpRtpfbPacket(fmt=1, ssrc=7, media_ssrc=9, lost=[10, 12, 30, 31]))
    pli = bytes(artp.RtcpPsfbPacket(fmt=1, ssrc=7, media_ssrc=9))
    remb = bytes(
        artp.RtcpPsfbPacket(fmt=15, ssrc=7, media_ssrc=0, fci=artp.pack_remb_fci(2_500_000, [9]))
    )
    raw = rr + bye + nack + pli + remb
    packets = parse_compound(raw)
    assert [type(p) for p in packets] == [RtcpReceiverReport, RtcpBye, RtcpNack, RtcpPli, RtcpRemb]
    r, b, n, p, m = packets
    assert isinstance(r, RtcpReceiverReport) and len(r.reports) == 2
    assert isinstance(b, RtcpBye) and b.sources == [7, 8]
    assert isinstance(n, RtcpNack) and n.lost == [10, 12, 30, 31] and n.media_ssrc == 9
    assert isinstance(p, RtcpPli) and (p.sender_ssrc, p.media_ssrc) == (7, 9)
    assert isinstance(m, RtcpRemb) and m.ssrcs == [9]
    assert abs(m.bitrate - 2_500_000) / 2_500_000 < 1e-4
    assert rtcp.build_compound(packets) == raw


def test_constructed_packets_round_trip() -> None:
    packets: list[rtcp.RtcpPacket] = [
        RtcpSenderReport(1, rtcp.ntp_now(1.7e9), 2, 3, 4, [RtcpReportBlock(5, packets_lost=-1)]),
        RtcpSdes([RtcpSdesChunk(1, [(1, b"abc"), (6, b"tool")]), RtcpSdesChunk(2, [])]),
        RtcpBye([1], reason=b"gone"),
        RtcpNack.from_lost(1, 2, [65534, 65535, 0, 1, 40]),
        RtcpFir(1, 0, [(9, 3), (10, 255)]),
        RtcpRemb(1, 123_456_789, [2, 3]),
        RtcpUnknown(204, 0, bytes([0x80, 204, 0, 2]) + b"\x00\x00\x00\x01name"),
    ]
    raw = rtcp.build_compound(packets)
    parsed = parse_compound(raw)
    assert rtcp.build_compound(parsed) == raw
    nack = parsed[3]
    assert isinstance(nack, RtcpNack) and nack.lost == [65534, 65535, 0, 1, 40]
    assert nack.pairs[0] == (65534, 0b111)
    assert parsed[2] == RtcpBye([1], b"gone")
    assert parsed[4] == RtcpFir(1, 0, [(9, 3), (10, 255)])


def test_padding_is_accepted() -> None:
    body = struct.pack("!II", 1, 2) + b"\x00\x00\x00\x04"
    raw = bytes([0xA0 | 1, 206, 0, 3]) + body
    (pli,) = parse_compound(raw)
    assert pli == RtcpPli(1, 2)


def test_twcc_status_vector_and_deltas() -> None:
    fci = struct.pack("!HHBBBB", 100, 5, 0x00, 0x01, 0x02, 7)
    fci += struct.pack("!H", 0xD850)  # 2-bit vector: small, large, none, small, small
    fci += b"\x04" + struct.pack("!h", -8) + b"\x00" + b"\xff" + b"\x00"
    raw = (
        bytes([0x80 | 15, 205])
        + struct.pack("!H", (8 + len(fci)) // 4)
        + struct.pack("!II", 1, 2)
        + fci
    )
    (fb,) = parse_compound(raw)
    assert isinstance(fb, RtcpTwcc)
    assert (fb.base_sequence, fb.status_count, fb.reference_time, fb.fb_packet_count) == (
        100, 5, 0x000102, 7,
    )  # fmt: skip
    assert fb.received == [(100, 1000), (101, -2000), (103, 0), (104, 63750)]
    assert bytes(fb) == raw


def test_twcc_run_length_wraps_sequence_numbers() -> None:
    fci = struct.pack("!HHI", 65534, 20, 0) + struct.pack("!HH", 0x2003, 0x0011) + b"\x01\x02\x03"
    fci += b"\x00"
    raw = bytes([0x80 | 15, 205]) + struct.pack("!H", (8 + len(fci)) // 4)
    raw += struct.pack("!II", 1, 2) + fci
    (fb,) = parse_compound(raw)
    assert isinstance(fb, RtcpTwcc)
    assert fb.received == [(65534, 250), (65535, 500), (0, 750)]


def test_twcc_huge_run_without_deltas_is_rejected_cheaply() -> None:
    fci = struct.pack("!HHI", 0, 65535, 0) + struct.pack("!H", 0x3FFF) * 2
    raw = bytes([0x80 | 15, 205]) + struct.pack("!H", (8 + len(fci)) // 4)
    raw += struct.pack("!II", 1, 2) + fci
    with pytest.raises(ValueError, match="TWCC"):
        parse_compound(raw)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc8", "shorter than a header"),
        (b"\x40\xc8\x00\x00", "version 1"),
        (b"\x80\xc8\x00\x05" + bytes(8), "past end"),
        (b"\x80\xc8\x00\x01" + bytes(4), "SR body"),
        (b"\x81\xc9\x00\x01" + bytes(4), "report blocks"),
        (b"\x81\xca\x00\x01" + b"\x00\x00\x00\x01", "not terminated"),
        (b"\x81\xca\x00\x02" + b"\x00\x00\x00\x01\x01\x09ab", "truncated"),
        (b"\x82\xcb\x00\x01" + bytes(4), "BYE too short"),
        (b"\x81\xcd\x00\x01" + bytes(4), "shorter than 8"),
        (b"\x8f\xce\x00\x03" + bytes(8) + b"REMB", "not a REMB"),
        (b"\xa0\xc9\x00\x01" + b"\x00\x00\x00\x09", "padding"),
    ],
)
def test_malformed_packets_raise_precise_value_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compound(data)


def test_hostile_bytes_raise_only_value_error() -> None:
    rng = random.Random(99)
    seeds = [
        _aiortc_sr_sdes(),
        rtcp.build_compound([RtcpNack.from_lost(1, 2, range(0, 60, 3)), RtcpRemb(1, 10**6, [2])]),
        rtcp.build_compound([RtcpFir(1, 0, [(3, 4)]), RtcpBye([5], b"x")]),
    ]
    for _ in range(5000):
        seed = rng.choice(seeds)
        data = bytearray(seed[: rng.randrange(1, len(seed) + 1)])
        for _ in range(rng.randrange(5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            packets = parse_compound(bytes(data))
        except ValueError:
            continue
        for p in packets:
            if not isinstance(p, RtcpTwcc):
                try:
                    bytes(p)
                except ValueError:
                    pass


def test_rtt_from_report_block() -> None:
    sent = rtcp.ntp_now(1_700_000_000.0)
    lsr = rtcp.ntp_middle32(sent)
    now = rtcp.ntp_now(1_700_000_000.25)
    rtt = rtcp.rtt_from_report(lsr, int(0.05 * 65536), now)
    assert rtt is not None and abs(rtt - 0.2) < 1e-3
    assert rtcp.rtt_from_report(0, 0, now) is None


def test_fast_builders() -> None:
    assert parse_compound(rtcp.build_pli(1, 2)) == [RtcpPli(1, 2)]
    (nack,) = parse_compound(rtcp.build_nack(1, 2, [5, 6, 100]))
    assert isinstance(nack, RtcpNack) and nack.lost == [5, 6, 100]
    (sdes,) = parse_compound(rtcp.build_sdes_cname(3, "roost"))
    assert sdes == RtcpSdes([RtcpSdesChunk(3, [(1, b"roost")])])

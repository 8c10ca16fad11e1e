"""TWCC feedback towards a publisher: what roost records is what its feedback says."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from roost.media import sdp
from roost.media.rtcp import RtcpTwcc, parse_compound
from roost.media.rtp import EXT_TRANSPORT_CC, build_extension_block
from roost.media.sections import answer_media
from roost.media.twcc_feedback import (
    FEEDBACK_INTERVAL,
    LATE_WINDOW,
    MAX_RECEIVED,
    MAX_SPAN,
    FeedbackRecorder,
)

FIXTURES = Path(__file__).parent / "fixtures"
TCC = 5
SSRC = 0xCAFE
T0 = 1000.0


def rtp(tseq: int | None, *, ext: bytes | None = None, csrcs: int = 0,
        payload: bytes = b"\xaa" * 50) -> bytes:
    """A video packet carrying transport sequence number `tseq` (with other elements)."""
    if ext is None:
        elements = [(1, b"0"), (TCC, (tseq or 0).to_bytes(2, "big")), (3, b"\x01\x02\x03")]
        ext = build_extension_block(elements if tseq is not None else elements[:1])
    first = (0x90 if ext else 0x80) | csrcs
    return (bytes((first, 96)) + (7).to_bytes(2, "big") + (1).to_bytes(4, "big")
            + SSRC.to_bytes(4, "big") + b"\x00\x00\x00\x01" * csrcs + ext + payload)


def two_byte(tseq: int) -> bytes:
    body = bytes((1, 1)) + b"0" + bytes((TCC, 2)) + tseq.to_bytes(2, "big") + b"\x00"
    return b"\x10\x00" + (len(body) // 4).to_bytes(2, "big") + body


def decode(packets: list[bytes]) -> tuple[dict[int, float], list[RtcpTwcc]]:
    """Arrival time (s since the recorder's epoch) by 16-bit sequence number, from the
    feedback as roost's own parser reads it; the parsed packets."""
    arrivals: dict[int, float] = {}
    parsed: list[RtcpTwcc] = []
    for raw in packets:
        (fb,) = parse_compound(raw)
        assert isinstance(fb, RtcpTwcc)
        assert fb.sender_ssrc == 1 and fb.media_ssrc == SSRC
        parsed.append(fb)
        t = fb.reference_time * 0.064
        for seq, delta_us in fb.received:
            t += delta_us * 1e-6
            arrivals[seq] = t
    return arrivals, parsed


def sent(rec: FeedbackRecorder, now: float) -> list[bytes]:
    out: list[bytes] = []
    rec.tick(now, out.append)
    return out


def test_feedback_names_exactly_the_received_set_with_losses_reordering_and_wrap() -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    rng = random.Random(7)
    order = [s & 0xFFFF for s in range(65500, 65500 + 300)]  # wraps at 65536
    lost = set(rng.sample(order, 30))
    kept = [s for s in order if s not in lost]
    for i in range(0, len(kept) - 3, 10):  # local reordering
        kept[i], kept[i + 2] = kept[i + 2], kept[i]
    times: dict[int, float] = {}
    now = T0 + 0.001
    packets: list[bytes] = []
    for k, s in enumerate(kept):
        now += rng.choice((0.0003, 0.002, 0.0101, 0.07))
        rec.record(rtp(s), now)
        times.setdefault(s, now)
        if k % 3 == 0:
            rec.record(rtp(s), now + 0.0005)  # a duplicate: reported once, at first arrival
        if k % 40 == 39:
            packets += sent(rec, now + FEEDBACK_INTERVAL)
    packets += sent(rec, now + 10)
    arrivals, parsed = decode(packets)
    assert set(arrivals) == set(kept)
    for s, t in arrivals.items():  # 250 µs steps, rounded without drift
        assert abs(t - (times[s] - T0)) <= 0.000125 + 1e-9, s
    assert [p.fb_packet_count for p in parsed] == list(range(len(parsed)))
    assert rec.duplicates == len(range(0, len(kept), 3))
    assert rec.malformed == rec.late == 0


def test_the_status_chunks_cover_losses_compactly_and_deltas_keep_their_sign() -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    rec.record(rtp(10), T0 + 0.010)
    rec.record(rtp(12), T0 + 0.009)  # arrived before 10 (negative delta)
    rec.record(rtp(13), T0 + 0.200)  # a large delta (190 ms)
    rec.record(rtp(1013), T0 + 0.201)  # 999 lost in a row
    (raw,) = sent(rec, T0 + 1)
    (fb,) = parse_compound(raw)
    assert isinstance(fb, RtcpTwcc)
    assert (fb.base_sequence, fb.status_count) == (10, 1004)
    assert [s for s, _ in fb.received] == [10, 12, 13, 1013]
    assert [d for _, d in fb.received][1:] == [-1000, 191000, 1000]
    assert len(raw) < 40  # run-length chunks for the long loss


def test_a_packet_reported_lost_that_arrives_late_is_reported_again() -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    for s in (0, 1, 3):
        rec.record(rtp(s), T0 + 0.01 * s)
    first, _ = decode(sent(rec, T0 + 1))
    assert set(first) == {0, 1, 3}
    rec.record(rtp(2), T0 + 1.01)
    rec.record(rtp(4), T0 + 1.02)
    again, (fb,) = decode(sent(rec, T0 + 2))
    assert fb.base_sequence == 2 and set(again) == {2, 3, 4}
    assert abs(again[2] - 1.01) < 0.0002 and abs(again[3] - 0.03) < 0.0002
    assert sent(rec, T0 + 3) == []  # nothing new: nothing sent


def test_packets_far_behind_are_late_and_a_new_sequence_is_followed() -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    for s in range(5000, 5000 + LATE_WINDOW + 10):
        rec.record(rtp(s), T0)
    sent(rec, T0 + 1)
    rec.record(rtp(5000), T0 + 1.001)
    assert rec.late == 1
    assert sent(rec, T0 + 2) == []  # only a late packet since: follow whatever comes next
    assert rec.resets == 1
    rec.record(rtp(40000), T0 + 2.001)  # half the number space away
    rec.record(rtp(40001), T0 + 2.002)
    arrivals, _ = decode(sent(rec, T0 + 3))
    assert set(arrivals) == {40000, 40001}


def test_a_wide_gap_is_not_reported_packet_by_packet_and_big_rounds_are_split() -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    rec.record(rtp(0), T0)
    rec.record(rtp(30000), T0 + 0.001)  # forward, but wider than one round may span
    arrivals, (fb,) = decode(sent(rec, T0 + 1))
    assert set(arrivals) == {30000}  # 0 fell out of the round's span
    assert (fb.base_sequence, fb.status_count) == (30001 - MAX_SPAN, MAX_SPAN)
    assert len(fb.raw) < 40
    for s in range(30001, 30001 + 2 * MAX_RECEIVED + 5):
        rec.record(rtp(s), T0 + 1 + s * 1e-5)
    packets = sent(rec, T0 + 2)
    arrivals, parsed = decode(packets)
    assert len(parsed) == 3 and set(arrivals) == set(range(30001, 30001 + 2 * MAX_RECEIVED + 5))
    assert all(len(p) <= 1200 for p in packets)


def test_an_arrival_too_far_from_the_previous_one_starts_a_new_feedback() -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    rec.record(rtp(1), T0 + 10.0)
    rec.record(rtp(2), T0 + 0.5)  # 9.5 s earlier: beyond a signed 16-bit delta
    rec.record(rtp(3), T0 + 10.001)
    arrivals, parsed = decode(sent(rec, T0 + 11))
    assert len(parsed) == 3
    assert abs(arrivals[2] - 0.5) < 0.0002 and abs(arrivals[3] - 10.001) < 0.0002


@pytest.mark.parametrize("pkt", [
    rtp(None, ext=build_extension_block([(TCC, b"\x01")])),  # one byte, not two
    rtp(None, ext=build_extension_block([(TCC, b"\x01\x02\x03\x04")])),
    rtp(None, ext=b"\x10\x00\x00\x01" + bytes((TCC, 3, 0, 1))),  # two-byte form, 3 bytes
    rtp(None, ext=b"\xbe\xde\x00\x09" + b"\x00" * 8, payload=b""),  # overruns the packet
    rtp(None, ext=b"\xbe\xde\x00\x01" + bytes((0, 0, (TCC << 4) | 1, 0))),  # cut element
    bytes((0x9F, 96)) + b"\x00" * 14,  # CSRCs past the end
])
def test_hostile_extensions_are_counted_not_raised(pkt: bytes) -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    rec.record(pkt, T0)
    assert rec.malformed == 1 and rec.recorded == 0
    assert sent(rec, T0 + 1) == []


def test_both_block_forms_csrcs_and_packets_without_the_element() -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    rec.record(rtp(1), T0)
    rec.record(rtp(2, ext=two_byte(2)), T0)
    rec.record(rtp(3, csrcs=2), T0)
    rec.record(rtp(None), T0)  # other elements only: not an error
    rec.record(rtp(None, ext=b""), T0)  # no extension block at all
    rec.record(rtp(None, ext=b"\xbe\xde\x00\x01\x00\x00\xf0\x00"), T0)  # id 15 ends it
    assert rec.recorded == 3 and rec.malformed == 0
    arrivals, _ = decode(sent(rec, T0 + 1))
    assert set(arrivals) == {1, 2, 3}


def test_feedback_is_due_every_interval_on_the_media_clock() -> None:
    rec = FeedbackRecorder(TCC, 1, T0)
    rounds = 0
    for k in range(1, 51):  # one second of 20 ms ticks, a packet per tick
        now = T0 + k * 0.02
        rec.record(rtp(k), now)
        rounds += bool(rec.tick(now, lambda _: None))
    assert 19 <= rounds <= 20
    assert rec.sent == rounds


def test_build_round_trips_runs_and_both_vector_forms() -> None:
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 300)
        pattern = rng.choice(("runs", "mixed", "small"))
        deltas: list[int | None] = []
        for _k in range(n):
            if pattern == "runs" and rng.random() < 0.9 and deltas:
                deltas.append(deltas[-1])
            elif pattern == "small":
                deltas.append(rng.choice((None, 3)))
            else:
                deltas.append(rng.choice((None, 0, 255, 256, -1, 32767, -32768)))
        if all(d is None for d in deltas):
            deltas[-1] = 1
        (fb,) = parse_compound(RtcpTwcc.build(1, 2, 65530, 5, 9, deltas))
        assert isinstance(fb, RtcpTwcc)
        assert fb.status_count == n
        expect = [((65530 + i) & 0xFFFF, d * 250) for i, d in enumerate(deltas) if d is not None]
        assert fb.received == expect


@pytest.mark.parametrize("enabled", [True, False])
def test_the_publisher_answer_keeps_transport_cc_on_video_only_when_enabled(
        enabled: bool) -> None:
    offer = sdp.parse((FIXTURES / "rust_sdk_publisher_offer_initial.sdp").read_text())
    for kind in ("audio", "video"):
        m = next(s for s in offer.media if s.kind == kind)
        m.direction = "sendonly"
        answer = answer_media(m, transport_cc=enabled)
        keeps = EXT_TRANSPORT_CC in {e.uri for e in answer.extmaps}
        feedback = "transport-cc" in answer.codecs[0].rtcp_fb
        assert keeps == feedback == (enabled and kind == "video"), (kind, answer.codecs[0])
        if kind == "video":
            assert "goog-remb" in answer.codecs[0].rtcp_fb  # the REMB ceiling still applies

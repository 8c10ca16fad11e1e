"""Transport-wide sequence numbers on forwarded packets, and TWCC feedback read back."""

from __future__ import annotations

import itertools

from tests.helpers.rtp import build_extension_block

from roost.media.forward import CODEC_OPUS, Forwarder
from roost.media.rtcp import RtcpTwcc, parse_compound
from roost.media.rtp import find_extension, parse_header
from roost.media.twcc import HISTORY, TransportSequencer

TCC = 3


def rtp(seq: int, *, ext: bytes = b"", payload: bytes = b"\x01" * 20) -> bytes:
    first = 0x90 if ext else 0x80
    return bytes((first, 96)) + seq.to_bytes(2, "big") + (1000).to_bytes(4, "big") \
        + (1234).to_bytes(4, "big") + ext + payload


def reserved(form: str = "one") -> bytes:
    if form == "one":
        return build_extension_block([(TCC, b"\x00\x00"), (4, b"m0")])
    block = b"\x10\x00\x00\x02" + bytes((TCC, 2, 0, 0, 20, 1, 0x61, 0))
    return block


def tcc_of(pkt: bytes | bytearray) -> int:
    h = parse_header(pkt)
    found = find_extension(pkt, h, TCC)
    assert found is not None
    off, length = found
    assert length == 2
    return int.from_bytes(pkt[off:off + 2], "big")


def test_each_stamped_packet_gets_the_next_number_in_either_block_form() -> None:
    seq = TransportSequencer()
    for form in ("one", "two"):
        for i in range(3):
            out = seq.stamp(rtp(i, ext=reserved(form)), TCC, now=float(i))
            assert tcc_of(out) == seq.next_seq - 1
    assert seq.next_seq == 6 and seq.stamped == 6


def test_packets_without_the_reserved_element_go_out_untouched() -> None:
    seq = TransportSequencer()
    plain = rtp(1)
    other = rtp(2, ext=build_extension_block([(4, b"m0"), (TCC, b"\x00\x00")]))  # not first
    for pkt in (plain, other, b"\x90" + b"\x00" * 10):
        assert seq.stamp(pkt, TCC, 0.0) is pkt
    assert seq.next_seq == 0


def test_the_forwarder_reserves_the_element_first_and_the_sequencer_fills_it() -> None:
    fwd = Forwarder(0x1111, 111, 48000, CODEC_OPUS, video=False, mid="0", mid_ext_id=4,
                    transport_cc_ext_id=TCC)
    block = fwd.rewriter.packet_block(rtp(7), parse_header(rtp(7)), 0.0, fwd._tail,  # type: ignore[union-attr]
                                      fwd._head)
    assert block[:2] == b"\xbe\xde" and block[4] == (TCC << 4) | 1 and block[5:7] == b"\x00\x00"
    seq = TransportSequencer()
    pkt = rtp(7, ext=block)
    assert tcc_of(seq.stamp(pkt, TCC, 1.0)) == 0


def feedback(base: int, deltas: list[int | None], ref: int = 10) -> RtcpTwcc:
    (fb,) = parse_compound(RtcpTwcc.build(1, 2, base, ref, 0, deltas))
    assert isinstance(fb, RtcpTwcc)
    return fb


def test_feedback_becomes_per_packet_results_with_losses() -> None:
    seq = TransportSequencer()
    for i in range(5):
        seq.stamp(rtp(i, ext=reserved()), TCC, now=1.0 + i * 0.01)
    results = seq.results(feedback(0, [4, None, 40, 0, 8]))
    assert [r.seq for r in results] == [0, 1, 2, 3, 4]
    assert results[1].arrival_time is None
    arrivals = [r.arrival_time for r in results if r.arrival_time is not None]
    assert abs(arrivals[0] - (10 * 0.064 + 0.001)) < 1e-9
    assert [round(b - a, 6) for a, b in itertools.pairwise(arrivals)] == \
        [0.01, 0.0, 0.002]
    assert [round(r.send_time, 3) for r in results] == [1.0, 1.01, 1.02, 1.03, 1.04]
    assert all(r.size == len(rtp(0, ext=reserved())) for r in results)


def test_sequence_numbers_wrap_and_feedback_is_unwrapped() -> None:
    seq = TransportSequencer()
    seq.next_seq = 65534
    for i in range(4):
        seq.stamp(rtp(i, ext=reserved()), TCC, now=float(i))
    results = seq.results(feedback(65534, [1, 1, 1, 1]))
    assert [r.seq for r in results] == [65534, 65535, 65536, 65537]
    assert [r.send_time for r in results] == [0.0, 1.0, 2.0, 3.0]


def test_feedback_for_packets_never_sent_or_forgotten_is_counted_not_raised() -> None:
    seq = TransportSequencer()
    assert seq.results(feedback(0, [1])) == []  # nothing sent yet
    for i in range(HISTORY + 10):
        seq.stamp(rtp(i & 0xFFFF, ext=reserved()), TCC, now=0.0)
    assert seq.results(feedback(HISTORY + 5, [1, 1, 1, 1, 1, 1])) == []  # beyond the last
    assert seq.results(feedback(2, [1])) == []  # older than the history
    assert seq.feedback_errors == 2


def test_hostile_twcc_feedback_on_the_receive_path_is_counted_never_raised() -> None:
    """Truncated, oversized and random TWCC packets reach RtpSession.on_rtcp as a subscriber
    would send them: every one is dropped with a counted error, and good feedback after
    them still reaches the estimator."""
    import random

    from roost.media.rtpsession import RtpSession

    session = RtpSession("hostile")
    session.congestion_control = True
    session.transport_cc_id = TCC
    for i in range(200):
        session.sequencer.stamp(rtp(i, ext=reserved()), TCC, now=i * 0.001)
    rng = random.Random(7)
    good = RtcpTwcc.build(1, 2, 100, 1, 0, [4] * 20)  # 20 packets 1 ms apart
    hostile = [good[:-4], good[:12], good + b"\x00" * 3]
    for _ in range(500):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        words = (8 + len(body) + 3) // 4 - 1
        body += b"\x00" * (-(8 + len(body)) % 4)
        hostile.append(bytes((0x8F, 205)) + words.to_bytes(2, "big") + bytes(4) + body)
    for _ in range(200):  # well-formed headers around random chunks and deltas
        n = rng.randrange(1, 3000)
        fci = (rng.randrange(65536).to_bytes(2, "big") + n.to_bytes(2, "big")
               + bytes(rng.randrange(256) for _ in range(rng.randrange(4, 60))))
        fci += b"\x00" * (-len(fci) % 4)
        words = (12 + len(fci)) // 4 - 1
        hostile.append(bytes((0x8F, 205)) + words.to_bytes(2, "big") + bytes(4)
                       + (2).to_bytes(4, "big") + fci)
    for pkt in hostile:
        session.on_rtcp(pkt)  # an exception out of the parser or the estimator fails here
    assert session.rtcp_errors + session.sequencer.feedback_errors + session.bwe.skipped > 400
    session.on_rtcp(good)
    assert session.twcc_at > 0  # good feedback still counts

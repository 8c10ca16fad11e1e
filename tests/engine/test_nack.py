"""Loss recovery: retransmission cache limits, upstream NACK generation, PLI throttling."""

from __future__ import annotations

from roost.media.nack import NackGenerator, PliThrottle, ReceptionStats, RetransmitCache
from roost.media.rtcp import RtcpNack, parse_compound


def test_cache_answers_nacks_for_packets_in_the_window_only() -> None:
    cache: RetransmitCache[bytes] = RetransmitCache(200)
    for seq in range(1000, 1300):
        cache.store(seq & 0xFFFF, b"pkt%d" % seq)
    assert cache.answer([1299, 1150], now=0.0) == [(1299, b"pkt1299"), (1150, b"pkt1150")]
    assert cache.answer([1099, 1300, 5], now=0.0) == []  # evicted, never sent, stale


def test_each_packet_is_retransmitted_at_most_three_times_and_not_too_often() -> None:
    cache: RetransmitCache[bytes] = RetransmitCache(500)
    cache.store(7, b"x")
    assert cache.answer([7], now=0.0) == [(7, b"x")]
    assert cache.answer([7], now=0.05) == []  # within 100 ms
    assert cache.answer([7], now=0.11) == [(7, b"x")]
    assert cache.answer([7], now=0.3) == [(7, b"x")]
    assert cache.answer([7], now=5.0) == []  # three times is the limit


def test_short_rtt_shortens_the_retransmit_spacing() -> None:
    cache: RetransmitCache[bytes] = RetransmitCache(500)
    cache.store(1, b"y")
    assert cache.answer([1], now=0.0, rtt=0.01) == [(1, b"y")]
    assert cache.answer([1], now=0.025, rtt=0.01) == [(1, b"y")]  # 2 x RTT = 20 ms


def test_padding_is_never_retransmitted() -> None:
    cache: RetransmitCache[bytes] = RetransmitCache(10)
    cache.store(3, None)
    assert cache.answer([3], now=0.0) == []
    assert cache.get(3) is None


def test_gaps_are_nacked_after_a_reorder_wait_then_backed_off() -> None:
    gen = NackGenerator()
    for seq in (1, 2, 5, 6):
        gen.push(seq, now=0.0)
    assert gen.outstanding == 2
    assert gen.due(0.01) == []  # wait 20 ms for reordering first
    assert gen.due(0.02) == [3, 4]
    gen.push(3, now=0.03)  # the retransmission arrived
    assert gen.outstanding == 1
    assert gen.due(0.05) == []  # backoff: RTT (70 ms) after the first try
    assert gen.due(0.095) == [4]
    raw = None
    t = 0.1
    while raw is None and t < 1.0:
        raw = gen.build(0xAA, 0xBB, t)
        t += 0.01
    assert raw is not None
    (nack,) = parse_compound(raw)
    assert isinstance(nack, RtcpNack) and nack.lost == [4] and nack.media_ssrc == 0xBB


def test_each_gap_is_nacked_at_most_five_times() -> None:
    gen = NackGenerator()
    gen.push(10, 0.0)
    gen.push(12, 0.0)
    tries = sum(len(gen.due(t / 100)) for t in range(1, 1000))
    assert tries == 5 and gen.outstanding == 0


def test_at_most_100_sequence_numbers_are_outstanding_and_wrap_works() -> None:
    gen = NackGenerator()
    gen.push(65500, 0.0)
    gen.push(65500 + 150 - 65536, 0.0)  # 149 lost across the wrap
    assert gen.outstanding == 100
    due = gen.due(1.0)
    assert due[0] == (65500 + 50) & 0xFFFF and due[-1] == (65500 + 149) & 0xFFFF


def test_a_huge_jump_is_a_restart_not_loss() -> None:
    gen = NackGenerator()
    gen.push(1, 0.0)
    gen.push(20_000, 0.0)
    assert gen.outstanding == 0


def test_old_entries_expire() -> None:
    gen = NackGenerator(max_lifetime=1.0)
    gen.push(1, 0.0)
    gen.push(3, 0.0)
    assert gen.due(2.0) == []
    assert gen.outstanding == 0


def test_pli_throttle_is_per_layer() -> None:
    throttle = PliThrottle()
    assert throttle.allow(0, 0.0)
    assert not throttle.allow(0, 0.4)
    assert throttle.allow(0, 0.5)
    assert throttle.allow(2, 0.0)
    assert not throttle.allow(2, 0.9)
    assert throttle.allow(2, 1.0)
    throttle.reset(2)
    assert throttle.allow(2, 1.1)


def test_reception_stats_count_loss_and_jitter_for_receiver_reports() -> None:
    stats = ReceptionStats(48000)
    t = 10.0
    for seq in [65530, 65531, 65533, 65534, 0, 1, 3, 2]:  # 65532 and 65535 lost, 2/3 reordered
        stats.update(seq, (seq if seq > 100 else seq + 65536) * 960, t)
        t += 0.02
    stats.on_sender_report(0xE000_1234_5678_0000, 10.0)
    block = stats.report_block(0xABC, now=10.5)
    assert block.ssrc == 0xABC
    assert block.highest_sequence == 65536 + 3
    assert block.packets_lost == 2 and stats.expected == 10
    assert block.fraction_lost == (2 << 8) // 10 and abs(stats.loss_fraction - 0.2) < 0.01
    assert block.lsr == 0x1234_5678 and block.dlsr == 65536 // 2
    for seq in range(4, 40):
        stats.update(seq, (seq + 65536) * 960, t)
        t += 0.02
    assert stats.report_block(0xABC, now=11.0).fraction_lost == 0  # new interval, no loss
    assert stats.jitter < 0.001 * 48000  # the reordering's jitter decayed with steady pacing

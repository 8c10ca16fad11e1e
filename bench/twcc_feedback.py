"""TWCC feedback towards publishers: recording cost per packet, building cost per 50 ms round.

`FeedbackRecorder.record` runs once per packet a publisher sends when transport-cc was
negotiated (the hot path, next to unprotect + inspect + forward); `tick` builds the RTCP
feedback every 50 ms. Printed next to the per-packet forwarding steps of
`bench/forward_loop.py` (1,200 B video, AES-CM) so the cost reads in proportion:

  - record: the transport-wide-cc element 2nd of 5 (Chrome's video), last of 5, in the
    two-byte form, absent (a 4-element audio packet: the walk ends empty-handed), and with
    the `time.monotonic()` the session takes for it;
  - the whole hook: `RtpSession.on_rtp` on a dropped SSRC with and without a recorder;
  - one feedback round for 200, 1,000 and 2,500 packets/s (10, 50, 125 packets per round,
    2% lost, 1% reordered), and what 20 rounds a second cost per received packet.

    python bench/twcc_feedback.py            # ~10 s
    python bench/twcc_feedback.py --quick
"""

from __future__ import annotations

import argparse
import platform
import random
import socket
import struct
import sys
import time
from collections.abc import Callable

from forward_loop import VIDEO, piece_costs  # bench/ is on sys.path when run as a script
from machine import best_ns  # bench/ is on sys.path when run as a script
from roost.media.rtp import build_extension_block
from roost.media.rtpsession import DROP, RtpSession
from roost.media.srtp import AES128_CM_SHA1_80
from roost.media.twcc_feedback import FEEDBACK_INTERVAL, FeedbackRecorder

BATCH = 1000
TCC = 3
SSRC = 0x11223344


def packet(ext: list[tuple[int, bytes]], seq: int, size: int = 1100) -> bytes:
    block = build_extension_block(ext)
    head = struct.pack("!BBHII", 0x90, 96, seq & 0xFFFF, 3000 * seq, SSRC)
    return head + block + bytes(size - 12 - len(block))


def video(seq: int, where: str = "second") -> bytes:
    tcc = (TCC, struct.pack("!H", seq & 0xFFFF))
    rest = [(4, b"1"), (10, b"f"), (12, bytes(8))]
    if where == "second":
        return packet([(2, b"\x01\x02\x03"), tcc, *rest], seq)
    if where == "last":
        return packet([(2, b"\x01\x02\x03"), *rest, tcc], seq)
    return packet([(2, b"\x01\x02\x03"), tcc, *rest, (20, bytes(17))], seq)  # two-byte form


def audio(seq: int) -> bytes:
    return packet([(1, b"\x9e"), (2, b"\x01\x02\x03"), (4, b"0"), (5, b"x")], seq, 100)




def record_cases(repeats: int) -> list[tuple[str, float]]:
    out = []
    for name, make in (("record: tcc 2nd of 5 (one-byte)", lambda s: video(s)),
                       ("record: tcc last of 5 (one-byte)", lambda s: video(s, "last")),
                       ("record: tcc 2nd of 6 (two-byte)", lambda s: video(s, "two")),
                       ("record: no tcc element (audio, 4)", audio)):
        pkts = [make(s) for s in range(BATCH)]
        rec = FeedbackRecorder(TCC, 1, 0.0)
        record = rec.record

        def run(pkts: list[bytes] = pkts, record: Callable[[bytes, float], None] = record
                ) -> None:
            for p in pkts:
                record(p, 1.0)
        out.append((name, best_ns(run, repeats, BATCH)))
    pkts = [video(s) for s in range(BATCH)]
    rec = FeedbackRecorder(TCC, 1, 0.0)
    clock = time.monotonic

    def with_clock() -> None:
        record = rec.record
        for p in pkts:
            record(p, clock())
    out.append(("record + time.monotonic()", best_ns(with_clock, repeats, BATCH)))
    return out


def hook_cases(repeats: int) -> list[tuple[str, float]]:
    pkts = [video(s) for s in range(BATCH)]
    out = []
    for name, recorder in (("RtpSession.on_rtp, dropped SSRC, no recorder", None),
                           ("RtpSession.on_rtp, dropped SSRC, recorder",
                            FeedbackRecorder(TCC, 1, time.monotonic()))):
        session = RtpSession("bench")
        session.routes[SSRC] = DROP
        session.twcc_feedback = recorder
        on_rtp = session.on_rtp

        def run(on_rtp: Callable[[bytes], None] = on_rtp) -> None:
            for p in pkts:
                on_rtp(p)
        out.append((name, best_ns(run, repeats, BATCH)))
    return out


def round_cases(repeats: int) -> list[tuple[str, float, float]]:
    """(label, µs per round, ns per received packet at 20 rounds/s)."""
    out = []
    rng = random.Random(5)
    for rate in (200, 1000, 2500):
        per_round = int(rate * FEEDBACK_INTERVAL)
        rounds = 50
        seqs = list(range(per_round * rounds))
        for i in range(0, len(seqs) - 1, 100):  # 1% reordered
            seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
        kept = [s for s in seqs if rng.random() >= 0.02]  # 2% lost
        pkts = [video(s) for s in kept]
        batches = [pkts[i * len(pkts) // rounds:(i + 1) * len(pkts) // rounds]
                   for i in range(rounds)]
        best = float("inf")
        for _ in range(max(3, repeats // 20)):
            rec = FeedbackRecorder(TCC, 1, 0.0)
            now = 0.0
            spent = 0
            for batch in batches:
                for p in batch:
                    now += 1 / rate
                    rec.record(p, now)
                t0 = time.perf_counter_ns()
                rec.feedback()
                spent += time.perf_counter_ns() - t0
            best = min(best, spent / rounds)
        out.append((f"feedback round, {rate} pkt/s ({per_round} packets)", best / 1e3,
                    best / per_round))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    repeats = 20 if args.quick else 200
    print(f"# Python {sys.version.split()[0]} on {platform.machine()}, {BATCH} packets/batch")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    pieces = piece_costs(VIDEO, AES128_CM_SHA1_80, sink.getsockname(), 4000 if args.quick
                         else 20000)
    sink.close()
    print("forwarding, per 1200 B video packet (bench/forward_loop.py):")
    for name, us in pieces.items():
        print(f"  {name:46s} {us * 1e3:8.1f} ns")
    print("recording, per publisher packet:")
    for name, ns in record_cases(repeats) + hook_cases(repeats):
        print(f"  {name:46s} {ns:8.1f} ns")
    print("building, per 50 ms round:")
    for name, us, ns in round_cases(repeats):
        print(f"  {name:46s} {us:8.1f} µs/round {ns:7.1f} ns/packet")


if __name__ == "__main__":
    main()

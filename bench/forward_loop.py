"""The forwarding ceiling: a tight pure-Python loop over roost's packet engine, no event loop.

Per publisher packet: SRTP unprotect once, `inspect()`, then per subscriber
`Forwarder.forward()` (SSRC/seq/ts/PT rewrite + header extensions), SRTP protect with
that subscriber's own session, and a UDP `sendto` to a loopback sink. Prints packets/s
per core and µs per forwarded packet for 100 B audio-like and 1200 B video-like packets
with 1, 10 and 100 subscribers, for AES-CM-128-HMAC-SHA1-80 and AEAD-AES-128-GCM.

    python bench/forward_loop.py            # full table, ~20-40 s
    python bench/forward_loop.py --quick    # smaller runs
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from roost.media.forward import (
    CODEC_OPUS,
    CODEC_VP8,
    ExtensionRewriter,
    Forwarder,
    PacketInfo,
    inspect,
)
from roost.media.rtp import build_extension_block
from roost.media.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, SrtpProfile, SrtpSession

AUDIO_LEVEL_ID, MID_ID, TWCC_ID = 1, 4, 3


@dataclass
class Shape:
    """What the publisher sends."""

    name: str
    size: int  # plaintext RTP packet size in bytes
    codec: int
    payload_type: int
    clock_rate: int
    ts_step: int


AUDIO = Shape("audio", 100, CODEC_OPUS, 111, 48000, 960)
VIDEO = Shape("video", 1200, CODEC_VP8, 96, 90000, 3000)


def publisher_packet(shape: Shape, i: int) -> bytes:
    """One plaintext publisher packet of exactly `shape.size` bytes."""
    if shape is AUDIO:
        ext = build_extension_block([(AUDIO_LEVEL_ID, bytes([0x80 | 30])), (MID_ID, b"0")])
        head_len = 12 + len(ext)
        payload = b"\xfc" + bytes(shape.size - head_len - 1)
    else:
        ext = build_extension_block([(TWCC_ID, struct.pack("!H", i & 0xFFFF)), (MID_ID, b"1")])
        head_len = 12 + len(ext)
        pid = i & 0x7FFF
        desc = bytes([0x90, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, i & 0xFF, 0x00])
        frame = bytes([0x00 if i == 0 else 0x01])
        payload = desc + frame + bytes(shape.size - head_len - len(desc) - 1)
    head = struct.pack(
        "!BBHII", 0x90, shape.payload_type, i & 0xFFFF, (i * shape.ts_step) & 0xFFFFFFFF, 0x5EED
    )
    pkt = head + ext + payload
    assert len(pkt) == shape.size
    return pkt


def make_stream(shape: Shape, profile: SrtpProfile, count: int) -> tuple[list[bytes], bytes]:
    """`count` SRTP-protected publisher packets and the key that protects them."""
    key = os.urandom(profile.key_length + profile.salt_length)
    tx = SrtpSession(key, profile, outbound=True)
    return [tx.protect(publisher_packet(shape, i)) for i in range(count)], key


@dataclass
class Result:
    """One configuration's measurement."""

    profile: str
    shape: str
    subscribers: int
    publisher_packets: int
    forwarded: int
    seconds: float  # CPU time of this process (user + system) for the loop
    wall: float
    send_errors: int

    @property
    def out_pps(self) -> float:
        """Forwarded packets per CPU-second, i.e. per fully used core."""
        return self.forwarded / self.seconds

    @property
    def us_per_out(self) -> float:
        return self.seconds / self.forwarded * 1e6


def run_config(
    shape: Shape, profile: SrtpProfile, subscribers: int, total_out: int, sink: tuple[str, int]
) -> Result:
    """Forward a pre-protected stream to `subscribers` down-tracks and time the whole loop."""
    n_pub = max(200, total_out // subscribers)
    wire, key = make_stream(shape, profile, n_pub)
    rx = SrtpSession(key, profile, outbound=False)
    rewriter = ExtensionRewriter({AUDIO_LEVEL_ID: AUDIO_LEVEL_ID} if shape is AUDIO else {})
    subs: list[tuple[Forwarder, Callable[[bytes | bytearray], memoryview | bytes]]] = []
    for k in range(subscribers):
        dt = Forwarder(
            0x10000 + k,
            shape.payload_type,
            shape.clock_rate,
            shape.codec,
            rewriter=rewriter,
            mid=str(k % 10),
            mid_ext_id=MID_ID,
        )
        tx = SrtpSession(os.urandom(profile.key_length + profile.salt_length), profile)
        subs.append((dt, tx.protect_view))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sendto = sock.sendto
    codec = shape.codec
    errors = 0
    forwarded = 0
    clock = time.perf_counter
    cpu0, t0 = time.process_time(), clock()
    for pkt in wire:
        now = clock()
        plain = rx.unprotect(pkt)
        info: PacketInfo = inspect(plain, codec)
        for dt, protect in subs:
            out = dt.forward(plain, info, now)
            if out is None:
                continue
            try:
                sendto(protect(out), sink)
            except BlockingIOError:
                errors += 1
            forwarded += 1
    wall = clock() - t0
    seconds = time.process_time() - cpu0
    sock.close()
    return Result(profile.name, shape.name, subscribers, n_pub, forwarded, seconds, wall, errors)


def piece_costs(
    shape: Shape, profile: SrtpProfile, sink: tuple[str, int], n: int
) -> dict[str, float]:
    """µs per call of each step, measured separately on one subscriber."""
    wire, key = make_stream(shape, profile, n)
    rx = SrtpSession(key, profile, outbound=False)
    clock = time.process_time
    t = clock()
    plain = [rx.unprotect(p) for p in wire]
    unprotect = (clock() - t) / n
    t = clock()
    infos = [inspect(p, shape.codec) for p in plain]
    inspect_cost = (clock() - t) / n
    dt = Forwarder(
        1,
        shape.payload_type,
        shape.clock_rate,
        shape.codec,
        rewriter=ExtensionRewriter({}),
        mid="0",
        mid_ext_id=MID_ID,
    )
    t = clock()
    outs = [dt.forward(p, i, 0.0) for p, i in zip(plain, infos, strict=True)]
    forward = (clock() - t) / n
    tx = SrtpSession(os.urandom(profile.key_length + profile.salt_length), profile)
    sent = [o for o in outs if o is not None]
    t = clock()
    protected = [tx.protect(o) for o in sent]
    protect = (clock() - t) / len(sent)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    t = clock()
    for p in protected:
        try:
            sock.sendto(p, sink)
        except BlockingIOError:
            pass
    send = (clock() - t) / len(protected)
    sock.close()
    return {
        "unprotect": unprotect * 1e6,
        "inspect": inspect_cost * 1e6,
        "forward": forward * 1e6,
        "protect": protect * 1e6,
        "sendto": send * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (~8 s)")
    parser.add_argument("--packets", type=int, default=0, help="forwarded packets per config")
    parser.add_argument("--repeat", type=int, default=2, help="runs per config; best is kept")
    args = parser.parse_args()
    total_out = args.packets or (15_000 if args.quick else 40_000)
    repeat = max(1, args.repeat)

    sink_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sink_sock.bind(("127.0.0.1", 0))
    sink = sink_sock.getsockname()

    started = time.perf_counter()
    print(
        f"roost forward loop: Python {platform.python_version()}, {platform.machine()},"
        f" {os.cpu_count()} CPUs, one core used; sink udp://{sink[0]}:{sink[1]} (never read)"
    )
    print()
    profiles = [AES128_CM_SHA1_80, AEAD_AES_128_GCM]
    names = {
        AES128_CM_SHA1_80.name: "AES-CM-128-SHA1-80",
        AEAD_AES_128_GCM.name: "AEAD-AES-128-GCM",
    }

    print("Cost of the pieces (CPU µs per packet, one subscriber, best of runs):")
    print(
        f"{'profile':<20} {'packet':<12} {'unprotect':>9} {'inspect':>8} {'forward':>8}"
        f" {'protect':>8} {'sendto':>7} {'sum':>7}"
    )
    for profile in profiles:
        for shape in (AUDIO, VIDEO):
            costs = [
                piece_costs(shape, profile, sink, 5000 if args.quick else 10_000)
                for _ in range(repeat)
            ]
            c = {k: min(r[k] for r in costs) for k in costs[0]}
            print(
                f"{names[profile.name]:<20} {shape.name + ' ' + str(shape.size) + ' B':<12}"
                f" {c['unprotect']:>9.2f} {c['inspect']:>8.2f} {c['forward']:>8.2f}"
                f" {c['protect']:>8.2f} {c['sendto']:>7.2f} {sum(c.values()):>7.2f}"
            )
    print()
    print("Whole loop (unprotect once per publisher packet; per subscriber: forward, protect,")
    print("sendto). Rates are per CPU-second of this process, i.e. per fully used core:")
    header = (
        f"{'profile':<20} {'packet':<12} {'subs':>4} {'pub pkt/s':>10} {'out pkt/s':>10}"
        f" {'µs/out pkt':>10} {'out Mbit/s':>10} {'wall pkt/s':>10}"
    )
    print(header)
    print("-" * len(header))
    results: list[Result] = []
    for profile in profiles:
        for shape in (AUDIO, VIDEO):
            for subs in (1, 10, 100):
                runs = [run_config(shape, profile, subs, total_out, sink) for _ in range(repeat)]
                r = min(runs, key=lambda x: x.us_per_out)
                results.append(r)
                pub_pps = r.publisher_packets / r.seconds
                mbit = r.out_pps * (shape.size + 10) * 8 / 1e6
                print(
                    f"{names[profile.name]:<20} {shape.name + ' ' + str(shape.size) + ' B':<12}"
                    f" {subs:>4} {pub_pps:>10,.0f} {r.out_pps:>10,.0f} {r.us_per_out:>10.2f}"
                    f" {mbit:>10.1f} {r.forwarded / r.wall:>10,.0f}",
                    flush=True,
                )
    errors = sum(r.send_errors for r in results)
    print()
    print(f"sendto EAGAIN: {errors}; total run {time.perf_counter() - started:.1f} s")
    sink_sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

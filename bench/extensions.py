"""Header-extension hot paths in ns per packet: find-by-id, the forwarding rewrite, stamping.

`find_extension` runs once per publisher audio packet (audio level) and per unknown SSRC
(mid, rid); `ExtensionRewriter.body` once per forwarded packet and distinct id mapping;
`TransportSequencer.stamp` once per packet sent to a subscriber with congestion control
(plus the `time.monotonic()` the session takes for it).
Each case walks a batch of distinct packet objects (so the rewriter's per-packet memo
never hits) and prints the best of several repeats.

    python bench/extensions.py            # ~10 s
    python bench/extensions.py --quick
"""

from __future__ import annotations

import argparse
import platform
import struct
import sys
import time
from collections.abc import Callable

from machine import best_ns  # bench/ is on sys.path when run as a script
from roost.media.extensions import ExtensionRewriter
from roost.media.rtp import (
    RtpHeader,
    build_extension_block,
    find_extension,
    iter_extensions,
    parse_header,
    read_audio_level,
)
from roost.media.twcc import TransportSequencer

BATCH = 1000

# Chrome-like audio: audio level, abs-send-time, transport-cc, mid (one-byte form).
AUDIO_EXT = [(1, b"\x9e"), (2, b"\x01\x02\x03"), (3, b"\x00\x07"), (4, b"0")]
# Chrome-like simulcast video: abs-send-time, transport-cc, mid, rid, dependency-descriptor.
VIDEO_EXT = [(2, b"\x01\x02\x03"), (3, b"\x00\x08"), (4, b"1"), (10, b"f"), (12, bytes(8))]
# The same elements in the two-byte form (a 17-byte element forces it).
TWO_BYTE_EXT = [*VIDEO_EXT, (20, bytes(17))]


def packets(ext: list[tuple[int, bytes]], payload: int) -> tuple[list[bytes], RtpHeader]:
    """BATCH distinct (equal) packets with these extension elements, and their header."""
    block = build_extension_block(ext)
    head = struct.pack("!BBHII", 0x90, 111, 1, 960, 0x11223344)
    raw = head + block + b"\xfc" + bytes(payload - 1)
    pkts = [bytes(bytearray(raw)) for _ in range(BATCH)]
    return pkts, parse_header(pkts[0])




def cases() -> list[tuple[str, Callable[[], object]]]:
    audio, ha = packets(AUDIO_EXT, 60)
    video, hv = packets(VIDEO_EXT, 1100)
    two, ht = packets(TWO_BYTE_EXT, 1100)

    def find(pkts: list[bytes], h: RtpHeader, ext_id: int) -> Callable[[], object]:
        return lambda: [find_extension(p, h, ext_id) for p in pkts]

    def level() -> object:
        return [read_audio_level(p, ha, 1) for p in audio]

    def walk(pkts: list[bytes], h: RtpHeader) -> Callable[[], object]:
        return lambda: [iter_extensions(p, h) for p in pkts]

    def rewrite(pkts: list[bytes], h: RtpHeader, rw: ExtensionRewriter) -> Callable[[], object]:
        body = rw.body
        return lambda: [body(p, h, 1.5) for p in pkts]

    stamped_audio, _ = packets([(3, b"\x00\x00"), (1, b"\x9e"), (4, b"0")], 60)
    stamped_video, _ = packets([(3, b"\x00\x00"), (2, b"\x01\x02\x03"), (4, b"1")], 1100)

    def stamp(pkts: list[bytes] | list[bytearray]) -> Callable[[], object]:
        seq = TransportSequencer()
        clock = time.monotonic
        return lambda: [seq.stamp(p, 3, clock()) for p in pkts]

    rendered = [bytearray(p) for p in stamped_video]  # as the forwarder builds them

    audio_rw = ExtensionRewriter({1: 1}, abs_send_time_id=2)
    video_rw = ExtensionRewriter({12: 5}, abs_send_time_id=2)
    two_rw = ExtensionRewriter({12: 5, 20: 20}, abs_send_time_id=2)
    return [
        ("find audio-level (1st of 4, one-byte)", find(audio, ha, 1)),
        ("find mid (4th of 4, one-byte)", find(audio, ha, 4)),
        ("find absent id (one-byte, 4 elements)", find(audio, ha, 9)),
        ("find rid (4th of 6, two-byte)", find(two, ht, 10)),
        ("read_audio_level", level),
        ("iter_extensions audio (4 elements)", walk(audio, ha)),
        ("iter_extensions two-byte (6 elements)", walk(two, ht)),
        ("rewrite audio: keep level, +abs-send-time", rewrite(audio, ha, audio_rw)),
        ("rewrite video: keep dd of 5, +abs-send-time", rewrite(video, hv, video_rw)),
        ("rewrite two-byte: keep 2 of 6, +abs-send-time", rewrite(two, ht, two_rw)),
        ("stamp transport-cc, audio 60 B (+monotonic)", stamp(stamped_audio)),
        ("stamp transport-cc, video 1100 B bytes (+copy)", stamp(stamped_video)),
        ("stamp transport-cc, video 1100 B bytearray", stamp(rendered)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    repeats = 20 if args.quick else 200
    print(f"# Python {sys.version.split()[0]} on {platform.machine()}, {BATCH} packets/batch")
    for name, fn in cases():
        print(f"{name:48s} {best_ns(fn, repeats, BATCH):8.1f} ns/packet")


if __name__ == "__main__":
    main()

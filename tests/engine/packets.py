"""Builders for the RTP packets the engine tests feed in (publisher-side shapes)."""

from __future__ import annotations

import struct

from roost.media.rtp import build_extension_block


def rtp(
    seq: int,
    ts: int,
    ssrc: int = 0x11223344,
    pt: int = 111,
    payload: bytes = b"\xfc" + bytes(40),
    marker: bool = False,
    ext: list[tuple[int, bytes]] | None = None,
    padding: int = 0,
    csrc: tuple[int, ...] = (),
) -> bytes:
    """An RTP packet with optional header extensions, CSRCs and padding."""
    block = build_extension_block(ext or [])
    b0 = 0x80 | len(csrc) | (0x10 if block else 0) | (0x20 if padding else 0)
    head = struct.pack(
        "!BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
    )
    head += b"".join(struct.pack("!I", c) for c in csrc)
    pad = bytes(padding - 1) + bytes([padding]) if padding else b""
    return head + block + payload + pad


def vp8_payload(
    picture_id: int,
    tl0: int = 0,
    tid: int = 0,
    keyframe: bool = False,
    start: bool = True,
    y: bool = False,
    keyidx: int = 0,
    size: int = 60,
) -> bytes:
    """VP8 payload descriptor (15-bit picture id, TL0PICIDX, TID/KEYIDX) plus a frame stub."""
    b0 = 0x80 | (0x10 if start else 0)
    x = 0x80 | 0x40 | 0x20 | 0x10
    tk = (tid << 6) | (0x20 if y else 0) | (keyidx & 0x1F)
    desc = bytes([b0, x, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0 & 0xFF, tk])
    frame = bytes([0x00 if keyframe else 0x01]) + bytes(size - 1)
    return desc + frame

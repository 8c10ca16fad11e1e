"""RTP wire format: header parse/rewrite, header extensions and codec payload inspection.

Functions on `bytes`/`bytearray` offsets (`parse_header`, `find_extension`,
`rewrite_header`, `parse_vp8`, ...): the hot path, allocating at most one small object per
publisher packet. The byte-for-byte packet object of the tests is tests/helpers/rtp.py.
"""

from __future__ import annotations

import struct

Buffer = bytes | bytearray | memoryview

RTP_HEADER_SIZE = 12
MAX_RTP_PACKET = 65535
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000  # low 4 bits are "appbits"

_FIXED = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")

# Extension URIs as they appear in SDP `a=extmap` lines.
EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
EXT_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_ABS_CAPTURE_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"
EXT_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
EXT_DEPENDENCY_DESCRIPTOR = (
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
)


class RtpHeader:
    """Offsets and fields of one parsed RTP packet; the buffer itself is not kept."""

    __slots__ = (
        "csrc_count",
        "ext_end",
        "ext_offset",
        "ext_profile",
        "extension",
        "marker",
        "padding",
        "payload_end",
        "payload_offset",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(self) -> None:
        self.padding = 0  # number of padding bytes at the end (0 = none)
        self.extension = False
        self.csrc_count = 0
        self.marker = False
        self.payload_type = 0
        self.sequence_number = 0
        self.timestamp = 0
        self.ssrc = 0
        self.ext_profile = 0
        self.ext_offset = 0  # first byte of extension elements (after the 4-byte header)
        self.ext_end = 0
        self.payload_offset = 0
        self.payload_end = 0  # exclusive, padding removed

    @property
    def payload_size(self) -> int:
        """Payload bytes without padding."""
        return self.payload_end - self.payload_offset


def parse_header(buf: Buffer, h: RtpHeader | None = None) -> RtpHeader:
    """Parse the RTP header of `buf` (into `h` if given); ValueError when malformed/truncated."""
    n = len(buf)
    if n < RTP_HEADER_SIZE:
        raise ValueError(f"RTP packet length {n} is shorter than the 12-byte fixed header")
    if n > MAX_RTP_PACKET:
        raise ValueError(f"RTP packet length {n} exceeds {MAX_RTP_PACKET}")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(buf, 0)
    if b0 >> 6 != 2:
        raise ValueError(f"RTP version {b0 >> 6} is not 2")
    if h is None:
        h = RtpHeader()
    h.marker = bool(b1 & 0x80)
    h.payload_type = b1 & 0x7F
    h.sequence_number = seq
    h.timestamp = ts
    h.ssrc = ssrc
    cc = b0 & 0x0F
    h.csrc_count = cc
    off = RTP_HEADER_SIZE + 4 * cc
    if off > n:
        raise ValueError(f"RTP packet length {n} truncates {cc} CSRC entries")
    if b0 & 0x10:
        if off + 4 > n:
            raise ValueError(f"RTP packet length {n} truncates the extension header at {off}")
        profile, words = _U16X2.unpack_from(buf, off)
        h.extension = True
        h.ext_profile = profile
        h.ext_offset = off + 4
        off += 4 + 4 * words
        if off > n:
            raise ValueError(f"RTP extension of {words} words runs past packet end ({n})")
        h.ext_end = off
    else:
        h.extension = False
        h.ext_profile = 0
        h.ext_offset = h.ext_end = off
    end = n
    h.padding = 0
    if b0 & 0x20:
        pad = buf[n - 1]
        if pad == 0 or off + pad > n:
            raise ValueError(f"RTP padding length {pad} is invalid for packet length {n}")
        h.padding = pad
        end = n - pad
    h.payload_offset = off
    h.payload_end = end
    return h


# --------------------------------------------------------------------------- extensions
#
# RFC 8285 header-extension blocks: the one error policy of every reader in roost
# (`iter_extensions`, the walker; `find_extension` and the readers on it; and
# `roost.media.extensions.ExtensionRewriter.body`, which rewrites forwarded packets).
#
# * No X bit, or a profile other than 0xBEDE (one-byte form) or 0x100X (two-byte form, any
#   appbits, §4.3): no elements. An RFC 3550 extension of another profile is opaque.
# * A 0x00 byte is padding and is skipped wherever it appears (§4.1.2).
# * One-byte form: an element with id 15 (reserved, §4.2) or with id 0 and a non-zero
#   length (§4.1.2) ends the block: its length is ignored, the elements before it count
#   and the bytes after it are not read. This is the RFC's rule, not an error.
# * An element that does not fit in the block (one-byte data running past its end, a
#   two-byte id with no length byte after it, two-byte data running past its end) is
#   malformed: the elements before it count and the rest of the block is ignored.
#   Tolerant readers (the default, and every per-packet path) just return those;
#   `iter_extensions(..., strict=True)` raises `ExtensionError`, a ValueError that carries
#   them. Nothing else is raised for any bytes `parse_header` accepted.
# * Zero-length elements of the two-byte form are valid (§4.3). Ids may repeat: the walker
#   lists every element and `find_extension` returns the first one with the id.
#
# `find_extension` and `ExtensionRewriter.body` are specialised walks: built on the list of
# `iter_extensions` a look-up was 1.5-3.5x and a rewrite 1.25-2x slower (bench/extensions.py).
# They must agree with `iter_extensions` on any block; tests/engine/test_extension_policy.py
# checks them against it on random, partly malformed blocks.


class ExtensionError(ValueError):
    """A malformed header-extension block; `elements` are the ones before the bad element."""

    def __init__(self, message: str, elements: list[tuple[int, int, int]]) -> None:
        super().__init__(message)
        self.elements = elements


def iter_extensions(buf: Buffer, h: RtpHeader, strict: bool = False) -> list[tuple[int, int, int]]:
    """(id, data offset, data length) of each header-extension element, in block order.

    The reference walker of the policy above: a malformed element ends the list (and
    raises `ExtensionError` with the elements before it when `strict`).
    """
    out: list[tuple[int, int, int]] = []
    if not h.extension:
        return out
    i, end = h.ext_offset, h.ext_end
    if h.ext_profile == ONE_BYTE_PROFILE:
        while i < end:
            b = buf[i]
            if b < 0x10:  # 0x00 padding, or id 0 with a length: the end
                if b:
                    break
                i += 1
                continue
            ext_id = b >> 4
            if ext_id == 15:
                break
            length = (b & 0x0F) + 1
            if i + 1 + length > end:
                if strict:
                    raise ExtensionError(
                        f"RTP one-byte extension id {ext_id} of {length} bytes overruns"
                        f" the extension block by {i + 1 + length - end}",
                        out,
                    )
                break
            out.append((ext_id, i + 1, length))
            i += 1 + length
    elif h.ext_profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while i < end:
            ext_id = buf[i]
            if ext_id == 0:
                i += 1
                continue
            if i + 2 > end:
                if strict:
                    raise ExtensionError(
                        f"RTP two-byte extension id {ext_id} lacks its length byte", out
                    )
                break
            length = buf[i + 1]
            if i + 2 + length > end:
                if strict:
                    raise ExtensionError(
                        f"RTP two-byte extension id {ext_id} of {length} bytes overruns"
                        f" the extension block by {i + 2 + length - end}",
                        out,
                    )
                break
            out.append((ext_id, i + 2, length))
            i += 2 + length
    return out


def find_extension(buf: Buffer, h: RtpHeader, ext_id: int) -> tuple[int, int] | None:
    """(data offset, length) of the first element `ext_id`, or None; never raises.

    Exactly the first `(ext_id, offset, length)` of `iter_extensions` (same policy), found
    without building the list and stopping at the match: the per-packet audio-level read.
    """
    if not h.extension or ext_id <= 0:
        return None
    i, end = h.ext_offset, h.ext_end
    if h.ext_profile == ONE_BYTE_PROFILE:
        while i < end:
            b = buf[i]
            if b < 0x10:  # 0x00 padding, or id 0 with a length: the end
                if b:
                    return None
                i += 1
                continue
            eid = b >> 4
            if eid == 15:
                return None
            length = (b & 0x0F) + 1
            if eid == ext_id:
                return (i + 1, length) if i + 1 + length <= end else None
            i += 1 + length  # past `end` when this element overruns: the loop ends
    elif h.ext_profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while i + 1 < end:  # an id in the block's last byte has no length byte
            eid = buf[i]
            if eid == 0:
                i += 1
                continue
            length = buf[i + 1]
            if eid == ext_id:
                return (i + 2, length) if i + 2 + length <= end else None
            i += 2 + length
    return None


def read_audio_level(buf: Buffer, h: RtpHeader, ext_id: int) -> int:
    """RFC 6464 level (0 loudest .. 127 silence) from extension `ext_id`, -1 if absent/empty."""
    found = find_extension(buf, h, ext_id)
    if found is None or not found[1]:
        return -1
    return buf[found[0]] & 0x7F


def read_sdes_extension(buf: Buffer, h: RtpHeader, ext_id: int) -> str | None:
    """Text of an SDES extension (mid, rid, repaired-rid) or None."""
    found = find_extension(buf, h, ext_id)
    if found is None:
        return None
    off, length = found
    return bytes(buf[off : off + length]).decode("ascii", "replace")


def build_extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """4-byte extension header plus elements, one-byte form when possible, zero-padded."""
    if not elements:
        return b""
    one_byte = all(1 <= i <= 14 and 1 <= len(d) <= 16 for i, d in elements)
    if one_byte:
        out = bytearray(b"\xbe\xde\x00\x00")
        for ext_id, data in elements:
            out.append((ext_id << 4) | (len(data) - 1))
            out += data
    else:
        out = bytearray(b"\x10\x00\x00\x00")
        for ext_id, data in elements:
            if not 1 <= ext_id <= 255 or len(data) > 255:
                raise ValueError(f"RTP extension id {ext_id} / length {len(data)} out of range")
            out.append(ext_id)
            out.append(len(data))
            out += data
    out += b"\x00" * (-len(out) % 4)
    _U16.pack_into(out, 2, (len(out) - 4) // 4)
    return bytes(out)


def rewrite_header(
    buf: bytearray | memoryview,
    ssrc: int,
    seq: int,
    ts: int,
    payload_type: int = -1,
    marker: int = -1,
) -> None:
    """Overwrite sequence number, timestamp and SSRC (and optionally PT/marker) in place."""
    _SEQ_TS_SSRC.pack_into(buf, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    if payload_type >= 0 or marker >= 0:
        b1 = buf[1]
        if payload_type >= 0:
            b1 = (b1 & 0x80) | payload_type
        if marker >= 0:
            b1 = (b1 & 0x7F) | (0x80 if marker else 0)
        buf[1] = b1


def abs_send_time(now: float) -> bytes:
    """3-byte abs-send-time (6.18 fixed point seconds) for `now` in seconds."""
    v = int(now * 262144.0) & 0xFFFFFF
    return bytes(((v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF))


# --------------------------------------------------------------------------- RTX


def wrap_rtx(buf: Buffer, h: RtpHeader, rtx_ssrc: int, rtx_seq: int, rtx_pt: int) -> bytes:
    """RFC 4588 retransmission packet: original header rewritten, OSN prepended to payload."""
    head = bytearray(buf[: h.payload_offset])
    head[0] &= 0xDF  # padding dropped
    rewrite_header(head, rtx_ssrc, rtx_seq, h.timestamp, rtx_pt)
    return b"".join(
        (head, _U16.pack(h.sequence_number), memoryview(buf)[h.payload_offset : h.payload_end])
    )


def unwrap_rtx(buf: Buffer, h: RtpHeader, ssrc: int, payload_type: int) -> bytes:
    """Recover the original packet from an RTX packet (restores OSN, SSRC and PT)."""
    if h.payload_size < 2:
        raise ValueError(f"RTX payload of {h.payload_size} bytes has no original sequence number")
    osn = (buf[h.payload_offset] << 8) | buf[h.payload_offset + 1]
    head = bytearray(buf[: h.payload_offset])
    head[0] &= 0xDF
    rewrite_header(head, ssrc, osn, h.timestamp, payload_type)
    return b"".join((head, memoryview(buf)[h.payload_offset + 2 : h.payload_end]))


# --------------------------------------------------------------------------- codecs


class Vp8Descriptor:
    """VP8 payload descriptor (RFC 7741 §4.2); positions are relative to the payload start."""

    __slots__ = (
        "keyframe",
        "keyidx",
        "keyidx_pos",
        "partition_index",
        "picture_id",
        "picture_id_bits",
        "picture_id_pos",
        "size",
        "start",
        "tid",
        "tid_pos",
        "tl0picidx",
        "tl0picidx_pos",
        "y",
    )

    def __init__(self) -> None:
        self.start = False  # S bit
        self.partition_index = 0
        self.picture_id = -1
        self.picture_id_bits = 0  # 0 (absent), 7 or 15
        self.picture_id_pos = -1
        self.tl0picidx = -1
        self.tl0picidx_pos = -1
        self.tid = -1
        self.y = False
        self.keyidx = -1
        self.tid_pos = -1
        self.keyidx_pos = -1
        self.size = 1
        self.keyframe = False


def parse_vp8(buf: Buffer, off: int, end: int) -> Vp8Descriptor:
    """Parse the VP8 payload descriptor at buf[off:end]; ValueError when truncated."""
    if off >= end:
        raise ValueError("VP8 payload is empty")
    d = Vp8Descriptor()
    b = buf[off]
    d.start = bool(b & 0x10)
    d.partition_index = b & 0x07
    i = off + 1
    if b & 0x80:
        if i >= end:
            raise ValueError("VP8 descriptor truncated before the X byte")
        x = buf[i]
        i += 1
        if x & 0x80:
            if i >= end:
                raise ValueError("VP8 descriptor truncated in the picture id")
            d.picture_id_pos = i - off
            if buf[i] & 0x80:
                if i + 1 >= end:
                    raise ValueError("VP8 descriptor truncated in the 15-bit picture id")
                d.picture_id = ((buf[i] & 0x7F) << 8) | buf[i + 1]
                d.picture_id_bits = 15
                i += 2
            else:
                d.picture_id = buf[i]
                d.picture_id_bits = 7
                i += 1
        if x & 0x40:
            if i >= end:
                raise ValueError("VP8 descriptor truncated in TL0PICIDX")
            d.tl0picidx_pos = i - off
            d.tl0picidx = buf[i]
            i += 1
        if x & 0x30:
            if i >= end:
                raise ValueError("VP8 descriptor truncated in TID/KEYIDX")
            tk = buf[i]
            if x & 0x20:
                d.tid = tk >> 6
                d.y = bool(tk & 0x20)
                d.tid_pos = i - off
            if x & 0x10:
                d.keyidx = tk & 0x1F
                d.keyidx_pos = i - off
            i += 1
    d.size = i - off
    d.keyframe = d.start and d.partition_index == 0 and i < end and not buf[i] & 0x01
    return d


def rewrite_vp8(
    buf: bytearray, payload_off: int, d: Vp8Descriptor, picture_id: int, tl0picidx: int, keyidx: int
) -> None:
    """Write munged picture id / TL0PICIDX / KEYIDX into the descriptor at `payload_off`."""
    if d.picture_id_bits == 15:
        p = payload_off + d.picture_id_pos
        buf[p] = 0x80 | ((picture_id >> 8) & 0x7F)
        buf[p + 1] = picture_id & 0xFF
    elif d.picture_id_bits == 7:
        buf[payload_off + d.picture_id_pos] = picture_id & 0x7F
    if d.tl0picidx_pos >= 0:
        buf[payload_off + d.tl0picidx_pos] = tl0picidx & 0xFF
    if d.keyidx_pos >= 0:
        p = payload_off + d.keyidx_pos
        buf[p] = (buf[p] & 0xE0) | (keyidx & 0x1F)


H264_IDR = 5
H264_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def h264_is_keyframe(buf: Buffer, off: int, end: int) -> bool:
    """True if the H.264 payload carries an SPS or starts an IDR slice (single, STAP-A, FU-A)."""
    if off >= end:
        return False
    nal = buf[off] & 0x1F
    if nal == H264_SPS or nal == H264_IDR:
        return True
    if nal == H264_STAP_A:
        i = off + 1
        while i + 2 < end:
            size = (buf[i] << 8) | buf[i + 1]
            i += 2
            if size == 0 or i + size > end:
                return False
            t = buf[i] & 0x1F
            if t == H264_SPS or t == H264_IDR:
                return True
            i += size
        return False
    if nal == H264_FU_A and off + 1 < end:
        fu = buf[off + 1]
        t = fu & 0x1F
        return bool(fu & 0x80) and (t == H264_SPS or t == H264_IDR)
    return False


_OPUS_FRAME_MS = (
    10, 20, 40, 60, 10, 20, 40, 60, 10, 20, 40, 60,  # SILK NB/MB/WB
    10, 20, 10, 20,  # hybrid SWB/FB
    2.5, 5, 10, 20, 2.5, 5, 10, 20, 2.5, 5, 10, 20, 2.5, 5, 10, 20,  # CELT
)  # fmt: skip


def opus_duration_ms(buf: Buffer, off: int, end: int) -> float:
    """Audio duration of an Opus packet from its TOC byte (RFC 6716 §3.1); 0 if empty."""
    if off >= end:
        return 0.0
    toc = buf[off]
    frame = _OPUS_FRAME_MS[toc >> 3]
    code = toc & 0x03
    if code == 0:
        return float(frame)
    if code in (1, 2):
        return frame * 2.0
    if off + 1 >= end:
        raise ValueError("Opus code-3 packet lacks its frame count byte")
    return frame * float(buf[off + 1] & 0x3F)


def parse_red(buf: Buffer, off: int, end: int) -> list[tuple[int, int, int, int]]:
    """RFC 2198 blocks as (pt, timestamp offset, data offset, data length), primary last."""
    headers: list[tuple[int, int, int]] = []
    i = off
    while True:
        if i >= end:
            raise ValueError("RED payload truncated in its block headers")
        b = buf[i]
        if not b & 0x80:
            primary_pt = b & 0x7F
            i += 1
            break
        if i + 4 > end:
            raise ValueError("RED block header truncated")
        ts_off = (buf[i + 1] << 6) | (buf[i + 2] >> 2)
        length = ((buf[i + 2] & 0x03) << 8) | buf[i + 3]
        headers.append((b & 0x7F, ts_off, length))
        i += 4
    blocks: list[tuple[int, int, int, int]] = []
    for pt, ts_off, length in headers:
        if i + length > end:
            raise ValueError(f"RED redundant block of {length} bytes overruns the payload")
        blocks.append((pt, ts_off, i, length))
        i += length
    blocks.append((primary_pt, 0, i, end - i))
    return blocks


def red_primary(buf: Buffer, off: int, end: int) -> tuple[int, int, int]:
    """(payload type, data offset, data end) of the RED primary block, without a list."""
    i = off
    skip = 0
    while True:
        if i >= end:
            raise ValueError("RED payload truncated in its block headers")
        b = buf[i]
        if not b & 0x80:
            i += 1
            break
        if i + 4 > end:
            raise ValueError("RED block header truncated")
        skip += ((buf[i + 2] & 0x03) << 8) | buf[i + 3]
        i += 4
    start = i + skip
    if start > end:
        raise ValueError("RED redundant blocks overrun the payload")
    return b & 0x7F, start, end

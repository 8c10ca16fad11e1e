"""RTP test helpers: the byte-for-byte packet object and readers roost's engine does not use.

`RtpPacket` is an aiortc-style dataclass over `roost.media.rtp`'s offset functions, for
round-trip and interop tests; `read_twcc_seq` reads a transport-wide sequence number.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from roost.media.rtp import (
    RTP_HEADER_SIZE,
    Buffer,
    RtpHeader,
    build_extension_block,
    find_extension,
    iter_extensions,
    parse_header,
)

_FIXED = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")


def read_twcc_seq(buf: Buffer, h: RtpHeader, ext_id: int) -> int:
    """Transport-wide sequence number from extension `ext_id`, or -1 if absent."""
    found = find_extension(buf, h, ext_id)
    if found is None or found[1] < 2:
        return -1
    off = found[0]
    return (buf[off] << 8) | buf[off + 1]


@dataclass
class RtpPacket:
    """Whole RTP packet that re-serialises byte for byte (aiortc-style wire type)."""

    payload_type: int = 0
    marker: bool = False
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    csrc: list[int] = field(default_factory=list)
    extension_profile: int = 0
    extension_data: bytes | None = None  # raw element bytes (None = no X bit)
    payload: bytes = b""
    padding: bytes = b""  # includes the trailing count byte when present

    @classmethod
    def parse(cls, data: Buffer) -> RtpPacket:
        """Parse a packet; ValueError on truncation or bad version."""
        h = parse_header(data)
        csrc = list(struct.unpack_from(f"!{h.csrc_count}I", data, RTP_HEADER_SIZE))
        return cls(
            payload_type=h.payload_type,
            marker=h.marker,
            sequence_number=h.sequence_number,
            timestamp=h.timestamp,
            ssrc=h.ssrc,
            csrc=csrc,
            extension_profile=h.ext_profile,
            extension_data=bytes(data[h.ext_offset : h.ext_end]) if h.extension else None,
            payload=bytes(data[h.payload_offset : h.payload_end]),
            padding=bytes(data[h.payload_end :]),
        )

    def __bytes__(self) -> bytes:
        ext = self.extension_data
        if ext is not None and len(ext) % 4:
            raise ValueError("RTP extension data must be a multiple of 4 bytes")
        b0 = (
            0x80 | len(self.csrc) | (0x20 if self.padding else 0) | (0x10 if ext is not None else 0)
        )
        parts = [
            _FIXED.pack(
                b0,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            ),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if ext is not None:
            parts.append(_U16X2.pack(self.extension_profile, len(ext) // 4))
            parts.append(ext)
        parts.append(self.payload)
        parts.append(self.padding)
        return b"".join(parts)

    @property
    def extensions(self) -> list[tuple[int, bytes]]:
        """Decoded (id, data) header extension elements; ExtensionError if malformed."""
        if self.extension_data is None:
            return []
        raw = bytes(self)
        h = parse_header(raw)
        return [(i, raw[o : o + n]) for i, o, n in iter_extensions(raw, h, strict=True)]

    def set_extensions(self, elements: list[tuple[int, bytes]]) -> None:
        """Replace the extension block with `elements` (one-byte form when possible)."""
        block = build_extension_block(elements)
        if not block:
            self.extension_profile, self.extension_data = 0, None
            return
        self.extension_profile = _U16.unpack_from(block, 0)[0]
        self.extension_data = block[4:]

"""Header-extension rewriting for forwarded packets (RFC 8285 one- and two-byte forms).

`ExtensionRewriter` maps a publisher's extension ids onto a subscriber's, drops the rest,
adds a fresh abs-send-time and memoises its output per packet so the down-tracks of one
fan-out that share an id mapping (and a mid) build the block once.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from roost.media.rtp import ONE_BYTE_PROFILE, TWO_BYTE_PROFILE, Buffer, RtpHeader, abs_send_time

_EXT_HDR = struct.Struct("!HH")


class ExtensionRewriter:
    """Maps publisher header-extension ids onto a subscriber's; shareable between down-tracks.

    Elements whose id is not in `mapping` are dropped (rid, transport-cc, mid...). When
    `abs_send_time_id` is set an abs-send-time element is generated. The encoded block of
    the last packet is memoised, so N down-tracks sharing one rewriter pay for it once.
    """

    def __init__(
        self, mapping: Mapping[int, int], abs_send_time_id: int = 0, two_byte: bool = False
    ) -> None:
        self.table = [0] * 256
        for src, dst in mapping.items():
            if not 1 <= src <= 255 or not 0 <= dst <= 255:
                raise ValueError(f"extension id mapping {src}->{dst} out of range")
            self.table[src] = dst
        self.abs_send_time_id = abs_send_time_id
        self.two_byte = two_byte or abs_send_time_id > 14 or any(d > 14 for d in mapping.values())
        self._memo_pkt: object = None
        self._memo_body = b""
        self._block_pkt: object = None
        self._block_tail = b""
        self._block = b""

    def body(self, pkt: Buffer, h: RtpHeader, now: float) -> bytes:
        """Encoded elements (no 4-byte header, no padding) for this packet.

        A specialised walk with the policy of `roost.media.rtp.iter_extensions` (padding
        skipped, one-byte id 15 or id 0 with a length ends the block, a malformed element
        ends it too, the elements before it are kept), never raising: the mapped elements
        of that list, in order. Two-byte elements of 0 or more than 16 bytes are dropped
        when this rewriter writes the one-byte form.
        """
        if pkt is self._memo_pkt:
            return self._memo_body
        out = bytearray()
        table = self.table
        two = self.two_byte
        if h.extension:
            i, end = h.ext_offset, h.ext_end
            if h.ext_profile == ONE_BYTE_PROFILE:
                while i < end:
                    b = pkt[i]
                    if b < 0x10:  # 0x00 padding, or id 0 with a length: the end
                        if b:
                            break
                        i += 1
                        continue
                    eid = b >> 4
                    if eid == 15:
                        break
                    length = (b & 0x0F) + 1
                    if i + 1 + length > end:
                        break
                    new = table[eid]
                    if new:
                        if two:
                            out.append(new)
                            out.append(length)
                        else:
                            out.append((new << 4) | (length - 1))
                        out += pkt[i + 1 : i + 1 + length]
                    i += 1 + length
            elif h.ext_profile & 0xFFF0 == TWO_BYTE_PROFILE:
                while i + 1 < end:  # an id in the block's last byte has no length byte
                    eid = pkt[i]
                    if eid == 0:
                        i += 1
                        continue
                    length = pkt[i + 1]
                    if i + 2 + length > end:
                        break
                    new = table[eid]
                    if new:
                        if two:
                            out.append(new)
                            out.append(length)
                            out += pkt[i + 2 : i + 2 + length]
                        elif 1 <= length <= 16:
                            out.append((new << 4) | (length - 1))
                            out += pkt[i + 2 : i + 2 + length]
                    i += 2 + length
        if self.abs_send_time_id:
            if two:
                out.append(self.abs_send_time_id)
                out.append(3)
            else:
                out.append((self.abs_send_time_id << 4) | 2)
            out += abs_send_time(now)
        body = bytes(out)
        if isinstance(pkt, bytes):
            self._memo_pkt = pkt
            self._memo_body = body
        return body

    def packet_block(self, pkt: Buffer, h: RtpHeader, now: float, tail: bytes,
                     head: bytes = b"") -> bytes:
        """The whole extension block for this packet: a down-track's own `head` (the
        reserved transport-cc element, which must come first), the mapped elements, then
        its `tail` (its mid).

        Memoised on (packet, head + tail): down-tracks whose subscribers gave the track the
        same ids and mid share one block, so a fan-out builds it once.
        """
        own = head + tail if head else tail
        if pkt is self._block_pkt and own == self._block_tail:
            return self._block
        body = self.body(pkt, h, now)
        block = self.block(b"".join((head, body, tail)) if own else body)
        if isinstance(pkt, bytes):
            self._block_pkt = pkt
            self._block_tail = own
            self._block = block
        return block

    def element(self, ext_id: int, data: bytes) -> bytes:
        """Encode one static element (e.g. the subscriber's mid) in this rewriter's form."""
        if self.two_byte:
            return bytes((ext_id, len(data))) + data
        if not 1 <= ext_id <= 14 or not 1 <= len(data) <= 16:
            raise ValueError(f"extension {ext_id} of {len(data)} bytes needs the two-byte form")
        return bytes(((ext_id << 4) | (len(data) - 1),)) + data

    def block(self, body: bytes) -> bytes:
        """Header + body + zero padding to a 32-bit boundary; b"" when empty."""
        if not body:
            return b""
        pad = -len(body) % 4
        profile = 0x1000 if self.two_byte else ONE_BYTE_PROFILE
        return b"".join((_EXT_HDR.pack(profile, (len(body) + pad) >> 2), body, b"\x00" * pad))

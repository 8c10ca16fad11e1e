"""The client-facing sockets: TURN over UDP datagrams and over TCP/TLS streams.

Streams carry STUN messages and ChannelData back to back; ChannelData is padded to a
multiple of 4 bytes over TCP (RFC 8656 §12.5). Each complete frame goes to the
`PacketHandler` exactly as a UDP datagram would.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Protocol, cast

from roost.turn.allocation import Address, ClientLink, LinkKey

logger = logging.getLogger("roost.turn")

STREAM_WRITE_LIMIT = 1 << 20  # bytes queued to a slow TCP client before relayed data is dropped


class PacketHandler(Protocol):
    def handle(self, data: bytes, link: ClientLink) -> None: ...

    def count(self, name: str, n: int = 1) -> None: ...

    def stream_opened(self, link: StreamLink) -> bool: ...

    def link_closed(self, link: StreamLink) -> None: ...


def padded(data: bytes) -> bytes:
    rest = len(data) % 4
    return data + bytes(4 - rest) if rest else data


class UdpLink:
    """A client address on the UDP listener."""

    __slots__ = ("addr", "key", "name", "transport")

    def __init__(self, transport: asyncio.DatagramTransport, addr: Address) -> None:
        self.name = "udp"
        self.transport = transport
        self.addr = addr
        self.key: LinkKey = ("udp", addr)

    def send(self, data: bytes) -> None:
        self.transport.sendto(data, self.addr)


class UdpListener(asyncio.DatagramProtocol):
    """The UDP listener: every datagram is one STUN message or ChannelData."""

    def __init__(self, handler: PacketHandler, max_message_size: int) -> None:
        self.handler = handler
        self.max_message_size = max_message_size
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.transport is None:
            return
        if len(data) > self.max_message_size:
            self.handler.count("oversized")
            return
        self.handler.handle(data, UdpLink(self.transport, addr[:2]))

    def error_received(self, exc: Exception) -> None:
        logger.debug("turn udp error", extra={"error": repr(exc)})


class StreamLink(asyncio.Protocol):
    """One TCP or TLS client connection, framing its byte stream into messages."""

    def __init__(self, handler: PacketHandler, name: str, max_message_size: int) -> None:
        self.handler = handler
        self.name = name
        self.max_message_size = max_message_size
        self.addr: Address = ("", 0)
        self.key: LinkKey = (name, self.addr)
        self.opened = 0.0
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.addr = (str(peer[0]), int(peer[1]))
        self.key = (self.name, self.addr)
        self.opened = asyncio.get_running_loop().time()
        if not self.handler.stream_opened(self):
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        buf = self._buffer
        pos = 0
        while len(buf) - pos >= 4:
            kind = buf[pos] >> 6
            (length,) = struct.unpack_from("!H", buf, pos + 2)
            if kind == 1:
                size = 4 + length + (-length % 4)
            elif kind == 0:
                size = 20 + length
            else:
                self._fail("bad frame type")
                return
            if size > self.max_message_size:
                self._fail("frame too large")
                return
            if len(buf) - pos < size:
                break
            self.handler.handle(bytes(buf[pos : pos + size]), self)
            pos += size
            if self.transport is None or self.transport.is_closing():
                return
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._buffer.clear()
        self.handler.link_closed(self)

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > STREAM_WRITE_LIMIT:
            self.handler.count("dropped_backpressure")
            return
        transport.write(padded(data))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _fail(self, reason: str) -> None:
        self.handler.count("malformed")
        logger.debug("turn stream closed", extra={"client": self.addr, "reason": reason})
        self._buffer.clear()
        if self.transport is not None:
            self.transport.abort()

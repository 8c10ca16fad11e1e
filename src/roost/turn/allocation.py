"""One TURN allocation: its relay socket, permissions, channel bindings and rate limit."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

Address = tuple[str, int]
LinkKey = tuple[str, Address]

MAX_BIND_FAILURES = 64
PERMISSION_LIFETIME = 300.0
CHANNEL_LIFETIME = 600.0
CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x4FFF


class ClientLink(Protocol):
    """Where a client is: the transport name and address its messages came from."""

    name: str  # "udp", "tcp" or "tls"
    addr: Address
    key: LinkKey

    def send(self, data: bytes) -> None: ...


class TokenBucket:
    """Bytes per second with one second of burst; `rate` 0 means unlimited."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.capacity = float(max(rate, 1500))
        self._tokens = self.capacity
        self._stamp = time.monotonic()

    def take(self, size: int) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < size:
            return False
        self._tokens -= size
        return True


class RelayProtocol(asyncio.DatagramProtocol):
    """The relay socket's protocol: peer datagrams go to the allocation's callback."""

    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self._on_datagram = on_datagram

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._on_datagram(data, addr[:2])

    def error_received(self, exc: Exception) -> None:  # ICMP errors from peers: ignore
        pass


@dataclass
class Allocation:
    """State of one client 5-tuple's allocation (RFC 8656 §2.2)."""

    key: LinkKey
    link: ClientLink
    username: str
    user: str
    integrity_key: bytes
    relay_port: int
    relayed_address: Address
    expires: float
    bandwidth: int
    allocate_txid: bytes = b""
    allocate_response: bytes | None = None
    protocol: RelayProtocol | None = None
    permissions: dict[str, float] = field(default_factory=dict)
    channels: dict[int, Address] = field(default_factory=dict)
    channel_expiry: dict[int, float] = field(default_factory=dict)
    peer_channels: dict[Address, int] = field(default_factory=dict)
    bytes_out: int = 0
    bytes_in: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self.upstream = TokenBucket(self.bandwidth)
        self.downstream = TokenBucket(self.bandwidth)

    def permitted(self, ip: str, now: float) -> bool:
        expiry = self.permissions.get(ip)
        return expiry is not None and expiry > now

    def permit(self, ip: str, now: float) -> None:
        self.permissions[ip] = now + PERMISSION_LIFETIME

    def bind_channel(self, number: int, peer: Address, now: float) -> bool:
        """Bind or refresh `number` ↔ `peer`; False if either is bound to something else."""
        if self.channels.get(number, peer) != peer:
            return False
        if self.peer_channels.get(peer, number) != number:
            return False
        self.channels[number] = peer
        self.peer_channels[peer] = number
        self.channel_expiry[number] = now + CHANNEL_LIFETIME
        self.permit(peer[0], now)
        return True

    def sweep(self, now: float) -> None:
        """Drop expired permissions and channel bindings."""
        for ip in [ip for ip, expiry in self.permissions.items() if expiry <= now]:
            del self.permissions[ip]
        for number in [n for n, expiry in self.channel_expiry.items() if expiry <= now]:
            del self.channel_expiry[number]
            peer = self.channels.pop(number)
            self.peer_channels.pop(peer, None)

    def send_to_peer(self, data: bytes, peer: Address, now: float) -> bool:
        """Relay client data out of the relay socket; False when dropped."""
        transport = self.protocol.transport if self.protocol else None
        if transport is None or not self.permitted(peer[0], now):
            self.dropped += 1
            return False
        if not self.upstream.take(len(data)):
            self.dropped += 1
            return False
        transport.sendto(data, peer)
        self.bytes_out += len(data)
        return True

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()


def bind_relay_socket(
    host: str, family: int, start: int, end: int, in_use: set[int]
) -> socket.socket | None:
    """A non-blocking UDP socket on a free port of [start, end] (any port when start is 0)."""
    size = end - start + 1
    if start <= 0 or size <= 0:
        candidates = [0]
    else:
        offset = random.randrange(size)
        candidates = [start + (offset + i) % size for i in range(size)]
    failures = 0
    for port in candidates:
        if port and port in in_use:
            continue
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            failures += 1
            if failures >= MAX_BIND_FAILURES:
                break
            continue
        sock.setblocking(False)
        return sock
    return None

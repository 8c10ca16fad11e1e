"""Shared ICE sockets: one UDP port (`rtc.udp_port`) and one ICE-TCP port (`rtc.tcp_port`).

Every peer connection of the process uses the same UDP socket per bind address and the same
TCP listener. Packets find their connection as livekit-server/pion's muxes do:

- a STUN request by the local half of its USERNAME (`local-ufrag:remote-ufrag`), and its
  source address is then learnt for that connection (on every authenticated check, so an
  ICE restart or a NAT rebinding moves the address to whoever the client talks to now);
- a STUN response by the transaction id roost sent the request with;
- everything else (DTLS, SRTP, SRTCP) by source address: one dict look-up, then the same
  SRTP fast lane as a per-connection socket.

ICE-TCP (RFC 6544, passive candidates only) frames every packet with a 2-byte length
(RFC 4571); a TCP connection belongs to the connection whose ufrag its first check names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol

from aioice import Candidate, stun
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import StunProtocol

log = logging.getLogger(__name__)

RECV_BUFFER_SIZE = 4 * 1024 * 1024
SEND_BUFFER_SIZE = 4 * 1024 * 1024
STUN_HEADER = 20
STUN_MAGIC = b"\x21\x12\xa4\x42"
USERNAME = 0x0006
MAX_FRAME = 0xFFFF
TCP_FIRST_CHECK_TIMEOUT = 10.0  # seconds a TCP connection may stay silent or unknown
TCP_WRITE_LIMIT = 1024 * 1024  # bytes queued to a slow ICE-TCP peer before packets drop
MAX_ADDRESSES_PER_PROTOCOL = 16  # learnt remote addresses kept per connection and socket
MAX_PENDING_TRANSACTIONS = 4096
TCP_LOCAL_PREFERENCE = 4096  # far below UDP host candidates (65535 - index)

Address = tuple[str, int]


def stun_local_ufrag(data: bytes) -> str | None:
    """The local ufrag of a STUN Binding request's USERNAME, without parsing the rest."""
    if len(data) < STUN_HEADER or data[0] > 1 or data[4:8] != STUN_MAGIC:
        return None
    end = min(len(data), STUN_HEADER + int.from_bytes(data[2:4], "big"))
    pos = STUN_HEADER
    while pos + 4 <= end:
        kind = int.from_bytes(data[pos : pos + 2], "big")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if kind == USERNAME:
            value = data[pos + 4 : pos + 4 + length]
            local, sep, _ = value.partition(b":")
            if not sep:
                return None
            try:
                return local.decode("ascii")
            except UnicodeDecodeError:
                return None
        pos += 4 + length + (-length % 4)
    return None


def is_stun(data: bytes) -> bool:
    return len(data) >= STUN_HEADER and data[0] < 2 and data[4:8] == STUN_MAGIC


class MuxStats:
    """Counters of what the shared sockets dropped (exported in logs and tests)."""

    def __init__(self) -> None:
        self.unknown_ufrag = 0
        self.unknown_address = 0
        self.tcp_refused = 0
        self.malformed = 0


class Muxable(Protocol):
    """What the mux needs of an ICE connection (roost.media.ice.HostConnection)."""

    @property
    def local_username(self) -> str: ...
    @property
    def local_password(self) -> str: ...

    media_handler: Callable[[bytes], None] | None
    _protocols: list[StunProtocol]
    _closing: bool


class MuxedProtocol(StunProtocol):
    """An aioice socket protocol for one connection on a shared UDP socket."""

    def __init__(self, receiver: Any, socket_: MuxSocket, candidate: Candidate) -> None:
        super().__init__(receiver)
        self.local_candidate = candidate
        self._socket = socket_
        self.addresses: list[Address] = []
        assert socket_.transport is not None
        self.transport = socket_.transport  # sendto goes straight to the shared socket
        self._closed_once = False

    async def request(self, request: stun.Message, addr: Address,
                      integrity_key: bytes | None = None,
                      retransmissions: int | None = None) -> tuple[stun.Message, Address]:
        tid = request.transaction_id
        self._socket.expect_response(tid, self)
        try:
            return await super().request(request, addr, integrity_key, retransmissions)
        finally:
            self._socket.forget_response(tid, self)

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        try:
            super().datagram_received(data, addr)
        except Exception:  # aioice's parser lets struct.error through on hostile STUN
            self._socket.mux.stats.malformed += 1

    def learn(self, addr: Address) -> None:
        if addr in self.addresses:
            return
        self.addresses.append(addr)
        if len(self.addresses) > MAX_ADDRESSES_PER_PROTOCOL:
            self._socket.forget_address(self.addresses.pop(0), self)

    async def close(self) -> None:
        if self._closed_once:
            return
        self._closed_once = True
        self._socket.detach(self)
        self.connection_lost(None)


class MuxSocket(asyncio.DatagramProtocol):
    """One shared UDP socket: STUN requests by ufrag, responses by transaction, rest by address."""

    def __init__(self, mux: IceMux, host: str) -> None:
        self.mux = mux
        self.host = host
        self.transport: asyncio.DatagramTransport | None = None
        self._by_address: dict[Address, MuxedProtocol] = {}
        self._by_transaction: dict[bytes, MuxedProtocol] = {}
        self._protocols: dict[int, MuxedProtocol] = {}  # id(connection) → protocol
        self._v6 = ":" in host

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # Whatever one connection's packet does, the socket everyone shares must live on
        # (an exception here would make the event loop close the transport).
        try:
            if self._v6:
                addr = (addr[0], addr[1])  # IPv6 sockets report a 4-tuple
            first = data[0] if data else 0
            if first > 1:  # not STUN: DTLS (20..63) or SRTP/SRTCP (128..191)
                proto = self._by_address.get(addr)
                if proto is None:
                    self.mux.stats.unknown_address += 1
                    return
                if 127 < first < 192:
                    handler = proto.receiver.media_handler  # type: ignore[attr-defined]
                    if handler is not None:
                        handler(data)
                        return
                proto.datagram_received(data, addr)
                return
            self._stun_received(data, addr)
        except Exception:
            self.mux.stats.malformed += 1
            log.debug("ice mux %s: a datagram from %s raised", self.host, addr, exc_info=True)

    def _stun_received(self, data: bytes, addr: Address) -> None:
        if not is_stun(data):
            return
        if data[0] == 0 and data[1] == 1:  # a Binding request: route by ufrag
            ufrag = stun_local_ufrag(data)
            conn = self.mux.connection(ufrag) if ufrag is not None else None
            if conn is None:
                self.mux.stats.unknown_ufrag += 1
                return
            assert conn is not None
            proto = self._protocols.get(id(conn))
            if proto is None:
                return
            # Learn the address before aioice answers; a check that fails authentication
            # is answered with 401 and does not move the address.
            if self._by_address.get(addr) is not proto and self._authentic(data, conn):
                self._by_address[addr] = proto
                proto.learn(addr)
            proto.datagram_received(data, addr)
            return
        proto = self._by_transaction.get(data[8:20])
        if proto is None:
            proto = self._by_address.get(addr)
        if proto is not None:
            proto.datagram_received(data, addr)

    @staticmethod
    def _authentic(data: bytes, conn: Muxable) -> bool:
        try:
            message = stun.parse_message(data)
            return bool(message.check_message_integrity(conn.local_password.encode("utf8")))
        except Exception:  # aioice's parser raises more than ValueError on hostile input
            return False

    def error_received(self, exc: Exception) -> None:
        log.debug("ice mux %s: %s", self.host, exc)

    # -- connections ---------------------------------------------------------------
    def attach(self, conn: Muxable, candidate: Candidate) -> MuxedProtocol:
        proto = MuxedProtocol(conn, self, candidate)
        self._protocols[id(conn)] = proto
        return proto

    def detach(self, proto: MuxedProtocol) -> None:
        if self._protocols.get(id(proto.receiver)) is proto:
            del self._protocols[id(proto.receiver)]
        for addr in proto.addresses:
            self.forget_address(addr, proto)
        proto.addresses.clear()
        for tid in [t for t, p in self._by_transaction.items() if p is proto]:
            del self._by_transaction[tid]

    def forget_address(self, addr: Address, proto: MuxedProtocol) -> None:
        if self._by_address.get(addr) is proto:
            del self._by_address[addr]

    def expect_response(self, tid: bytes, proto: MuxedProtocol) -> None:
        if len(self._by_transaction) < MAX_PENDING_TRANSACTIONS:
            self._by_transaction[tid] = proto

    def forget_response(self, tid: bytes, proto: MuxedProtocol) -> None:
        if self._by_transaction.get(tid) is proto:
            del self._by_transaction[tid]

    @property
    def connection_count(self) -> int:
        return len(self._protocols)


class TcpIceProtocol(StunProtocol):
    """An aioice socket protocol over one ICE-TCP connection (RFC 4571 framing)."""

    def __init__(self, receiver: Any, stream: IceTcpStream, candidate: Candidate) -> None:
        super().__init__(receiver)
        self.local_candidate = candidate
        self.stream = stream
        self.transport = stream  # type: ignore[assignment]  # sendto() frames and writes
        self._closed_once = False

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        try:
            super().datagram_received(data, addr)
        except Exception:  # a hostile frame must not end the stream's reader
            self.stream.mux.stats.malformed += 1

    async def close(self) -> None:
        if self._closed_once:
            return
        self._closed_once = True
        self.stream.close()
        self.connection_lost(None)


class IceTcpStream(asyncio.Protocol):
    """One accepted ICE-TCP connection: frames in, frames out, bound to a connection by ufrag."""

    def __init__(self, mux: IceMux) -> None:
        self.mux = mux
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)
        self._buffer = bytearray()
        self._proto: TcpIceProtocol | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._timer = asyncio.get_running_loop().call_later(
            TCP_FIRST_CHECK_TIMEOUT, self._silent)
        self.mux.streams.add(self)

    def _silent(self) -> None:
        if self._proto is None:
            self.mux.stats.tcp_refused += 1
            self.close()

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            length = (buf[pos] << 8) | buf[pos + 1]
            if end - pos - 2 < length:
                break
            frame = bytes(buf[pos + 2 : pos + 2 + length])
            pos += 2 + length
            self._frame(frame)
            if self.transport is None:
                return
        if pos:
            del buf[:pos]
        if len(buf) > MAX_FRAME + 2:
            self.close()

    def _frame(self, frame: bytes) -> None:
        if not frame:
            return
        proto = self._proto
        first = frame[0]
        if first < 2:
            if frame[0] == 0 and frame[1:2] == b"\x01":
                ufrag = stun_local_ufrag(frame)
                conn = self.mux.connection(ufrag) if ufrag is not None else None
                if conn is None:
                    self.mux.stats.unknown_ufrag += 1
                    if proto is None:
                        self.close()
                    return
                if proto is None or not _same(proto.receiver, conn):
                    proto = self._bind(conn)
            if proto is not None:
                proto.datagram_received(frame, self.peer)
            return
        if proto is None:
            self.close()
            return
        if 127 < first < 192:
            handler = proto.receiver.media_handler  # type: ignore[attr-defined]
            if handler is not None:
                handler(frame)
                return
        proto.datagram_received(frame, self.peer)

    def _bind(self, conn: Muxable) -> TcpIceProtocol:
        candidate = self.mux.tcp_candidate_of(conn)
        proto = TcpIceProtocol(conn, self, candidate)
        conn._protocols.append(proto)
        self._proto = proto
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return proto

    # what aioice and the media fast lane call on `protocol.transport`
    def sendto(self, data: bytes, addr: Any = None) -> None:
        transport = self.transport
        if transport is None or len(data) > MAX_FRAME:
            return
        if transport.get_write_buffer_size() > TCP_WRITE_LIMIT:
            return  # a slow peer loses packets, as it would on UDP
        transport.write(struct.pack("!H", len(data)) + data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            transport, self.transport = self.transport, None
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.mux.streams.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        proto = self._proto
        if proto is not None:
            with contextlib.suppress(ValueError):
                proto.receiver._protocols.remove(proto)
            proto.connection_lost(exc)


class IceMux:
    """The process's shared ICE endpoints and the ufrag → connection registry."""

    def __init__(self, *, addresses: list[str], udp_port: int = 0, tcp_port: int = 0,
                 advertised: list[str] | None = None) -> None:
        self.addresses = addresses  # concrete bind addresses
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        # Extra addresses to announce (1:1 NAT: rtc.node_ip / use_external_ip); they reach
        # the first non-loopback bind address.
        self.advertised = list(advertised or [])
        self.sockets: list[MuxSocket] = []
        self.servers: list[asyncio.Server] = []
        self.streams: set[IceTcpStream] = set()
        self.stats = MuxStats()
        self._connections: dict[str, Muxable] = {}
        self._tcp_candidates: dict[int, Candidate] = {}

    @property
    def shares_udp(self) -> bool:
        return bool(self.udp_port)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for host in self.addresses:
            if self.udp_port:
                transport, proto = await loop.create_datagram_endpoint(
                    self._socket_factory(host), local_addr=(host, self.udp_port))
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_SIZE)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_SIZE)
                self.sockets.append(proto)
            if self.tcp_port:
                server = await loop.create_server(lambda: IceTcpStream(self), host,
                                                  self.tcp_port, reuse_address=True)
                self.servers.append(server)
        if self.udp_port or self.tcp_port:
            log.info("ice: shared ports udp=%s tcp=%s on %s%s", self.udp_port or "-",
                     self.tcp_port or "-", ",".join(self.addresses),
                     f" (announced as {','.join(self.advertised)})" if self.advertised else "")

    def _socket_factory(self, host: str) -> Callable[[], MuxSocket]:
        return lambda: MuxSocket(self, host)

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for stream in list(self.streams):
            stream.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for sock in self.sockets:
            if sock.transport is not None:
                sock.transport.close()
        self.sockets.clear()
        self.servers.clear()

    # -- registry -------------------------------------------------------------------
    def register(self, conn: Muxable) -> None:
        self._connections[conn.local_username] = conn

    def unregister(self, conn: Muxable) -> None:
        ufrag = str(conn.local_username)
        if self._connections.get(ufrag) is conn:
            del self._connections[ufrag]
        self._tcp_candidates.pop(id(conn), None)

    def connection(self, ufrag: str) -> Muxable | None:
        conn = self._connections.get(ufrag)
        if conn is None or conn._closing:
            return None
        return conn

    # -- candidates ----------------------------------------------------------------
    def _primary_host(self) -> str:
        return next((a for a in self.addresses if not _is_loopback(a)), self.addresses[0])

    def udp_protocols(self, conn: Muxable) -> list[MuxedProtocol]:
        """Attach `conn` to every shared UDP socket: one host candidate each."""
        out = []
        for index, sock in enumerate(self.sockets):
            candidate = host_candidate(sock.host, sock.port, "udp", 65535 - index)
            out.append(sock.attach(conn, candidate))
        return out

    def alias_candidates(self, port_of: Callable[[str], int | None]) -> list[Candidate]:
        """Announced-only UDP candidates (node_ip) for the port the primary address has."""
        port = port_of(self._primary_host())
        if port is None:
            return []
        return [host_candidate(ip, port, "udp", 65535 - len(self.addresses) - i)
                for i, ip in enumerate(self.advertised) if ip not in self.addresses]

    def tcp_candidates(self, conn: Muxable) -> list[Candidate]:
        """Passive ICE-TCP candidates for `conn` (announced; streams attach on first check)."""
        if not self.tcp_port:
            return []
        hosts = [*self.addresses, *(a for a in self.advertised if a not in self.addresses)]
        out = [host_candidate(h, self.tcp_port, "tcp", TCP_LOCAL_PREFERENCE - i, "passive")
               for i, h in enumerate(hosts)]
        self._tcp_candidates[id(conn)] = out[0]
        return out

    def tcp_candidate_of(self, conn: Muxable) -> Candidate:
        candidate = self._tcp_candidates.get(id(conn))
        if candidate is None:
            candidate = host_candidate(self._primary_host(), self.tcp_port, "tcp",
                                       TCP_LOCAL_PREFERENCE, "passive")
        return candidate


def host_candidate(host: str, port: int, transport: str, local_pref: int,
                   tcptype: str | None = None) -> Candidate:
    return Candidate(
        foundation=candidate_foundation("host", transport, host),
        component=1,
        transport=transport,
        priority=candidate_priority(1, "host", local_pref=max(0, local_pref)),
        host=host,
        port=port,
        type="host",
        tcptype=tcptype,
    )


def _same(a: object, b: object) -> bool:
    return a is b


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


__all__ = ["IceMux", "MuxSocket", "host_candidate", "is_stun", "stun_local_ufrag"]

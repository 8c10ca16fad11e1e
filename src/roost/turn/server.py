"""TurnServer: the embedded TURN server's listeners, allocations and request handling.

RFC 8656 essentials: Allocate (UDP relays), Refresh, CreatePermission, ChannelBind, Send
and Data indications, ChannelData, and plain STUN Binding so the port doubles as a STUN
server. Long-term credentials come from `TurnCredentials`; nothing is kept for a client
until it has authenticated (the nonce is stateless).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import struct
import time
from collections.abc import Collection
from typing import Any

from aioice import stun

from roost.config import TurnConfig
from roost.turn.allocation import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    Address,
    Allocation,
    ClientLink,
    LinkKey,
    RelayProtocol,
    bind_relay_socket,
)
from roost.turn.auth import Authenticator, reply
from roost.turn.credentials import TurnCredentials
from roost.turn.nonce import NonceFactory
from roost.turn.transports import StreamLink, UdpListener

logger = logging.getLogger("roost.turn")

DEFAULT_LIFETIME = 600
UDP_TRANSPORT = 17

Method = stun.Method
Class = stun.Class


class TurnServer:
    """An asyncio TURN server on up to three listeners (UDP, TCP, TLS).

    `ports` replaces the configured ports (for tests): each listed transport ("udp",
    "tcp", "tls") listens on its port, 0 meaning the kernel picks one, and unlisted ones
    are off. Without it the config decides, where 0 means off.
    `config.enabled` is the caller's business: a constructed server always serves.
    """

    def __init__(
        self,
        config: TurnConfig,
        credentials: TurnCredentials,
        *,
        bind_host: str = "0.0.0.0",
        relay_host: str,
        advertised_host: str | None = None,
        ports: dict[str, int] | None = None,
        nonce_ttl: float = 600.0,
        sweep_interval: float = 5.0,
        max_message_size: int = 16 * 1024,
        max_connections: int = 4096,
        connection_idle: float = 30.0,
        software: str = "roost",
        peer_hosts: Collection[str] | None = None,
    ) -> None:
        self.config = config
        # The only addresses clients may relay to (roost's media addresses); None: any.
        self.peer_hosts = set(peer_hosts) if peer_hosts is not None else None
        self.credentials = credentials
        self.bind_host = bind_host
        self.relay_host = relay_host
        self.advertised_host = advertised_host or relay_host
        self.realm = config.domain or "roost"
        self.software = software
        self.sweep_interval = sweep_interval
        self.max_message_size = max_message_size
        self.max_connections = max_connections
        self.connection_idle = connection_idle
        self.udp_port = 0
        self.tcp_port = 0
        self.tls_port = 0
        self._ports = ports
        self._auth = Authenticator(
            self.realm, credentials, NonceFactory(nonce_ttl), software, self.count
        )
        self._relay_family = (
            socket.AF_INET6 if ipaddress.ip_address(relay_host).version == 6 else socket.AF_INET
        )
        self._allocations: dict[LinkKey, Allocation] = {}
        self._user_allocations: dict[str, int] = {}
        self._relay_ports: set[int] = set()
        self._streams: set[StreamLink] = set()
        self._udp: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._counters: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp = self._port("udp", self.config.udp_port)
        if udp is not None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpListener(self, self.max_message_size), local_addr=(self.bind_host, udp)
            )
            self._udp.append(transport)
            self.udp_port = int(transport.get_extra_info("sockname")[1])
        tcp = self._port("tcp", self.config.tcp_port)
        if tcp is not None:
            self.tcp_port = await self._serve_stream("tcp", tcp, None)
        tls = self._port("tls", self.config.tls_port)
        if tls is not None:
            context = None if self.config.external_tls else self._tls_context()
            self.tls_port = await self._serve_stream("tls", tls, context)
        self._sweeper = asyncio.create_task(self._sweep_loop())
        logger.info(
            "turn server started",
            extra={
                "realm": self.realm,
                "udp_port": self.udp_port,
                "tcp_port": self.tcp_port,
                "tls_port": self.tls_port,
                "relay": self.advertised_host,
            },
        )

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for allocation in list(self._allocations.values()):
            self._delete(allocation, "shutdown")
        for server in self._servers:
            server.close()
        for link in list(self._streams):
            if link.transport is not None:
                link.transport.abort()
        for transport in self._udp:
            transport.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._servers.clear()
        self._udp.clear()
        logger.info("turn server stopped")

    @property
    def allocation_count(self) -> int:
        return len(self._allocations)

    def stats(self) -> dict[str, int]:
        allocations = self._allocations.values()
        return {
            "allocations": len(self._allocations),
            "permissions": sum(len(a.permissions) for a in allocations),
            "channels": sum(len(a.channels) for a in allocations),
            "connections": len(self._streams),
            "users": len(self._user_allocations),
            **self._counters,
        }

    def count(self, name: str, n: int = 1) -> None:
        self._counters[name] = self._counters.get(name, 0) + n

    def _port(self, name: str, configured: int) -> int | None:
        if self._ports is not None:
            return self._ports.get(name)
        return configured or None

    def _tls_context(self) -> ssl.SSLContext:
        if not self.config.cert_file or not self.config.key_file:
            raise ValueError("turn.tls_port needs turn.cert_file and turn.key_file")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.config.cert_file, self.config.key_file)
        return context

    async def _serve_stream(self, name: str, port: int, context: ssl.SSLContext | None) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: StreamLink(self, name, self.max_message_size),
            self.bind_host,
            port,
            ssl=context,
            ssl_handshake_timeout=10 if context else None,
        )
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    # -- stream connections ----------------------------------------------------------------

    def stream_opened(self, link: StreamLink) -> bool:
        if len(self._streams) >= self.max_connections:
            self.count("connections_refused")
            return False
        self._streams.add(link)
        return True

    def link_closed(self, link: StreamLink) -> None:
        self._streams.discard(link)
        allocation = self._allocations.get(link.key)
        if allocation is not None and allocation.link is link:
            self._delete(allocation, "connection closed")

    # -- timers ----------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                self.sweep()
            except Exception:  # never let the timer die
                logger.exception("turn sweep failed")

    def sweep(self, now: float | None = None) -> None:
        """Expire allocations, permissions, channels and idle unallocated connections."""
        now = time.monotonic() if now is None else now
        for allocation in list(self._allocations.values()):
            if allocation.expires <= now:
                self._delete(allocation, "expired")
            else:
                allocation.sweep(now)
        loop_now = asyncio.get_running_loop().time()
        for link in list(self._streams):
            if link.key not in self._allocations and loop_now - link.opened > self.connection_idle:
                self.count("connections_idle_closed")
                link.close()

    # -- packets ---------------------------------------------------------------------------

    def handle(self, data: bytes, link: ClientLink) -> None:
        """One datagram or stream frame from a client; never raises."""
        try:
            if len(data) < 4:
                raise ValueError("short packet")
            kind = data[0] >> 6
            if kind == 1:
                self._channel_data(data, link)
                return
            if kind != 0 or len(data) < 20 or data[4:8] != b"\x21\x12\xa4\x42":
                raise ValueError("not STUN")
            try:
                message = stun.parse_message(data)
            except Exception as exc:
                raise ValueError(f"bad STUN: {exc!r}") from exc
            self._dispatch(message, link)
        except Exception as exc:
            self.count("malformed")
            logger.debug("turn malformed input", extra={"client": link.addr, "error": repr(exc)})

    def _dispatch(self, message: stun.Message, link: ClientLink) -> None:
        method, klass = message.message_method, message.message_class
        if klass == Class.INDICATION:
            if method == Method.SEND:
                self._send_indication(message, link)
            return
        if klass != Class.REQUEST:
            self.count("ignored")
            return
        self.count("requests")
        if method == Method.BINDING:
            self._reply(message, link, {"XOR-MAPPED-ADDRESS": link.addr})
            return
        handler = self._handlers.get(method)
        if handler is None:
            self.count("error_400")
            reply(message, link, {}, software=self.software, error=(400, "Bad Request"))
            return
        auth = self._auth.authenticate(message, link)
        if auth is not None:
            handler(self, message, link, *auth)

    def _channel_data(self, data: bytes, link: ClientLink) -> None:
        number, length = struct.unpack_from("!HH", data)
        if len(data) < 4 + length:
            raise ValueError("truncated ChannelData")
        allocation = self._allocations.get(link.key)
        peer = allocation.channels.get(number) if allocation else None
        if allocation is None or peer is None:
            self.count("dropped_no_channel")
            return
        if not allocation.send_to_peer(data[4 : 4 + length], peer, time.monotonic()):
            self.count("dropped_out")

    def _send_indication(self, message: stun.Message, link: ClientLink) -> None:
        allocation = self._allocations.get(link.key)
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        data = message.attributes.get("DATA")
        if allocation is None or peer is None or data is None:
            self.count("dropped_send")
            return
        if not allocation.send_to_peer(data, peer, time.monotonic()):
            self.count("dropped_out")

    def _from_peer(self, allocation: Allocation, data: bytes, peer: Address) -> None:
        try:
            if not allocation.permitted(peer[0], time.monotonic()):
                self.count("dropped_no_permission")
                return
            if not allocation.downstream.take(len(data)):
                allocation.dropped += 1
                self.count("dropped_rate")
                return
            number = allocation.peer_channels.get(peer)
            if number is not None:
                frame = struct.pack("!HH", number, len(data)) + data
            else:
                attributes = {"XOR-PEER-ADDRESS": peer, "DATA": data}
                indication = stun.Message(Method.DATA, Class.INDICATION, attributes=attributes)
                frame = bytes(indication)
            allocation.link.send(frame)
            allocation.bytes_in += len(data)
        except Exception as exc:
            self.count("errors")
            logger.debug("turn relay error", extra={"peer": peer, "error": repr(exc)})

    # -- responses and authentication ------------------------------------------------------

    def _reply(
        self,
        request: stun.Message,
        link: ClientLink,
        attributes: dict[str, Any],
        key: bytes | None = None,
    ) -> bytes:
        return reply(request, link, attributes, software=self.software, key=key)

    def _error(
        self, request: stun.Message, link: ClientLink, code: int, reason: str, key: bytes
    ) -> None:
        self.count(f"error_{code}")
        reply(request, link, {}, software=self.software, key=key, error=(code, reason))

    # -- methods ---------------------------------------------------------------------------

    def _lifetime(self, requested: int | None) -> int:
        longest = self.config.max_lifetime or DEFAULT_LIFETIME
        wanted = DEFAULT_LIFETIME if requested is None else requested
        return min(max(DEFAULT_LIFETIME, min(wanted, longest)), longest)

    def _allocate(self, message: stun.Message, link: ClientLink, username: str, key: bytes) -> None:
        existing = self._allocations.get(link.key)
        if existing is not None:
            if existing.allocate_txid == message.transaction_id:  # a retransmission
                if existing.allocate_response is not None:
                    link.send(existing.allocate_response)
                return
            self._error(message, link, 437, "Allocation Mismatch", key)
            return
        transport = message.attributes.get("REQUESTED-TRANSPORT")
        if transport is None:
            self._error(message, link, 400, "Bad Request", key)
            return
        if transport >> 24 != UDP_TRANSPORT:
            self._error(message, link, 442, "Unsupported Transport Protocol", key)
            return
        user = self.credentials.user_of(username)
        per_user, total = self.config.max_allocations_per_user, self.config.max_allocations
        if total and len(self._allocations) >= total:
            self._error(message, link, 508, "Insufficient Capacity", key)
            return
        if per_user and self._user_allocations.get(user, 0) >= per_user:
            self._error(message, link, 486, "Allocation Quota Reached", key)
            return
        sock = self._bind_relay()
        if sock is None:
            self._error(message, link, 508, "Insufficient Capacity", key)
            return
        port = int(sock.getsockname()[1])
        lifetime = self._lifetime(message.attributes.get("LIFETIME"))
        allocation = Allocation(
            key=link.key,
            link=link,
            username=username,
            user=user,
            integrity_key=key,
            relay_port=port,
            relayed_address=(self.advertised_host, port),
            expires=time.monotonic() + lifetime,
            bandwidth=self.config.allocation_bandwidth,
            allocate_txid=message.transaction_id,
        )
        self._allocations[link.key] = allocation
        self._user_allocations[user] = self._user_allocations.get(user, 0) + 1
        self._relay_ports.add(port)
        task = asyncio.get_running_loop().create_task(
            self._open_relay(allocation, sock, message, lifetime)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_relay(
        self, allocation: Allocation, sock: socket.socket, message: stun.Message, lifetime: int
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: RelayProtocol(lambda data, peer: self._from_peer(allocation, data, peer)),
                sock=sock,
            )
        except asyncio.CancelledError:
            sock.close()
            raise
        except Exception as exc:
            sock.close()
            logger.warning("turn relay socket failed", extra={"error": repr(exc)})
            self._delete(allocation, "relay failed")
            key = allocation.integrity_key
            self._error(message, allocation.link, 508, "Insufficient Capacity", key)
            return
        allocation.protocol = protocol
        if self._allocations.get(allocation.key) is not allocation:  # gone meanwhile
            allocation.close()
            return
        attributes = {
            "XOR-RELAYED-ADDRESS": allocation.relayed_address,
            "LIFETIME": lifetime,
            "XOR-MAPPED-ADDRESS": allocation.link.addr,
        }
        allocation.allocate_response = self._reply(
            message, allocation.link, attributes, allocation.integrity_key
        )
        logger.info(
            "turn allocation created",
            extra={
                "user": allocation.user,
                "client": f"{allocation.key[0]}:{allocation.link.addr}",
                "relay_port": allocation.relay_port,
                "lifetime": lifetime,
            },
        )

    def _bind_relay(self) -> socket.socket | None:
        sock = bind_relay_socket(
            self.relay_host,
            self._relay_family,
            self.config.relay_range_start,
            self.config.relay_range_end,
            self._relay_ports,
        )
        if sock is None:
            self.count("relay_ports_exhausted")
        return sock

    def _owned(
        self, message: stun.Message, link: ClientLink, username: str, key: bytes
    ) -> Allocation | None:
        allocation = self._allocations.get(link.key)
        if allocation is None or allocation.protocol is None:
            self._error(message, link, 437, "Allocation Mismatch", key)
            return None
        if allocation.username != username:
            self._error(message, link, 441, "Wrong Credentials", key)
            return None
        return allocation

    def _refresh(self, message: stun.Message, link: ClientLink, username: str, key: bytes) -> None:
        allocation = self._owned(message, link, username, key)
        if allocation is None:
            return
        requested = message.attributes.get("LIFETIME")
        if requested == 0:
            self._delete(allocation, "refresh lifetime 0")
            self._reply(message, link, {"LIFETIME": 0}, key)
            return
        lifetime = self._lifetime(requested)
        allocation.expires = time.monotonic() + lifetime
        self._reply(message, link, {"LIFETIME": lifetime}, key)

    def _peer(
        self, message: stun.Message, link: ClientLink, key: bytes
    ) -> Address | None:
        peer = message.attributes.get("XOR-PEER-ADDRESS")
        if peer is None:
            self._error(message, link, 400, "Bad Request", key)
            return None
        family = socket.AF_INET6 if ipaddress.ip_address(peer[0]).version == 6 else socket.AF_INET
        if family != self._relay_family:
            self._error(message, link, 443, "Peer Address Family Mismatch", key)
            return None
        if self.peer_hosts is not None and str(peer[0]) not in self.peer_hosts:
            # Not an open relay: peers are roost's own media addresses only.
            self._error(message, link, 403, "Forbidden", key)
            return None
        return (str(peer[0]), int(peer[1]))

    def _create_permission(
        self, message: stun.Message, link: ClientLink, username: str, key: bytes
    ) -> None:
        allocation = self._owned(message, link, username, key)
        peer = self._peer(message, link, key) if allocation else None
        if allocation is None or peer is None:
            return
        allocation.permit(peer[0], time.monotonic())
        self._reply(message, link, {}, key)

    def _channel_bind(
        self, message: stun.Message, link: ClientLink, username: str, key: bytes
    ) -> None:
        allocation = self._owned(message, link, username, key)
        if allocation is None:
            return
        number = message.attributes.get("CHANNEL-NUMBER")
        if number is None or not CHANNEL_MIN <= number <= CHANNEL_MAX:
            self._error(message, link, 400, "Bad Request", key)
            return
        peer = self._peer(message, link, key)
        if peer is None:
            return
        if not allocation.bind_channel(number, peer, time.monotonic()):
            self._error(message, link, 400, "Bad Request", key)
            return
        self._reply(message, link, {}, key)

    _handlers = {
        Method.ALLOCATE: _allocate,
        Method.REFRESH: _refresh,
        Method.CREATE_PERMISSION: _create_permission,
        Method.CHANNEL_BIND: _channel_bind,
    }

    def _delete(self, allocation: Allocation, reason: str) -> None:
        if self._allocations.get(allocation.key) is not allocation:
            return
        del self._allocations[allocation.key]
        left = self._user_allocations.get(allocation.user, 1) - 1
        if left > 0:
            self._user_allocations[allocation.user] = left
        else:
            self._user_allocations.pop(allocation.user, None)
        self._relay_ports.discard(allocation.relay_port)
        allocation.close()
        logger.info(
            "turn allocation deleted",
            extra={
                "user": allocation.user,
                "relay_port": allocation.relay_port,
                "reason": reason,
                "bytes_out": allocation.bytes_out,
                "bytes_in": allocation.bytes_in,
                "dropped": allocation.dropped,
            },
        )

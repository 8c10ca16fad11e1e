"""ICE for one peer connection: host candidates on configured addresses, restartable link.

aioice's own gathering skips loopback and asks a STUN server; roost binds exactly the
addresses it is configured with (loopback included), or takes its host candidates from the
process's shared sockets (`IceMux`: `rtc.udp_port`, `rtc.tcp_port`, announced node_ip).
`IceLink` is what `RTCDtlsTransport` reads and writes through (it duck-types aiortc's
`RTCIceTransport`: `role`, `state`, `_recv`, `_send`) and keeps working across an ICE
restart by swapping the underlying aioice connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import Callable
from typing import Any

import aioice
from aioice import Candidate, Connection
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import StunProtocol, get_host_addresses

from roost.media.icemux import IceMux

log = logging.getLogger(__name__)

RECV_BUFFER_SIZE = 1024 * 1024
PORT_ATTEMPTS = 64
MAX_REMOTE_CANDIDATES = 64
RESTART_WAIT = 30.0  # how long a dead path waits for a pending ICE restart


def expand_addresses(addresses: list[str]) -> list[str]:
    """Turn wildcard bind addresses into concrete ones; loopback is kept."""
    out: list[str] = []
    for address in addresses:
        if address in ("0.0.0.0", ""):
            found = ["127.0.0.1", *get_host_addresses(use_ipv4=True, use_ipv6=False)]
        elif address == "::":
            found = ["::1", *get_host_addresses(use_ipv4=False, use_ipv6=True)]
        else:
            found = [str(ipaddress.ip_address(address))]
        out += [a for a in found if a not in out]
    return out


class MediaStunProtocol(StunProtocol):
    """aioice's socket protocol with a fast lane: SRTP/SRTCP datagrams (first byte 128..191)
    go straight to the connection's `media_handler`, skipping STUN parsing and the receive
    queue (and with them a coroutine wake-up per packet)."""

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if data and 127 < data[0] < 192:  # type: ignore[operator]
            handler = self.receiver.media_handler  # type: ignore[attr-defined]
            if handler is not None:
                handler(data)
                return
        try:
            super().datagram_received(data, addr)
        except Exception:  # aioice's parser lets struct.error through on hostile STUN
            log.debug("ice: dropped a malformed STUN message from %s", addr)


class HostConnection(Connection):
    """An aioice connection that gathers host candidates on given addresses only."""

    media_handler: Callable[[bytes], None] | None = None

    def __init__(
        self,
        *,
        addresses: list[str],
        port_range: tuple[int, int] | None,
        ice_controlling: bool,
        mux: IceMux | None = None,
    ) -> None:
        super().__init__(ice_controlling=ice_controlling, components=1)
        self._roost_addresses = addresses
        self._roost_port_range = port_range
        self._roost_mux = mux

    async def gather_candidates(self) -> None:
        """Host candidates: the shared sockets, or one UDP socket bound per address."""
        if self._local_candidates_start:
            return
        self._local_candidates_start = True
        mux = self._roost_mux
        if mux is not None:
            mux.register(self)
            if mux.shares_udp:
                for protocol in mux.udp_protocols(self):
                    self._protocols.append(protocol)
                    self._local_candidates.append(protocol.local_candidate)
            else:
                await self._bind_all()
            ports = {p.local_candidate.host: p.local_candidate.port for p in self._protocols}
            self._local_candidates += mux.alias_candidates(ports.get)
            self._local_candidates += mux.tcp_candidates(self)
        else:
            await self._bind_all()
        self._local_candidates_end = True
        if not self._local_candidates:
            raise OSError(f"ICE: no usable address among {self._roost_addresses}")

    async def close(self) -> None:
        if self._roost_mux is not None:
            self._roost_mux.unregister(self)
        await super().close()

    async def _bind_all(self) -> None:
        """Bind one UDP socket per configured address (ephemeral or from the port range)."""
        loop = asyncio.get_running_loop()
        for index, address in enumerate(self._roost_addresses):
            try:
                transport, protocol = await self._bind(loop, address)
            except OSError as exc:
                log.warning("ice: could not bind %s: %s", address, exc)
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_SIZE)
            host, port = transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=1,
                transport="udp",
                priority=candidate_priority(1, "host", local_pref=65535 - index),
                host=host,
                port=port,
                type="host",
            )
            self._protocols.append(protocol)
            self._local_candidates.append(protocol.local_candidate)

    async def _bind(
        self, loop: asyncio.AbstractEventLoop, address: str
    ) -> tuple[asyncio.DatagramTransport, StunProtocol]:
        if self._roost_port_range is None:
            return await loop.create_datagram_endpoint(
                lambda: MediaStunProtocol(self), local_addr=(address, 0)
            )
        lo, hi = self._roost_port_range
        ports = list(range(lo, hi + 1))
        random.shuffle(ports)
        last: OSError = OSError(f"no free port in {lo}-{hi}")
        for port in ports[:PORT_ATTEMPTS]:
            try:
                return await loop.create_datagram_endpoint(
                    lambda: MediaStunProtocol(self), local_addr=(address, port)
                )
            except OSError as exc:
                last = exc
        raise last


def parse_candidate(text: str) -> Candidate:
    """Parse `candidate:...` (or `a=candidate:...`) text; ValueError when unusable."""
    if not isinstance(text, str) or len(text) > 1024:
        raise ValueError("candidate must be a string of at most 1024 characters")
    value = text.strip()
    for prefix in ("a=", "candidate:"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    try:
        candidate = Candidate.from_sdp(value)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"malformed candidate: {exc}") from None
    if candidate.type not in ("host", "srflx", "prflx", "relay"):
        raise ValueError(f"unknown candidate type {candidate.type!r}")
    if candidate.transport.lower() not in ("udp", "tcp"):
        raise ValueError(f"unknown candidate transport {candidate.transport!r}")
    if not 1 <= candidate.component <= 256 or not 0 <= candidate.port <= 65535:
        raise ValueError("candidate component or port out of range")
    if not candidate.host.endswith(".local"):
        try:
            ipaddress.ip_address(candidate.host)
        except ValueError:
            raise ValueError(f"candidate address is not an IP: {candidate.host!r}") from None
    return candidate


class IceLink:
    """One ICE session (component 1, bundled) that survives ICE restarts."""

    def __init__(
        self,
        *,
        addresses: list[str],
        port_range: tuple[int, int] | None,
        controlling: bool,
        on_failed: Callable[[], None] | None = None,
        mux: IceMux | None = None,
    ) -> None:
        self._addresses = addresses
        self._port_range = port_range
        self._mux = mux
        self._controlling = controlling
        self._on_failed = on_failed
        self._conn = self._new_connection()
        self._nominated = self._conn._nominated  # the live connection's nominated pairs
        self._pending: Connection | None = None  # being restarted, not yet connected
        self._restart_done = asyncio.Event()  # set whenever a pending restart ends
        self._connect_tasks: set[asyncio.Task[None]] = set()
        self._settled = asyncio.Event()  # set once the first connect succeeds or fails
        self._remote_ufrag: str | None = None
        self._remote_count = 0
        self._media_handler: Callable[[bytes], None] | None = None
        self._pair: object = None
        self._target: tuple[Callable[[bytes, tuple[str, int]], None], tuple[str, int]] | None = None
        self.state = "new"

    # -- what RTCDtlsTransport uses -------------------------------------------------
    @property
    def role(self) -> str:
        return "controlling" if self._conn.ice_controlling else "controlled"

    async def _recv(self) -> bytes:
        while True:
            conn = self._conn
            try:
                return await conn.recv()
            except ConnectionError:
                if conn is not self._conn:
                    continue  # a restart swapped connections: read the new one
                if self._pending is None:
                    raise  # the link is gone and nothing is coming to replace it
                # The path died while a restart is under way: wait for its outcome.
                self._restart_done.clear()
                try:
                    await asyncio.wait_for(self._restart_done.wait(), RESTART_WAIT)
                except TimeoutError:
                    raise ConnectionError("ICE restart did not complete") from None
                if conn is self._conn:
                    raise

    async def _send(self, data: bytes) -> None:
        try:
            await self._conn.send(data)
        except ConnectionError:
            if self._pending is None:
                raise
            # During a restart the old path may already be gone: drop, like UDP would.

    # -- media fast path ---------------------------------------------------------------
    def set_media_handler(self, handler: Callable[[bytes], None] | None) -> None:
        """Deliver SRTP/SRTCP datagrams to `handler` straight from the socket."""
        self._media_handler = handler
        for conn in (self._conn, self._pending):
            if isinstance(conn, HostConnection):
                conn.media_handler = handler

    def send_now(self, data: bytes) -> None:
        """Send a datagram on the nominated pair without a coroutine; dropped if none."""
        pair = self._nominated.get(1)
        if pair is not self._pair:
            self._pair = pair
            self._target = None
            if pair is not None and getattr(pair.protocol, "transport", None) is not None:
                self._target = (pair.protocol.transport.sendto, pair.remote_addr)
        target = self._target
        if target is not None:
            target[0](data, target[1])

    # -- local side --------------------------------------------------------------------
    def _new_connection(self) -> Connection:
        conn = HostConnection(
            addresses=self._addresses,
            port_range=self._port_range,
            ice_controlling=self._controlling,
            mux=self._mux,
        )
        conn.media_handler = getattr(self, "_media_handler", None)
        return conn

    @property
    def _local(self) -> Connection:
        return self._pending or self._conn

    async def gather(self) -> None:
        await self._local.gather_candidates()

    @property
    def local_ufrag(self) -> str:
        return self._local.local_username

    @property
    def local_pwd(self) -> str:
        return self._local.local_password

    @property
    def remote_ufrag(self) -> str | None:
        return self._remote_ufrag

    def local_candidates(self) -> list[str]:
        """Local candidates as SDP attribute values (after `a=candidate:`)."""
        return [c.to_sdp() for c in self._local.local_candidates]

    # -- remote side and checks ----------------------------------------------------------
    async def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """Add a trickled/embedded remote candidate, or None for end-of-candidates."""
        conn = self._local
        if conn._remote_candidates_end:
            return
        if candidate is not None:
            if candidate.host.endswith(".local"):
                return  # mDNS: learnt as peer-reflexive from the peer's checks instead
            if candidate.transport.lower() == "tcp":
                return  # roost's TCP candidates are passive: the peer's checks come to it
            if self._remote_count >= MAX_REMOTE_CANDIDATES:
                return
            self._remote_count += 1
        with contextlib.suppress(ValueError):
            await conn.add_remote_candidate(candidate)

    def start(self, ufrag: str, pwd: str) -> None:
        """Begin connectivity checks against the remote credentials (idempotent per ufrag)."""
        conn = self._local
        if conn.remote_username is not None:
            return
        conn.remote_username = ufrag
        conn.remote_password = pwd
        self._remote_ufrag = ufrag
        if self.state == "new":
            self.state = "checking"
        task = asyncio.ensure_future(self._connect(conn))
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def restart(self) -> None:
        """Start an ICE restart: fresh credentials and sockets; swap in once connected."""
        if self._pending is not None:
            await self._close_conn(self._pending)
        self._pending = self._new_connection()
        self._remote_count = 0
        await self._pending.gather_candidates()

    async def _connect(self, conn: Connection) -> None:
        try:
            await conn.connect()
        except ConnectionError:
            if conn is self._pending:
                self._pending = None
                self._restart_done.set()
                await self._close_conn(conn)
            elif conn is self._conn and self.state != "closed":
                self.state = "failed"
                self._settled.set()
                if self._on_failed is not None:
                    self._on_failed()
            return
        if conn is self._pending:
            old, self._conn, self._pending = self._conn, conn, None
            self._nominated = conn._nominated
            self._restart_done.set()
            await self._close_conn(old)  # wakes a reader blocked on the old connection
            log.debug("ice: restart completed")
        if conn is self._conn and self.state != "closed":
            self.state = "completed"
            self._settled.set()

    async def wait_connected(self) -> bool:
        """Wait until the first connectivity checks end; True when a pair was nominated."""
        await self._settled.wait()
        return self.state == "completed"

    async def _close_conn(self, conn: Connection) -> None:
        with contextlib.suppress(Exception):
            await conn.close()

    async def stop(self) -> None:
        """Close sockets and cancel checks; safe to call more than once."""
        if self.state == "closed":
            return
        self.state = "closed"
        self._settled.set()
        for task in list(self._connect_tasks):
            task.cancel()
        if self._pending is not None:
            await self._close_conn(self._pending)
            self._pending = None
        self._restart_done.set()
        await self._close_conn(self._conn)
        for task in list(self._connect_tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["IceLink", "aioice", "expand_addresses", "parse_candidate"]

"""Shared pieces for the TURN tests: a server factory, a raw STUN client, a test CA, waits."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

from aioice import stun
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.helpers.wait import until

from roost.config import TurnConfig
from roost.turn import TurnCredentials, TurnServer

HOST = "127.0.0.1"
SECRET = b"turn-test-secret"
UDP_TRANSPORT = 0x11000000
Address = tuple[str, int]


async def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    return await until(check, timeout, what or str(check))


@asynccontextmanager
async def turn_server(
    ports: dict[str, int] | None = None, ttl: int = 3600, **config: Any
) -> AsyncIterator[TurnServer]:
    """A TurnServer on 127.0.0.1 with kernel-picked listener and relay ports.

    `config` holds TurnConfig fields and TurnServer keyword options alike.
    """
    names = {f.name for f in fields(TurnConfig)}
    options = {k: v for k, v in config.items() if k not in names}
    settings = TurnConfig(enabled=True, relay_range_start=0, relay_range_end=0)
    settings = replace(settings, **{k: v for k, v in config.items() if k in names})
    server = TurnServer(
        settings,
        TurnCredentials(SECRET, ttl),
        bind_host=HOST,
        relay_host=HOST,
        ports=ports if ports is not None else {"udp": 0, "tcp": 0},
        **options,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def credentials(user: str = "alice", ttl: int = 3600, now: float | None = None) -> tuple[str, str]:
    return TurnCredentials(SECRET, ttl).issue(user, now)


class PeerProtocol(asyncio.DatagramProtocol):
    """A plain UDP peer that records what it receives (and can echo it back)."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.received: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait((data, addr))
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)

    async def next(self, timeout: float = 5.0) -> tuple[bytes, Address]:
        return await asyncio.wait_for(self.received.get(), timeout)


async def udp_peer(echo: bool = False) -> tuple[asyncio.DatagramTransport, PeerProtocol]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: PeerProtocol(echo), local_addr=(HOST, 0)
    )
    return transport, protocol


class RawClient(PeerProtocol):
    """A bare STUN/TURN client over UDP: one request at a time, no retransmission."""

    def __init__(self, server: Address, username: str = "", password: str = "") -> None:
        super().__init__()
        self.server = server
        self.username = username
        self.password = password
        self.realm = ""
        self.nonce = b""
        self.other: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait((data, addr))

    @property
    def key(self) -> bytes:
        text = f"{self.username}:{self.realm}:{self.password}"
        return hashlib.md5(text.encode()).digest()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.server)

    async def transact(self, message: stun.Message, timeout: float = 3.0) -> stun.Message:
        """Send `message`, return the response with its transaction id (others are queued)."""
        self.send(bytes(message))
        deadline = time.monotonic() + timeout
        while True:
            data, _ = await asyncio.wait_for(self.received.get(), deadline - time.monotonic())
            if data[0] >> 6 == 0:
                response = stun.parse_message(data)
                if response.transaction_id == message.transaction_id:
                    return response
            self.other.put_nowait(data)

    async def request(
        self, method: stun.Method, attributes: dict[str, Any] | None = None, sign: bool = True
    ) -> stun.Message:
        """A request, authenticated (after a 401 challenge when needed) if `sign`."""
        if sign and not self.nonce:
            challenge = await self.transact(stun.Message(method, stun.Class.REQUEST))
            assert challenge.error_code == 401, challenge
            self.realm = challenge.attributes["REALM"]
            self.nonce = challenge.attributes["NONCE"]
        message = stun.Message(method, stun.Class.REQUEST, attributes=dict(attributes or {}))
        if sign:
            message.attributes.update(
                {"USERNAME": self.username, "REALM": self.realm, "NONCE": self.nonce}
            )
            message.add_message_integrity(self.key)
        return await self.transact(message)

    async def allocate(self, lifetime: int | None = None) -> stun.Message:
        attributes: dict[str, Any] = {"REQUESTED-TRANSPORT": UDP_TRANSPORT}
        if lifetime is not None:
            attributes["LIFETIME"] = lifetime
        return await self.request(stun.Method.ALLOCATE, attributes)

    async def next_other(self, timeout: float = 5.0) -> bytes:
        if not self.other.empty():
            return self.other.get_nowait()
        data, _ = await self.next(timeout)
        return data


async def raw_client(
    server: TurnServer, username: str = "", password: str = ""
) -> tuple[asyncio.DatagramTransport, RawClient]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: RawClient((HOST, server.udp_port), username, password), local_addr=(HOST, 0)
    )
    return transport, protocol


def free_udp_ports(count: int) -> list[int]:
    """`count` consecutive-ish UDP ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roost test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path = directory / "ca.pem", directory / "cert.pem"
    key_path = directory / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path

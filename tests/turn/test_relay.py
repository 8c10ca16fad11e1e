"""aioice's real TURN client relays through roost over UDP, TCP and TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aioice import Connection, TransportPolicy
from aioice.turn import create_turn_endpoint
from tests.turn.helpers import (
    HOST,
    PeerProtocol,
    credentials,
    eventually,
    make_certificates,
    turn_server,
    udp_peer,
)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_certificates(tmp_path)


def client_tls(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def relay_round_trip(server_addr: tuple[str, int], transport: str, tls: object) -> None:
    username, password = credentials("alice")
    peer_transport, peer = await udp_peer(echo=True)
    turn, client = await asyncio.wait_for(
        create_turn_endpoint(
            PeerProtocol,
            server_addr,
            username,
            password,
            ssl=tls,  # type: ignore[arg-type]
            transport=transport,
        ),
        10,
    )
    try:
        relayed = turn.get_extra_info("sockname")
        assert relayed[0] == HOST
        peer_addr = peer_transport.get_extra_info("sockname")
        for i in range(3):
            turn.sendto(b"ping %d" % i, peer_addr)
            data, source = await peer.next()
            assert data == b"ping %d" % i
            assert source == relayed  # the peer sees the relayed address
            echoed, from_addr = await client.next()
            assert echoed == data and from_addr == peer_addr
    finally:
        turn.close()
        peer_transport.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_turn_client_relays_to_a_peer_and_back(transport: str) -> None:
    async with turn_server() as server:
        port = server.udp_port if transport == "udp" else server.tcp_port
        await relay_round_trip((HOST, port), transport, None)
        await eventually(lambda: server.allocation_count == 0, what="allocation deleted")


async def test_turn_client_relays_over_tls(tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    async with turn_server(ports={"tls": 0}, cert_file=str(cert), key_file=str(key)) as server:
        assert server.udp_port == 0 and server.tls_port
        await relay_round_trip((HOST, server.tls_port), "tcp", client_tls(ca))
        await eventually(lambda: server.allocation_count == 0, what="allocation deleted")


async def test_external_tls_port_speaks_plain_tcp() -> None:
    async with turn_server(ports={"tls": 0}, external_tls=True) as server:
        await relay_round_trip((HOST, server.tls_port), "tcp", None)


async def ice_pair_through_relay(a: Connection, b: Connection) -> None:
    await asyncio.wait_for(asyncio.gather(a.gather_candidates(), b.gather_candidates()), 10)
    assert a.local_candidates and all(c.type == "relay" for c in a.local_candidates)
    for x, y in ((a, b), (b, a)):
        for candidate in x.local_candidates:
            await y.add_remote_candidate(candidate)
        await y.add_remote_candidate(None)
        y.remote_username, y.remote_password = x.local_username, x.local_password
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 20)
    await a.send(b"hello from a")
    assert await asyncio.wait_for(b.recv(), 5) == b"hello from a"
    await b.send(b"hello from b")
    assert await asyncio.wait_for(a.recv(), 5) == b"hello from b"


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_two_ice_agents_connect_relay_only(
    transport: str, tls_files: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = tls_files
    ports = {"udp": 0, "tcp": 0, "tls": 0}
    async with turn_server(ports=ports, cert_file=str(cert), key_file=str(key)) as server:
        port = {"udp": server.udp_port, "tcp": server.tcp_port, "tls": server.tls_port}[transport]
        agents = []
        for controlling, user in ((True, "alice"), (False, "bob")):
            username, password = credentials(user)
            agents.append(
                Connection(
                    ice_controlling=controlling,
                    components=1,
                    turn_server=(HOST, port),
                    turn_username=username,
                    turn_password=password,
                    turn_transport="udp" if transport == "udp" else "tcp",
                    turn_ssl=client_tls(ca) if transport == "tls" else False,  # type: ignore[arg-type]
                    transport_policy=TransportPolicy.RELAY,
                )
            )
        a, b = agents
        try:
            await ice_pair_through_relay(a, b)
            assert server.allocation_count == 2
            stats = server.stats()
            assert stats["channels"] >= 2 and stats["permissions"] >= 2
        finally:
            await asyncio.wait_for(asyncio.gather(a.close(), b.close()), 10)
        await eventually(lambda: server.allocation_count == 0, what="allocations deleted")

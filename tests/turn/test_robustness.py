"""Floods, garbage and greedy connections don't hurt the TURN server or its allocations."""

from __future__ import annotations

import asyncio
import gc
import os
import struct
import tracemalloc

from aioice import stun
from aioice.turn import create_turn_endpoint
from tests.turn.helpers import (
    HOST,
    PeerProtocol,
    credentials,
    eventually,
    raw_client,
    turn_server,
    udp_peer,
)


async def test_unauthenticated_allocate_flood_keeps_no_state_and_relaying_goes_on() -> None:
    async with turn_server() as server:
        username, password = credentials("alice")
        peer_transport, _ = await udp_peer(echo=True)
        turn, receiver = await asyncio.wait_for(
            create_turn_endpoint(PeerProtocol, (HOST, server.udp_port), username, password), 10
        )
        flood_transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(HOST, 0)  # the 401s are thrown away
        )
        peer_addr = peer_transport.get_extra_info("sockname")
        try:

            async def relays(i: int) -> None:
                turn.sendto(b"still here %d" % i, peer_addr)
                data, _ = await receiver.next()
                assert data == b"still here %d" % i

            await relays(0)
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            sent = 0
            for batch in range(50):
                for _ in range(100):
                    request = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
                    request.attributes["REQUESTED-TRANSPORT"] = 0x11000000
                    request.attributes["LIFETIME"] = 3600
                    flood_transport.sendto(bytes(request), (HOST, server.udp_port))
                    sent += 1
                await eventually(
                    lambda n=sent: server.stats().get("error_401", 0) >= n - 100, what="flood"
                )
                if batch % 10 == 0:
                    await relays(batch + 1)
            await eventually(lambda: server.stats().get("error_401", 0) >= 4900, what="flood")
            await relays(99)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            assert grown < 512 * 1024, f"{grown} bytes kept after the flood"
            assert server.allocation_count == 1  # only the authenticated one
        finally:
            tracemalloc.stop()
            flood_transport.close()
            turn.close()
            peer_transport.close()


GARBAGE = [
    b"",
    b"\x00",
    b"\xff" * 40,
    os.urandom(1000),
    b"\x00\x01\x00\x08" + b"\x21\x12\xa4\x42" + bytes(12),  # length beyond the data
    b"\x00\x01\x00\x00" + b"\xde\xad\xbe\xef" + bytes(12),  # wrong magic cookie
    b"\x0f\xff\x00\x00" + b"\x21\x12\xa4\x42" + bytes(12),  # unknown method
    # CHANNEL-NUMBER with no value, LIFETIME of 2 bytes: attribute decoders fail
    b"\x00\x09\x00\x04" + b"\x21\x12\xa4\x42" + bytes(12) + b"\x00\x0c\x00\x00",
    b"\x00\x03\x00\x08" + b"\x21\x12\xa4\x42" + bytes(12) + b"\x00\x0d\x00\x02\x00\x01\x00\x00",
    b"\x40\x00\x01\x00abc",  # ChannelData shorter than its length
    b"\x40\x00",
    b"\x00\x01" + b"\x00" * 70000,  # above the maximum message size
]


async def test_malformed_datagrams_are_counted_and_ignored() -> None:
    async with turn_server() as server:
        transport, raw = await raw_client(server)
        try:
            for data in GARBAGE:
                raw.send(data)
            await eventually(
                lambda: server.stats().get("malformed", 0) + server.stats().get("oversized", 0)
                >= len(GARBAGE) - 3,  # an empty datagram or oversized one may not arrive
                what="malformed counted",
            )
            response = await raw.request(stun.Method.BINDING, sign=False)
            assert response.message_class == stun.Class.RESPONSE
        finally:
            transport.close()


async def open_tcp(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


async def test_garbage_on_a_tcp_stream_closes_only_that_connection() -> None:
    async with turn_server() as server:
        reader, writer = await open_tcp(server.tcp_port)
        writer.write(b"\xff" * 64)
        assert await closed_by_server(reader)
        writer.close()

        reader, writer = await open_tcp(server.tcp_port)
        writer.write(b"\x40\x00\xff\xff")  # a ChannelData frame above the size limit
        assert await closed_by_server(reader)
        writer.close()

        reader, writer = await open_tcp(server.tcp_port)
        request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
        data = bytes(request)
        writer.write(data[:7])  # split across segments, then two frames in one
        await writer.drain()
        writer.write(data[7:] + bytes(request))
        for _ in range(2):
            header = await asyncio.wait_for(reader.readexactly(20), 5)
            (length,) = struct.unpack("!H", header[2:4])
            body = await asyncio.wait_for(reader.readexactly(length), 5)
            answer = stun.parse_message(header + body)
            assert answer.attributes["XOR-MAPPED-ADDRESS"] == writer.get_extra_info("sockname")
        writer.close()
        assert server.stats()["malformed"] == 2


async def test_tcp_connections_are_capped_and_idle_ones_closed() -> None:
    async with turn_server(max_connections=2, connection_idle=0.2, sweep_interval=0.05) as server:
        (r1, w1), (r2, w2) = await open_tcp(server.tcp_port), await open_tcp(server.tcp_port)
        await eventually(lambda: server.stats()["connections"] == 2, what="two connections")
        r3, w3 = await open_tcp(server.tcp_port)
        assert await closed_by_server(r3)
        assert server.stats()["connections_refused"] == 1
        assert await closed_by_server(r1) and await closed_by_server(r2)  # idle, no allocation
        await eventually(lambda: server.stats()["connections"] == 0, what="idle closed")
        for writer in (w1, w2, w3):
            writer.close()


async def test_closing_a_tcp_connection_deletes_its_allocation() -> None:
    async with turn_server() as server:
        username, password = credentials("alice")
        turn, _ = await asyncio.wait_for(
            create_turn_endpoint(
                PeerProtocol, (HOST, server.tcp_port), username, password, transport="tcp"
            ),
            10,
        )
        assert server.allocation_count == 1
        inner = turn._TurnTransport__inner_protocol  # type: ignore[attr-defined]
        inner.transport.abort()  # vanish without a Refresh(0)
        await eventually(lambda: server.allocation_count == 0, what="allocation freed")


async def test_stop_releases_relay_ports_and_listeners() -> None:
    async with turn_server() as server:
        transport, raw = await raw_client(server, *credentials("alice"))
        relayed = (await raw.allocate()).attributes["XOR-RELAYED-ADDRESS"]
        transport.close()
        udp_port = server.udp_port
    assert server.allocation_count == 0
    loop = asyncio.get_running_loop()
    for port in (relayed[1], udp_port):
        again, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(HOST, port)
        )
        again.close()

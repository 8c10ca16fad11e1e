"""Shared ICE sockets: many connections on one UDP port, ICE-TCP, and hostile packets."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from aioice import Candidate, Connection, stun

from roost.media.ice import IceLink
from roost.media.icemux import IceMux, stun_local_ufrag

TIMEOUT = 10.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def mux() -> AsyncIterator[IceMux]:
    shared = IceMux(addresses=["127.0.0.1"], udp_port=free_udp_port(), tcp_port=free_tcp_port())
    await shared.start()
    yield shared
    await shared.stop()


async def connect_pair(mux: IceMux) -> tuple[IceLink, Connection]:
    """A roost-side IceLink on the mux (controlled) and a plain aioice client (controlling)."""
    server = IceLink(addresses=["127.0.0.1"], port_range=None, controlling=False, mux=mux)
    await server.gather()
    client = Connection(ice_controlling=True, components=1, use_ipv6=False)
    client._local_candidates_start = False
    await client.gather_candidates()
    for text in server.local_candidates():
        candidate = Candidate.from_sdp(text)
        if candidate.transport == "udp":
            await client.add_remote_candidate(candidate)
    await client.add_remote_candidate(None)
    client.remote_username, client.remote_password = server.local_ufrag, server.local_pwd
    for candidate in client.local_candidates:
        if candidate.host == "127.0.0.1":
            await server.add_remote_candidate(candidate)
    await server.add_remote_candidate(None)
    server.start(client.local_username, client.local_password)
    await asyncio.wait_for(asyncio.gather(client.connect(), server.wait_connected()), TIMEOUT)
    return server, client


async def test_many_connections_share_one_udp_port_and_each_gets_its_own_packets(
    mux: IceMux,
) -> None:
    pairs = [await connect_pair(mux) for _ in range(5)]
    ports = {Candidate.from_sdp(c).port for server, _ in pairs
             for c in server.local_candidates() if "udp" in c}
    assert ports == {mux.udp_port}
    assert len(mux.sockets) == 1 and mux.sockets[0].connection_count == 5
    # DTLS-like (first byte 23) datagrams from each client reach only its own link.
    for index, (_, client) in enumerate(pairs):
        await client.send(bytes([23]) + f"client {index}".encode())
    for index, (server, _) in enumerate(pairs):
        got = await asyncio.wait_for(server._recv(), TIMEOUT)
        assert got == bytes([23]) + f"client {index}".encode()
    # SRTP-like datagrams go to the link's media handler, straight from the socket.
    seen: asyncio.Queue[bytes] = asyncio.Queue()
    pairs[2][0].set_media_handler(seen.put_nowait)
    await pairs[2][1].send(b"\x80" + b"rtp" * 10)
    assert await asyncio.wait_for(seen.get(), TIMEOUT) == b"\x80" + b"rtp" * 10
    # And back: the server side sends on the shared socket to the right client.
    pairs[3][0].send_now(bytes([23]) + b"to client 3")
    data = await asyncio.wait_for(pairs[3][1].recv(), TIMEOUT)
    assert data == bytes([23]) + b"to client 3"
    for server, client in pairs:
        await client.close()
        await server.stop()
    assert mux.sockets[0].connection_count == 0
    assert not mux._connections


async def test_hostile_packets_on_the_shared_port_harm_nobody(mux: IceMux) -> None:
    server, client = await connect_pair(mux)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.setblocking(False)
    target = ("127.0.0.1", mux.udp_port)
    before = mux.stats.unknown_address
    try:
        attacker.sendto(b"\x80" * 200, target)  # SRTP from an address no check came from
        attacker.sendto(b"\x42" + os.urandom(300), target)
        attacker.sendto(b"\x00\x01\x00\x08" + b"\x21\x12\xa4\x42" + b"x" * 12 + b"\x00\x06\x00\x40",
                        target)  # a STUN header whose USERNAME runs past the end
        # A check naming the live connection's ufrag but signed with the wrong password must
        # not move the connection's address to the attacker.
        forged = stun.Message(message_method=stun.Method.BINDING,
                              message_class=stun.Class.REQUEST)
        forged.attributes["USERNAME"] = f"{server.local_ufrag}:evil"
        forged.attributes["PRIORITY"] = 1
        forged.add_message_integrity(b"not the password")
        forged.add_fingerprint()
        attacker.sendto(bytes(forged), target)
        attacker.sendto(bytes([23]) + b"spoofed", target)
        # A check for the live ufrag whose PRIORITY is 2 bytes long: aioice's parser raises
        # struct.error on it, which must not close the socket everyone shares.
        name = f"{server.local_ufrag}:evil".encode()
        attrs = (struct.pack("!HH", 0x0006, len(name)) + name + bytes(-len(name) % 4)
                 + struct.pack("!HH", 0x0024, 2) + b"\x00\x05\x00\x00")
        attacker.sendto(struct.pack("!HHI", 1, len(attrs), 0x2112A442) + os.urandom(12) + attrs,
                        target)
        # Loopback delivers in send order: once the genuine packet is in, so are the others.
        await client.send(bytes([23]) + b"genuine")
        assert await asyncio.wait_for(server._recv(), TIMEOUT) == bytes([23]) + b"genuine"
        assert mux.stats.unknown_address >= before + 3  # SRTP, random bytes, the spoof
        assert mux.stats.malformed >= 1  # the struct.error check was caught, not raised
        peer = mux.sockets[0]._by_address
        assert attacker.getsockname() not in peer
    finally:
        attacker.close()
        await client.close()
        await server.stop()


def _framed(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = struct.unpack("!H", await reader.readexactly(2))
    return await reader.readexactly(length)


async def test_ice_tcp_check_nominates_a_tcp_pair_and_carries_data(mux: IceMux) -> None:
    server = IceLink(addresses=["127.0.0.1"], port_range=None, controlling=False, mux=mux)
    await server.gather()
    tcp = [Candidate.from_sdp(c) for c in server.local_candidates() if " tcp " in f" {c} "]
    assert tcp and tcp[0].tcptype == "passive" and tcp[0].port == mux.tcp_port
    client_ufrag, client_pwd = "clnt", "a-client-password-of-22+"
    server.start(client_ufrag, client_pwd)
    reader, writer = await asyncio.open_connection("127.0.0.1", mux.tcp_port)
    try:
        check = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        check.attributes["USERNAME"] = f"{server.local_ufrag}:{client_ufrag}"
        check.attributes["PRIORITY"] = 1
        check.attributes["ICE-CONTROLLING"] = 1
        check.attributes["USE-CANDIDATE"] = None
        check.add_message_integrity(server.local_pwd.encode())
        check.add_fingerprint()
        assert stun_local_ufrag(bytes(check)) == server.local_ufrag
        writer.write(_framed(bytes(check)))
        # roost answers, and checks back (a triggered check) over the same TCP connection;
        # the client answers that and repeats its nominating check, as an ICE agent would.
        answered = asyncio.Event()
        data_frames: asyncio.Queue[bytes] = asyncio.Queue()

        async def client_agent() -> None:
            while True:
                frame = await _read_frame(reader)
                if frame[0] > 1:
                    data_frames.put_nowait(frame)
                    continue
                message = stun.parse_message(frame)
                if message.message_class == stun.Class.RESPONSE:
                    assert message.transaction_id == check.transaction_id
                    answered.set()
                elif message.message_class == stun.Class.REQUEST:
                    reply = stun.Message(message_method=stun.Method.BINDING,
                                         message_class=stun.Class.RESPONSE,
                                         transaction_id=message.transaction_id)
                    reply.attributes["XOR-MAPPED-ADDRESS"] = writer.get_extra_info("sockname")[:2]
                    reply.add_message_integrity(client_pwd.encode())
                    reply.add_fingerprint()
                    writer.write(_framed(bytes(reply)))
                    writer.write(_framed(bytes(check)))

        agent = asyncio.ensure_future(client_agent())
        assert await asyncio.wait_for(server.wait_connected(), TIMEOUT)
        assert answered.is_set()
        writer.write(_framed(bytes([23]) + b"dtls over tcp"))
        assert await asyncio.wait_for(server._recv(), TIMEOUT) == bytes([23]) + b"dtls over tcp"
        server.send_now(bytes([23]) + b"and back")
        assert await asyncio.wait_for(data_frames.get(), TIMEOUT) == bytes([23]) + b"and back"
        agent.cancel()
    finally:
        writer.close()
        await server.stop()


async def test_tcp_connection_that_names_no_known_ufrag_is_closed(mux: IceMux) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", mux.tcp_port)
    check = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    check.attributes["USERNAME"] = "nobody:me"
    writer.write(_framed(bytes(check)))
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed by roost
    writer.close()

"""TURN methods and their errors, spoken as raw STUN over UDP."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aioice import stun
from tests.turn.helpers import (
    HOST,
    RawClient,
    credentials,
    eventually,
    free_udp_ports,
    raw_client,
    turn_server,
    udp_peer,
)

from roost.turn import TurnServer

Method = stun.Method


@asynccontextmanager
async def client(
    server: TurnServer, user: str = "alice", password: str | None = None, **issue: Any
) -> AsyncIterator[RawClient]:
    username, real_password = credentials(user, **issue)
    transport, protocol = await raw_client(server, username, password or real_password)
    try:
        yield protocol
    finally:
        transport.close()


def assert_signed(response: stun.Message, raw: RawClient) -> None:
    assert response.check_message_integrity(raw.key), response


async def test_binding_request_answers_the_mapped_address() -> None:
    async with turn_server() as server, client(server) as raw:
        response = await raw.request(Method.BINDING, sign=False)
        assert response.message_class == stun.Class.RESPONSE
        assert raw.transport is not None
        assert response.attributes["XOR-MAPPED-ADDRESS"] == raw.transport.get_extra_info("sockname")


async def test_allocate_challenges_then_succeeds() -> None:
    async with turn_server(domain="turn.example.com", advertised_host="203.0.113.7") as server:
        async with client(server) as raw:
            response = await raw.allocate()
            assert raw.realm == "turn.example.com"
            assert response.message_class == stun.Class.RESPONSE, response
            assert_signed(response, raw)
            relayed = response.attributes["XOR-RELAYED-ADDRESS"]
            assert relayed[0] == "203.0.113.7" and relayed[1] > 0
            assert raw.transport is not None
            mapped = raw.transport.get_extra_info("sockname")
            assert response.attributes["XOR-MAPPED-ADDRESS"] == mapped
            assert response.attributes["LIFETIME"] == 600
            assert server.allocation_count == 1


async def test_wrong_password_is_refused_with_401() -> None:
    async with turn_server() as server, client(server, password="not-it") as raw:
        response = await raw.allocate()
        assert response.error_code == 401
        assert "NONCE" in response.attributes and "REALM" in response.attributes
        assert server.allocation_count == 0
        assert server.stats()["auth_failures"] == 1


async def test_expired_credential_is_refused_with_401() -> None:
    async with turn_server() as server:
        async with client(server, ttl=60, now=time.time() - 120) as raw:
            assert (await raw.allocate()).error_code == 401
        assert server.allocation_count == 0


async def test_stale_nonce_is_answered_438_with_a_fresh_one() -> None:
    async with turn_server(nonce_ttl=-1.0) as server, client(server) as raw:
        response = await raw.allocate()
        assert response.error_code == 438
        assert response.attributes["NONCE"] != raw.nonce


async def test_quota_per_user_then_capacity() -> None:
    async with turn_server(max_allocations_per_user=2, max_allocations=3) as server:
        async with client(server) as a1, client(server) as a2, client(server) as a3:
            assert (await a1.allocate()).message_class == stun.Class.RESPONSE
            assert (await a2.allocate()).message_class == stun.Class.RESPONSE
            refused = await a3.allocate()
            assert refused.error_code == 486
            assert_signed(refused, a3)
            async with client(server, "bob") as b1, client(server, "carol") as c1:
                assert (await b1.allocate()).message_class == stun.Class.RESPONSE
                assert (await c1.allocate()).error_code == 508
            assert server.allocation_count == 3


async def test_no_free_relay_port_is_508() -> None:
    port = free_udp_ports(1)[0]
    async with turn_server(relay_range_start=port, relay_range_end=port) as server:
        async with client(server) as a, client(server, "bob") as b:
            ok = await a.allocate()
            assert ok.attributes["XOR-RELAYED-ADDRESS"] == (HOST, port)
            assert (await b.allocate()).error_code == 508


async def test_second_allocate_on_a_5_tuple_is_437_but_retransmission_is_answered() -> None:
    async with turn_server() as server, client(server) as raw:
        first = await raw.allocate()
        again = stun.Message(Method.ALLOCATE, stun.Class.REQUEST, first.transaction_id)
        again.attributes = {
            "REQUESTED-TRANSPORT": 0x11000000,
            "USERNAME": raw.username,
            "REALM": raw.realm,
            "NONCE": raw.nonce,
        }
        again.add_message_integrity(raw.key)
        retransmitted = await raw.transact(again)
        assert retransmitted.attributes == first.attributes
        assert (await raw.allocate()).error_code == 437
        assert server.allocation_count == 1


async def test_only_udp_relays_are_offered() -> None:
    async with turn_server() as server, client(server) as raw:
        attrs = {"REQUESTED-TRANSPORT": 0x06000000}
        assert (await raw.request(Method.ALLOCATE, attrs)).error_code == 442
        assert (await raw.request(Method.ALLOCATE, {})).error_code == 400


async def test_refresh_clamps_lifetime_and_zero_deletes() -> None:
    async with turn_server(max_lifetime=1200) as server, client(server) as raw:
        assert (await raw.allocate(lifetime=30)).attributes["LIFETIME"] == 600
        refreshed = await raw.request(Method.REFRESH, {"LIFETIME": 99999})
        assert refreshed.attributes["LIFETIME"] == 1200
        assert_signed(refreshed, raw)
        deleted = await raw.request(Method.REFRESH, {"LIFETIME": 0})
        assert deleted.message_class == stun.Class.RESPONSE
        assert deleted.attributes["LIFETIME"] == 0
        assert server.allocation_count == 0
        assert (await raw.request(Method.REFRESH, {"LIFETIME": 600})).error_code == 437


async def test_allocation_permission_and_channel_expire_on_the_sweep() -> None:
    async with turn_server() as server, client(server) as raw:
        await raw.allocate()
        peer = (HOST, 9)
        attrs = {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": peer}
        await raw.request(Method.CHANNEL_BIND, attrs)
        await raw.request(Method.REFRESH, {"LIFETIME": 1200})
        assert server.stats()["permissions"] == 1 and server.stats()["channels"] == 1
        server.sweep(time.monotonic() + 301)
        assert server.stats()["permissions"] == 0 and server.stats()["channels"] == 1
        server.sweep(time.monotonic() + 601)
        assert server.stats()["channels"] == 0 and server.allocation_count == 1
        server.sweep(time.monotonic() + 1201)
        assert server.allocation_count == 0


async def test_allocation_expires_by_the_timer() -> None:
    async with turn_server(max_lifetime=1, sweep_interval=0.05) as server, client(server) as raw:
        assert (await raw.allocate()).attributes["LIFETIME"] == 1
        await eventually(lambda: server.allocation_count == 0, timeout=5, what="expiry")


async def test_channel_bind_rejects_bad_numbers_and_rebinding() -> None:
    async with turn_server() as server, client(server) as raw:
        await raw.allocate()
        peer, other = (HOST, 40001), (HOST, 40002)
        for number in (0x3FFF, 0x5000, None):
            attrs: dict[str, Any] = {"XOR-PEER-ADDRESS": peer}
            if number is not None:
                attrs["CHANNEL-NUMBER"] = number
            assert (await raw.request(Method.CHANNEL_BIND, attrs)).error_code == 400
        ok = {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": peer}
        assert (await raw.request(Method.CHANNEL_BIND, ok)).message_class == stun.Class.RESPONSE
        assert (await raw.request(Method.CHANNEL_BIND, ok)).message_class == stun.Class.RESPONSE
        moved = {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": other}
        assert (await raw.request(Method.CHANNEL_BIND, moved)).error_code == 400
        second = {"CHANNEL-NUMBER": 0x4001, "XOR-PEER-ADDRESS": peer}
        assert (await raw.request(Method.CHANNEL_BIND, second)).error_code == 400
        v6 = {"CHANNEL-NUMBER": 0x4002, "XOR-PEER-ADDRESS": ("::1", 5000)}
        assert (await raw.request(Method.CHANNEL_BIND, v6)).error_code == 443


async def test_channel_data_round_trip() -> None:
    async with turn_server() as server, client(server) as raw:
        relayed = (await raw.allocate()).attributes["XOR-RELAYED-ADDRESS"]
        peer_transport, peer = await udp_peer()
        try:
            peer_addr = peer_transport.get_extra_info("sockname")
            bind = {"CHANNEL-NUMBER": 0x4321, "XOR-PEER-ADDRESS": peer_addr}
            bound = await raw.request(Method.CHANNEL_BIND, bind)
            assert bound.message_class == stun.Class.RESPONSE
            raw.send(struct.pack("!HH", 0x4321, 5) + b"hello\x00\x00\x00")
            data, source = await peer.next()
            assert data == b"hello" and source == relayed
            peer_transport.sendto(b"world!", relayed)
            frame = await raw.next_other()
            assert struct.unpack("!HH", frame[:4]) == (0x4321, 6) and frame[4:10] == b"world!"
        finally:
            peer_transport.close()


async def test_send_and_data_indications_need_a_permission() -> None:
    async with turn_server() as server, client(server) as raw:
        relayed = (await raw.allocate()).attributes["XOR-RELAYED-ADDRESS"]
        peer_transport, peer = await udp_peer()
        try:
            peer_addr = peer_transport.get_extra_info("sockname")
            send = stun.Message(Method.SEND, stun.Class.INDICATION)
            send.attributes = {"XOR-PEER-ADDRESS": peer_addr, "DATA": b"too early"}
            raw.send(bytes(send))
            peer_transport.sendto(b"unsolicited", relayed)
            await eventually(lambda: server.stats().get("dropped_no_permission", 0) == 1)
            await eventually(lambda: server.stats().get("dropped_out", 0) == 1)
            assert peer.received.empty() and raw.other.empty() and raw.received.empty()

            perm = {"XOR-PEER-ADDRESS": peer_addr}
            ok = await raw.request(Method.CREATE_PERMISSION, perm)
            assert ok.message_class == stun.Class.RESPONSE
            send = stun.Message(Method.SEND, stun.Class.INDICATION)
            send.attributes = {"XOR-PEER-ADDRESS": peer_addr, "DATA": b"now"}
            raw.send(bytes(send))
            assert (await peer.next())[0] == b"now"
            peer_transport.sendto(b"answer", relayed)
            indication = stun.parse_message(await raw.next_other())
            assert indication.message_method == Method.DATA
            assert indication.attributes["DATA"] == b"answer"
            assert indication.attributes["XOR-PEER-ADDRESS"] == peer_addr
        finally:
            peer_transport.close()


async def test_bandwidth_over_the_rate_is_dropped() -> None:
    async with turn_server(allocation_bandwidth=2000) as server, client(server) as raw:
        await raw.allocate()
        peer_transport, peer = await udp_peer()
        try:
            peer_addr = peer_transport.get_extra_info("sockname")
            bind = {"CHANNEL-NUMBER": 0x4000, "XOR-PEER-ADDRESS": peer_addr}
            await raw.request(Method.CHANNEL_BIND, bind)
            for _ in range(20):
                raw.send(struct.pack("!HH", 0x4000, 1000) + bytes(1000))
            await eventually(lambda: server.stats().get("dropped_out", 0) >= 17, what="drops")
            await peer.next()
            assert peer.received.qsize() <= 2  # 2000 bytes of burst, then the rate
        finally:
            peer_transport.close()


async def test_another_users_credentials_on_the_5_tuple_get_441() -> None:
    async with turn_server() as server, client(server) as raw:
        await raw.allocate()
        raw.username, raw.password = credentials("mallory")
        refused = await raw.request(Method.REFRESH, {"LIFETIME": 600})
        assert refused.error_code == 441
        assert_signed(refused, raw)
        assert server.allocation_count == 1


async def test_peers_outside_roosts_own_addresses_are_forbidden() -> None:
    """Not an open relay: with peer_hosts set (roost passes its media addresses), a
    permission or channel for any other address is refused with 403."""
    async with turn_server(peer_hosts=["127.0.0.1"]) as server, client(server) as raw:
        await raw.allocate()
        refused = await raw.request(Method.CREATE_PERMISSION,
                                    {"XOR-PEER-ADDRESS": ("127.0.0.2", 5000)})
        assert refused.message_class == stun.Class.ERROR
        assert refused.attributes["ERROR-CODE"][0] == 403
        bind = {"XOR-PEER-ADDRESS": ("127.0.0.2", 5000), "CHANNEL-NUMBER": 0x4001}
        refused = await raw.request(Method.CHANNEL_BIND, bind)
        assert refused.attributes["ERROR-CODE"][0] == 403
        allowed = await raw.request(Method.CREATE_PERMISSION,
                                    {"XOR-PEER-ADDRESS": ("127.0.0.1", 5000)})
        assert allowed.message_class == stun.Class.RESPONSE
        assert server.stats()["error_403"] == 2

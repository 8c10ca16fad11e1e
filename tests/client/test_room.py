"""roost.client against roost: joining, presence, metadata, data, RPC and streams."""

from __future__ import annotations

import asyncio

import pytest
from tests.client.helpers import Recorder, joined, wait_until
from tests.helpers.server import RoostServer, make_token

from roost import client as rc

pytestmark = pytest.mark.timeout(60)
ROOM = "client-room"


async def test_join_presence_and_leave(server: RoostServer) -> None:
    async with joined(server, "alice", ROOM) as alice:
        events = Recorder(alice, "participant_connected", "participant_disconnected")
        assert alice.connection_state == rc.ConnectionState.CONN_CONNECTED
        assert alice.local_participant.sid.startswith("PA_")
        assert alice.name == ROOM and (await alice.sid).startswith("RM_")
        bob = rc.Room()
        bob_events = Recorder(bob, "connection_state_changed", "disconnected", "connected",
                              "token_refreshed")
        first_token = server.token("bob", ROOM, name="Bob")
        await bob.connect(server.url, first_token)
        await bob_events.wait("token_refreshed")  # roost refreshes the token right at join
        assert bob.token and bob.token != first_token
        assert "alice" in bob.remote_participants
        (p,) = await events.wait("participant_connected")
        assert (p.identity, p.name, p.sid) == ("bob", "Bob", bob.local_participant.sid)
        assert alice.remote_participants["bob"] is p
        await bob.disconnect()
        (gone,) = await events.wait("participant_disconnected")
        assert gone is p and "bob" not in alice.remote_participants
        assert bob.connection_state == rc.ConnectionState.CONN_DISCONNECTED
        assert bob_events.all("disconnected") == [(rc.DisconnectReason.CLIENT_INITIATED,)]
        assert [a for (a,) in bob_events.all("connection_state_changed")] == [
            rc.ConnectionState.CONN_CONNECTED, rc.ConnectionState.CONN_DISCONNECTED]


async def test_a_bad_token_fails_the_connect_with_the_servers_reason(server: RoostServer
                                                                     ) -> None:
    token = make_token(server.api_key, "not-the-secret", "mallory", ROOM)
    with pytest.raises(rc.ConnectError) as err:
        await rc.Room().connect(server.url, token)
    assert err.value.status == 401


async def test_metadata_updates_wait_for_the_server_and_need_the_grant(server: RoostServer
                                                                      ) -> None:
    async with joined(server, "alice", ROOM) as alice, \
            joined(server, "bob", ROOM, can_update_own_metadata=False) as bob:
        events = Recorder(bob, "participant_metadata_changed", "participant_attributes_changed")
        await alice.local_participant.set_metadata("hello")
        await alice.local_participant.set_attributes({"a": "1", "b": "2"})
        (p, old, new) = await events.wait("participant_metadata_changed")
        assert (p.identity, old, new) == ("alice", "", "hello")
        (changed, p) = await events.wait("participant_attributes_changed")
        assert changed == {"a": "1", "b": "2"}
        with pytest.raises(RuntimeError, match="NOT_ALLOWED"):
            await bob.local_participant.set_metadata("nope")


async def test_data_reaches_destinations_only_and_is_never_echoed(server: RoostServer) -> None:
    async with joined(server, "alice", ROOM) as alice, joined(server, "bob", ROOM) as bob, \
            joined(server, "carol", ROOM) as carol:
        got = {name: Recorder(room, "data_received")
               for name, room in (("alice", alice), ("bob", bob), ("carol", carol))}
        await wait_until(lambda: len(alice.remote_participants) == 2, what="everyone")
        await alice.local_participant.publish_data(b"psst", topic="t",
                                                   destination_identities=["bob"])
        await alice.local_participant.publish_data("to all")
        for name in ("bob", "carol"):
            await got[name].wait("data_received", lambda p: p.data == b"to all")
        assert [p.data for (p,) in got["bob"].all("data_received")] == [b"psst", b"to all"]
        assert [p.data for (p,) in got["carol"].all("data_received")] == [b"to all"]
        (packet,) = got["bob"].all("data_received")[0]
        assert packet.topic == "t" and packet.participant.identity == "alice"
        assert got["alice"].all("data_received") == []


async def test_rpc_errors_and_limits(server: RoostServer) -> None:
    async with joined(server, "alice", ROOM) as alice, \
            joined(server, "bob", ROOM, options=rc.RoomOptions(client_protocol=0)) as bob:
        await wait_until(lambda: "bob" in alice.remote_participants, what="bob")
        local = alice.local_participant
        with pytest.raises(rc.RpcError) as err:
            await local.perform_rpc(destination_identity="nobody", method="x", payload="")
        assert err.value.code == rc.RpcError.ErrorCode.RECIPIENT_NOT_FOUND
        with pytest.raises(rc.RpcError) as err:  # bob speaks v1 only: 15 KiB cap
            await local.perform_rpc(destination_identity="bob", method="x", payload="y" * 15_361)
        assert err.value.code == rc.RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE

        bob.local_participant.register_rpc_method("echo", lambda d: d.payload)
        assert await local.perform_rpc(destination_identity="bob", method="echo",
                                       payload="y" * 15_360) == "y" * 15_360

        started = asyncio.Event()

        async def hang(data: rc.RpcInvocationData) -> str:
            started.set()
            await asyncio.sleep(30)
            return ""

        bob.local_participant.register_rpc_method("hang", hang)
        call = asyncio.ensure_future(local.perform_rpc(destination_identity="bob",
                                                       method="hang", payload=""))
        await asyncio.wait_for(started.wait(), 10)
        await bob.disconnect()
        with pytest.raises(rc.RpcError) as err:
            await asyncio.wait_for(call, 10)
        assert err.value.code == rc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED


async def test_streams_split_utf8_safely_and_report_aborts(server: RoostServer) -> None:
    async with joined(server, "alice", ROOM) as alice, joined(server, "bob", ROOM) as bob:
        await wait_until(lambda: "bob" in alice.remote_participants, what="bob")
        readers: asyncio.Queue[rc.TextStreamReader] = asyncio.Queue()
        bob.register_text_stream_handler("chat", lambda reader, sender: readers.put_nowait(reader))
        text = "€" * 20_000  # 60,000 bytes: chunk boundaries fall inside characters
        await alice.local_participant.send_text(text, topic="chat")
        reader = await asyncio.wait_for(readers.get(), 10)
        assert await asyncio.wait_for(reader.read_all(), 10) == text
        assert reader.info.size == 60_000

        writer = await alice.local_participant.stream_text(topic="chat")
        await writer.write("partial")
        await writer.aclose(reason="cancelled by user")
        reader = await asyncio.wait_for(readers.get(), 10)
        with pytest.raises(rc.StreamError, match="cancelled by user"):
            await asyncio.wait_for(reader.read_all(), 10)
        with pytest.raises(ValueError):
            bob.register_text_stream_handler("chat", lambda reader, sender: None)


async def test_dtmf_and_large_rpc_between_roost_clients(server: RoostServer) -> None:
    async with joined(server, "alice", ROOM) as alice, joined(server, "bob", ROOM) as bob:
        events = Recorder(bob, "sip_dtmf_received")
        await wait_until(lambda: "bob" in alice.remote_participants, what="bob")
        await alice.local_participant.publish_dtmf(code=5, digit="5")
        (dtmf,) = await events.wait("sip_dtmf_received")
        assert (dtmf.code, dtmf.digit, dtmf.participant.identity) == (5, "5", "alice")
        bob.local_participant.register_rpc_method("upper", lambda d: d.payload.upper())
        big = "abcdefghij" * 4_000  # 40 KB: over data streams (client_protocol 1 on both)
        assert await alice.local_participant.perform_rpc(
            destination_identity="bob", method="upper", payload=big) == big.upper()


async def test_an_oversized_incoming_stream_fails_with_stream_error(server: RoostServer) -> None:
    async with joined(server, "alice", ROOM) as alice, joined(server, "bob", ROOM) as bob:
        await wait_until(lambda: "bob" in alice.remote_participants, what="bob")
        bob._streams.max_bytes = 100_000
        readers: asyncio.Queue[rc.ByteStreamReader] = asyncio.Queue()
        bob.register_byte_stream_handler("f", lambda reader, sender: readers.put_nowait(reader))
        await alice.local_participant.send_bytes(b"x" * 150_000, topic="f")
        reader = await asyncio.wait_for(readers.get(), 10)
        with pytest.raises(rc.StreamError, match="exceeds"):
            await asyncio.wait_for(reader.read_all(), 10)


async def test_a_client_gone_without_its_leave_is_removed_once_its_transport_fails(
        server: RoostServer) -> None:
    # Bob's socket and connections close but his leave is lost (as a TCP reset can lose
    # it): roost removes him 5 s after his connection failed, not after the 20 s resume grace
    async with joined(server, "alice", ROOM) as alice:
        events = Recorder(alice, "participant_connected", "participant_disconnected")
        async with joined(server, "bob", ROOM) as bob:
            (p,) = await events.wait("participant_connected")
            engine = bob._engine
            assert engine is not None
            started = asyncio.get_running_loop().time()
            await engine.close(send_leave=False)
            (gone,) = await events.wait("participant_disconnected", timeout=12)
            waited = asyncio.get_running_loop().time() - started
            assert gone is p
            assert gone.disconnect_reason == rc.DisconnectReason.CONNECTION_TIMEOUT
            assert 4.0 < waited < 12.0, waited

"""Several roost processes sharing a real redis-server: one room per node, clients and API
calls on any node, a node killed, Redis restarted, a node drained.

Needs `redis-server` (installed by scripts/setup-redis from Debian's packages when missing;
the tests skip, saying why, only when that fails).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from livekit import api
from livekit.protocol import models, rtc
from livekit.protocol import room as room_pb
from tests.helpers.cluster import Cluster
from tests.helpers.redis import RedisProcess, RedisUnavailable, SentinelProcess
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer
from tests.helpers.wait import until, until_async
from tests.rawclient import ClientPool, HandshakeRefused, RawClient

SCENARIOS = "tests.scenarios.multinode"


def test_nodes_find_redis_through_sentinel(redis_server: RedisProcess, tmp_path: Path,
                                           start_server: Callable[..., RoostServer]) -> None:
    try:
        sentinel = SentinelProcess(redis_server, tmp_path).start()
    except RedisUnavailable as exc:
        pytest.skip(f"redis-server --sentinel unavailable: {exc}")
    try:
        config = tmp_path / "livekit.yaml"
        config.write_text(f"redis:\n  sentinel_master_name: {sentinel.name}\n"
                          f"  sentinel_addresses: ['{sentinel.address}']\n")
        nodes = [start_server("--config", str(config)) for _ in range(2)]
        cluster = Cluster(redis_server, nodes)
        cluster.wait_registered(2)

        async def scenario() -> None:
            pa, pb = pool(nodes[0]), pool(nodes[1])
            try:
                alice = await pa.join("alice", "watched")
                bob = await pb.join("bob", "watched")
                assert bob.join_response is not None and alice.join_response is not None
                assert bob.join_response.server_info.node_id == \
                    alice.join_response.server_info.node_id
                await alice.participant_update(lambda p: p.identity == "bob")
            finally:
                await pa.close_all()
                await pb.close_all()

        asyncio.run(scenario())
    finally:
        sentinel.kill()


def pool(server: RoostServer) -> ClientPool:
    return ClientPool(server.url, server.api_key, server.api_secret)


def admin_api(server: RoostServer) -> api.LiveKitAPI:
    return api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll an async `check` until it returns a truthy value without raising."""
    return await until_async(check, timeout, what)


# -- signalling across nodes ------------------------------------------------------------------

def test_clients_on_two_nodes_share_a_room_and_exchange_data(
        cluster: Callable[[int], Cluster]) -> None:
    a, b = cluster(2).nodes
    run_scenario(f"{SCENARIOS}:data_across_nodes", a.info, b.info)


def test_audio_from_one_node_is_heard_on_the_other(cluster: Callable[[int], Cluster]) -> None:
    a, b = cluster(2).nodes
    result = run_scenario(f"{SCENARIOS}:audio_across_nodes", a.info, b.info)
    assert abs(result["pitch_hz"] - 440) < 15


async def test_joins_through_any_node_land_on_the_room_node(
        cluster: Callable[[int], Cluster]) -> None:
    c = cluster(3)
    pools = [pool(s) for s in c.nodes]
    try:
        alice = await pools[0].join("alice", "hall")
        owner = alice.join_response.server_info.node_id  # type: ignore[union-attr]
        assert c.room_owner("hall") == owner
        bob = await pools[1].join("bob", "hall")
        carol = await pools[2].join("carol", "hall")
        for client in (bob, carol):
            assert client.join_response is not None
            assert client.join_response.server_info.node_id == owner
        assert [p.identity for p in carol.join_response.other_participants] == ["alice", "bob"]
        await alice.participant_update(lambda p: p.identity == "carol")
        # Requests and responses cross the relay in both encodings.
        assert (await bob.ping(as_json=True)).last_ping_timestamp > 0
        assert carol.last_frame_was_text is False
        await bob.leave()
        await bob.expect_close()
        gone = await carol.participant_update(
            lambda p: p.identity == "bob" and p.state == models.ParticipantInfo.State.DISCONNECTED)
        assert gone.disconnect_reason == models.DisconnectReason.CLIENT_INITIATED
    finally:
        for p in pools:
            await p.close_all()


async def test_refusals_cross_the_relay_before_the_upgrade(
        cluster: Callable[[int], Cluster]) -> None:
    c = cluster(2)
    async with admin_api(c.nodes[0]) as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name="tiny", max_participants=1))
    owner = c.server(c.room_owner("tiny") or "")
    (elsewhere,) = c.others(owner)
    far = pool(elsewhere)
    try:
        first = await far.join("first", "tiny")
        assert first.join_response is not None
        with pytest.raises(HandshakeRefused) as refused:
            await far.connect("second", "tiny")
        assert refused.value.status == 503, refused.value
        # A resume naming no session: the upgrade happens, then one RECONNECT leave.
        stale = await far.connect("ghost", "tiny", reconnect=1, sid="PA_nosuchsession")
        leave = await stale.recv_until("leave")
        assert leave.leave.action == rtc.LeaveRequest.Action.RECONNECT
        await stale.expect_close()
    finally:
        await far.close_all()


async def test_resume_through_another_node(cluster: Callable[[int], Cluster]) -> None:
    a, b = cluster(2).nodes
    pa, pb = pool(a), pool(b)
    try:
        alice = await pa.join("alice", "resume")
        watcher = await pb.join("watcher", "resume")
        await alice.close()  # the network drops; the participant waits for a resume
        token = pa.token("alice", "resume")
        back = await RawClient.connect(b.url, token, reconnect=1, sid=alice.sid,
                                       identity="alice")
        pb.clients.append(back)
        reconnect = await back.recv_until("reconnect")
        assert reconnect.reconnect.server_info.node_id == \
            watcher.join_response.server_info.node_id  # type: ignore[union-attr]
        assert (await back.ping()).last_ping_timestamp > 0
    finally:
        await pa.close_all()
        await pb.close_all()


# -- RoomService on any node ------------------------------------------------------------------

async def test_room_service_through_a_node_that_does_not_host_the_room(
        cluster: Callable[[int], Cluster]) -> None:
    c = cluster(2)
    pa = pool(c.nodes[0])
    try:
        alice = await pa.join("alice", "api-room", can_update_own_metadata=True)
        owner = c.server(alice.join_response.server_info.node_id)  # type: ignore[union-attr]
        (other,) = c.others(owner)
        async with admin_api(other) as lk:
            listed = await lk.room.list_participants(
                room_pb.ListParticipantsRequest(room="api-room"))
            assert [p.identity for p in listed.participants] == ["alice"]
            got = await lk.room.get_participant(
                room_pb.RoomParticipantIdentity(room="api-room", identity="alice"))
            assert got.sid == alice.sid

            room = await lk.room.update_room_metadata(
                room_pb.UpdateRoomMetadataRequest(room="api-room", metadata="from afar"))
            assert room.metadata == "from afar"
            update = await alice.recv_until("room_update")
            assert update.room_update.room.metadata == "from afar"

            rooms = await lk.room.list_rooms(room_pb.ListRoomsRequest())
            assert "api-room" in [r.name for r in rooms.rooms]
            created = await lk.room.create_room(room_pb.CreateRoomRequest(name="made-afar"))
            assert created.name == "made-afar" and c.room_owner("made-afar")
            for server in c.nodes:  # every node lists every room
                async with admin_api(server) as each:
                    names = {r.name for r in (await each.room.list_rooms(
                        room_pb.ListRoomsRequest())).rooms}
                assert {"api-room", "made-afar"} <= names, (server.http_url, names)

            await lk.room.remove_participant(
                room_pb.RoomParticipantIdentity(room="api-room", identity="alice"))
            leave = await alice.recv_until("leave")
            assert leave.leave.reason == models.DisconnectReason.PARTICIPANT_REMOVED
            with pytest.raises(api.TwirpError) as missing:
                await lk.room.list_participants(room_pb.ListParticipantsRequest(room="nowhere"))
            assert missing.value.code == "not_found"
    finally:
        await pa.close_all()


async def test_new_rooms_spread_over_the_nodes(cluster: Callable[[int], Cluster]) -> None:
    c = cluster(2)
    async with admin_api(c.nodes[0]) as lk:
        for i in range(8):
            await lk.room.create_room(room_pb.CreateRoomRequest(name=f"spread-{i}"))
    owners = [c.room_owner(f"spread-{i}") for i in range(8)]
    counts = {node_id: owners.count(node_id) for node_id in c.registry()}
    assert sum(counts.values()) == 8 and min(counts.values()) >= 3, counts


# -- failures -----------------------------------------------------------------------------------

async def test_killed_owner_leaves_the_cluster_serving_and_the_room_rejoinable(
        cluster: Callable[[int], Cluster]) -> None:
    c = cluster(3)
    entry = pool(c.nodes[0])
    alice = await entry.join("alice", "fragile")
    owner_id = alice.join_response.server_info.node_id  # type: ignore[union-attr]
    victim = c.server(owner_id)
    await entry.close_all()
    c.kill(victim)
    killed_at = time.monotonic()
    survivor = c.nodes[0]
    far = pool(survivor)
    try:
        async def rejoin() -> RawClient:
            return await far.join("alice", "fragile", timeout=3)

        again = await eventually(rejoin, 15, "a rejoin through a surviving node")
        rejoined_after = time.monotonic() - killed_at
        new_owner = again.join_response.server_info.node_id
        assert new_owner != owner_id and new_owner in {c.node_id(s) for s in c.nodes}
        # The dead node's registration and claims are gone within seconds.
        await until(lambda: owner_id not in c.registry()
                    and owner_id not in c.redis.keys("roost:room:*").values(), 8,
                    lambda: f"the dead node's keys to go; keys: {c.redis.keys()}", interval=0.2)
        async with admin_api(c.nodes[-1]) as lk:
            rooms = await lk.room.list_rooms(room_pb.ListRoomsRequest())
            assert "fragile" in [r.name for r in rooms.rooms]
        assert rejoined_after < 10, rejoined_after
    finally:
        await far.close_all()


async def test_redis_restart_is_survived(cluster: Callable[[int], Cluster]) -> None:
    c = cluster(2)
    async with admin_api(c.nodes[0]) as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name="sturdy"))
    owner_id = c.room_owner("sturdy") or ""
    owner = c.server(owner_id)
    (other,) = c.others(owner)
    po, px = pool(owner), pool(other)
    try:
        alice = await po.join("alice", "sturdy")  # signalling held by the room's node
        bob = await px.join("bob", "sturdy")  # signalling relayed through Redis
        c.redis.restart()  # SIGKILL and start again on the same port, empty
        # A relayed connection may have lost frames with Redis: it is closed, and the
        # client resumes; a connection to the room's node itself is not touched.
        closed = await bob.expect_close(10)
        assert closed.code == 1011, closed
        assert (await alice.ping()).last_ping_timestamp > 0
        # Both nodes register again and the owner re-claims its room (not re-created).
        c.wait_registered(2)
        await until(lambda: c.room_owner("sturdy") == owner_id, 10,
                    lambda: f"the owner's claim on 'sturdy'; keys: {c.redis.keys()}",
                    interval=0.1)

        async def resume_bob() -> rtc.SignalResponse:
            back = await RawClient.connect(other.url, px.token("bob", "sturdy"), reconnect=1,
                                           sid=bob.sid, identity="bob")
            px.clients.append(back)
            return await back.recv_until("reconnect", 3)

        resumed = await eventually(resume_bob, 10, "bob's resume through the other node")
        assert resumed.reconnect.server_info.node_id == owner_id
        carol = await px.join("carol", "sturdy")
        assert carol.join_response is not None
        assert [p.identity for p in carol.join_response.other_participants] == ["alice", "bob"]
        async with admin_api(other) as lk:
            made = await lk.room.create_room(room_pb.CreateRoomRequest(name="after-restart"))
            assert made.name == "after-restart"
        for server in (owner, other):
            assert server.process is not None and server.process.poll() is None
    finally:
        await po.close_all()
        await px.close_all()


def test_sdk_clients_keep_exchanging_data_across_a_redis_restart(
        cluster: Callable[[int], Cluster], tmp_path: Path) -> None:
    c = cluster(2)
    a, b = c.nodes
    ready, restarted = tmp_path / "ready", tmp_path / "restarted"
    outcome: dict[str, Any] = {}

    def restart_redis() -> None:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if ready.exists():
            c.redis.restart()
            restarted.write_text("restarted")

    helper = threading.Thread(target=restart_redis, daemon=True)
    helper.start()
    outcome = run_scenario(f"{SCENARIOS}:data_survives_redis_restart", a.info, b.info,
                           str(ready), str(restarted), timeout=90)
    helper.join(5)
    assert outcome["recovered_s"] < 30, outcome


async def test_sigterm_drains_a_node_and_frees_its_rooms(
        cluster: Callable[[int], Cluster]) -> None:
    c = cluster(2)
    entry = pool(c.nodes[0])
    try:
        alice = await entry.join("alice", "closing")
        owner_id = alice.join_response.server_info.node_id  # type: ignore[union-attr]
        victim = c.server(owner_id)
        (survivor,) = c.others(victim)
        assert victim.process is not None
        started = time.monotonic()
        victim.process.send_signal(signal.SIGTERM)
        leave = await alice.recv_until("leave", timeout=10)
        assert leave.leave.reason == models.DisconnectReason.SERVER_SHUTDOWN
        assert victim.process.wait(15) == 0
        assert time.monotonic() - started < 12
        # The node removed its registration and its claims: the room can move at once.
        assert owner_id not in c.registry()
        assert c.room_owner("closing") is None
        far = pool(survivor)
        try:
            bob = await far.join("bob", "closing")
            assert bob.join_response.server_info.node_id == c.node_id(survivor)
        finally:
            await far.close_all()
    finally:
        await entry.close_all()


async def test_sigterm_on_a_relaying_node_sends_its_clients_to_reconnect(
        cluster: Callable[[int], Cluster]) -> None:
    c = cluster(2)
    async with admin_api(c.nodes[0]) as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name="relayed"))
    owner = c.server(c.room_owner("relayed") or "")
    (relay,) = c.others(owner)
    po, pr = pool(owner), pool(relay)
    try:
        bob = await pr.join("bob", "relayed")
        assert relay.process is not None
        relay.process.send_signal(signal.SIGTERM)
        closed = await bob.expect_close(10)
        assert closed.code == 1001, closed  # going away: resume elsewhere
        assert relay.process.wait(15) == 0
        back = await RawClient.connect(owner.url, po.token("bob", "relayed"), reconnect=1,
                                       sid=bob.sid, identity="bob")
        po.clients.append(back)
        resumed = await back.recv_until("reconnect")
        assert resumed.reconnect.server_info.node_id == c.node_id(owner)
    finally:
        await po.close_all()
        await pr.close_all()


async def test_a_room_claimed_by_another_node_is_evicted_and_its_clients_rejoin_there(
        cluster: Callable[[int], Cluster]) -> None:
    c = cluster(2)
    async with admin_api(c.nodes[0]) as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name="split"))
    owner = c.server(c.room_owner("split") or "")
    (other,) = c.others(owner)
    po, px = pool(owner), pool(other)
    try:
        alice = await po.join("alice", "split")
        # As after a Redis loss: another node got the room meanwhile.
        client = redis.Redis(port=c.redis.port)
        client.set("roost:room:split", c.node_id(other), px=5000)
        client.close()
        leave = await alice.recv_until("leave", timeout=5)
        assert leave.leave.action == rtc.LeaveRequest.Action.RECONNECT
        again = await px.join("alice", "split")
        assert again.join_response is not None
        assert again.join_response.server_info.node_id == c.node_id(other)
        assert c.room_owner("split") == c.node_id(other)
    finally:
        await po.close_all()
        await px.close_all()

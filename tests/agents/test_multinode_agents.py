"""Agent dispatch across nodes on a real Redis: a worker registered on one node serves rooms
hosted on another; its job status, its loss and the job's end cross the bus both ways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from livekit import api
from livekit.protocol import agent, models
from livekit.protocol import room as room_pb
from tests.agents.conftest import Spawn
from tests.agents.rawworker import RawWorker
from tests.helpers.agents import agents_available
from tests.helpers.cluster import Cluster
from tests.helpers.server import RoostServer
from tests.helpers.wait import until_async

pytestmark = pytest.mark.timeout(240)

JS = agent.JobStatus
AGENT = models.ParticipantInfo.Kind.AGENT


def client(server: RoostServer) -> api.LiveKitAPI:
    return api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)


async def room_on(lk: api.LiveKitAPI, nodes: Cluster, name: str) -> RoostServer:
    """Create `name` and return the node that hosts it."""
    await lk.room.create_room(api.CreateRoomRequest(name=name))
    owner = nodes.room_owner(name)
    assert owner is not None, f"{name} has no owner in Redis"
    return nodes.server(owner)


async def echo(lk: api.LiveKitAPI, room: str, identity: str) -> str:
    """RoomService.PerformRpc `test.echo` to an agent (livekit-api has no wrapper for it)."""
    service = lk.room
    reply = await service._client.request(
        "RoomService", "PerformRpc",
        room_pb.PerformRpcRequest(room=room, destination_identity=identity,
                                  method="test.echo", payload=room),
        service._auth_header(api.VideoGrants(room_admin=True, room=room)),
        room_pb.PerformRpcResponse)
    return str(reply.payload)


async def job_states(lk: api.LiveKitAPI, room: str) -> list[agent.JobState]:
    return [j.state for d in await lk.agent_dispatch.list_dispatch(room) for j in d.state.jobs]


async def test_a_worker_on_one_node_takes_jobs_of_a_room_on_the_other(
        cluster: Callable[..., Cluster]) -> None:
    nodes = cluster(2)
    lk = client(nodes.nodes[0])
    worker: RawWorker | None = None
    try:
        home = await room_on(lk, nodes, "far-room")
        (away,) = nodes.others(home)
        worker = await RawWorker.connect(away)  # registered on the node without the room
        await worker.register(agent_name="far")
        dispatch = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
            agent_name="far", room="far-room", metadata="across"))
        offer = (await worker.expect("availability")).availability.job
        assert offer.room.name == "far-room" and offer.metadata == "across"
        assert offer.dispatch_id == dispatch.id
        await worker.answer(offer, True, identity="far-agent")
        assignment = (await worker.expect("assignment")).assignment
        assert assignment.job.id == offer.id and assignment.token
        claims = api.TokenVerifier(away.api_key, away.api_secret).verify(assignment.token)
        assert claims.identity == "far-agent" and claims.video.room == "far-room"
        assert claims.kind == "agent" and claims.attributes["lk.agent_name"] == "far"

        async def running() -> bool:  # the room's node knows who took the job
            states = await job_states(lk, "far-room")
            return [(s.status, s.worker_id, s.participant_identity) for s in states] == \
                [(JS.JS_RUNNING, worker.worker_id, "far-agent")] if worker else False

        await until_async(running, 10, "the job running on the far worker")
        # the worker's status report reaches the room's node
        update = agent.WorkerMessage()
        update.update_job.job_id, update.update_job.status = offer.id, JS.JS_SUCCESS
        await worker.send(update)

        async def succeeded() -> bool:
            return [s.status for s in await job_states(lk, "far-room")] == [JS.JS_SUCCESS]

        await until_async(succeeded, 10, "the far job's success on the room's node")
        # a second job, then the room is deleted: the far worker is told to end it
        await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
            agent_name="far", room="far-room"))
        second = (await worker.expect("availability")).availability.job
        await worker.answer(second, True, identity="far-agent-2")
        await worker.expect("assignment")
        await lk.room.delete_room(api.DeleteRoomRequest(room="far-room"))
        ended = (await worker.expect("termination")).termination
        assert ended.job_id == second.id
    finally:
        if worker is not None:
            await worker.close()
        await lk.aclose()


async def test_losing_the_far_worker_fails_its_job_on_the_room_node(
        cluster: Callable[..., Cluster]) -> None:
    nodes = cluster(2)
    lk = client(nodes.nodes[0])
    try:
        home = await room_on(lk, nodes, "lost-room")
        (away,) = nodes.others(home)
        worker = await RawWorker.connect(away)
        await worker.register(agent_name="far")
        await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
            agent_name="far", room="lost-room"))
        offer = (await worker.expect("availability")).availability.job
        await worker.answer(offer, True, identity="never-joins")
        await worker.expect("assignment")
        await worker.close()  # gone before its agent joined: offered again, to nobody

        async def jobs() -> dict[str, agent.Job]:
            found = await lk.agent_dispatch.list_dispatch("lost-room")
            return {j.id: j for d in found for j in d.state.jobs}

        async def lost() -> bool:
            job = (await jobs()).get(offer.id)
            return job is not None and job.state.status == JS.JS_FAILED

        await until_async(lost, 15, "the lost worker's job failing")
        assert (await jobs())[offer.id].state.error == "agent worker lost"

        async def reoffer_failed() -> list[agent.Job]:  # offered again: no worker is left
            return [j for i, j in (await jobs()).items()
                    if i != offer.id and j.state.status == JS.JS_FAILED]

        (again,) = await until_async(reoffer_failed, 15, "the re-offered job failing")
        assert again.state.error == "no workers available"
    finally:
        await lk.aclose()


@pytest.mark.skipif(bool(agents_available()), reason=agents_available())
async def test_a_real_worker_on_one_node_serves_new_rooms_on_both(
        cluster: Callable[..., Cluster], spawn: Spawn) -> None:
    nodes = cluster(2)
    served, other = nodes.nodes
    worker = spawn(served, "B")  # its LIVEKIT_URL is one node; rooms land on both
    lk = client(served)
    try:
        hosts: dict[str, RoostServer] = {}
        for i in range(6):  # placement spreads new rooms: some land on the other node
            name = f"spread-{i}"
            hosts[name] = await room_on(lk, nodes, name)
            if any(h is other for h in hosts.values()):
                break
        far = [name for name, host in hosts.items() if host is other]
        assert far, "no room was placed on the node without the worker"
        for name in hosts:
            async def arrived(name: str = name) -> list[models.ParticipantInfo]:
                found = await lk.room.list_participants(api.ListParticipantsRequest(room=name))
                # its tone is published after it registered `test.echo`: ready for RPC
                return [p for p in found.participants if p.kind == AGENT and p.tracks]

            (p,) = await until_async(arrived, 60, f"the agent in {name} with its tone")
            assert p.attributes["worker"] == "B"
            # RPC through the far room's node reaches the agent connected to the other one
            assert await echo(lk, name, p.identity) == f"echo:{name}"
        await lk.room.delete_room(api.DeleteRoomRequest(room=far[0]))

        async def fewer_jobs() -> bool:
            jobs = int((await asyncio.to_thread(worker.info)).get("active_jobs", 0))
            return jobs == len(hosts) - 1

        await until_async(fewer_jobs, 30, "the far room's job to end on the worker")
    finally:
        await lk.aclose()

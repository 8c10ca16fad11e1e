"""Real `livekit-agents` 1.8.9 workers (their own venv, rtc SDK 1.1.21) dispatched by roost:
automatic and named dispatch, AgentDispatchService, load spill-over, room end, worker loss."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from livekit import api
from livekit.protocol import models
from tests.agents.conftest import Spawn
from tests.helpers.agents import agents_available
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer
from tests.helpers.wait import until_async

pytestmark = [pytest.mark.skipif(bool(agents_available()), reason=agents_available()),
              pytest.mark.timeout(240)]

MEET = "tests.scenarios.agents:meet_agents"
AGENT = models.ParticipantInfo.Kind.AGENT


def client(server: RoostServer) -> api.LiveKitAPI:
    return api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)


async def agents_in(lk: api.LiveKitAPI, room: str) -> list[models.ParticipantInfo]:
    try:
        found = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    except api.TwirpError:
        return []
    return [p for p in found.participants if p.kind == AGENT]


async def meet(server: RoostServer, room: str, *, expect: int = 1,
               agents: list[dict[str, str]] | None = None, listen: bool = True,
               linger: float = 0.0) -> dict[str, Any]:
    """The scenario's view of `room`'s agents (run in a child, as every SDK scenario)."""
    result = await asyncio.to_thread(run_scenario, MEET, server.info, room, expect, agents,
                                     listen, linger, timeout=120)
    return dict(result)


async def test_new_rooms_get_the_unnamed_worker_and_named_agents_only_when_asked(
        server: RoostServer, spawn: Spawn) -> None:
    spawn(server, "A")
    spawn(server, "N", agent_name="named")
    # automatic dispatch: a client opens a new room; only the unnamed worker comes
    auto = await meet(server, "auto-room", expect=1, linger=3.0)
    (seen,) = auto["agents"]  # type: ignore[misc]
    assert seen["attributes"]["worker"] == "A"
    assert seen["attributes"]["lk.agent_name"] == ""
    assert seen["identity"].startswith("agent-AJ_")
    assert seen["echo"] == "echo:x"
    assert abs(seen["pitch"] - 440) < 15, seen["pitch"]
    assert auto["count_after"] == 1
    # the token's roomConfig names an agent: that one comes, the unnamed one does not
    named = await meet(server, "token-room", expect=1, listen=False, linger=3.0,
                       agents=[{"agent_name": "named", "metadata": "m2"}])
    (seen,) = named["agents"]  # type: ignore[misc]
    assert seen["attributes"]["worker"] == "N"
    assert seen["attributes"]["lk.agent_name"] == "named"
    assert seen["attributes"]["job_metadata"] == "m2"
    assert named["count_after"] == 1
    # CreateRoom with agents: likewise
    lk = client(server)
    try:
        await lk.room.create_room(api.CreateRoomRequest(
            name="created-room", agents=[api.RoomAgentDispatch(agent_name="named",
                                                               metadata="m3")]))

        async def one_agent() -> list[models.ParticipantInfo]:
            return await agents_in(lk, "created-room")

        await until_async(one_agent, 60, "the named agent in created-room")
        await asyncio.sleep(3.0)  # waits for an unnamed agent that must NOT come
        (p,) = await agents_in(lk, "created-room")
        assert p.attributes["worker"] == "N" and p.attributes["job_metadata"] == "m3"
    finally:
        await lk.aclose()


async def test_dispatch_service_creates_lists_and_deletes(server: RoostServer,
                                                         spawn: Spawn) -> None:
    spawn(server, "A")
    named = spawn(server, "N", agent_name="named")
    lk = client(server)
    try:
        dispatch = await lk.agent_dispatch.create_dispatch(api.CreateAgentDispatchRequest(
            agent_name="named", room="api-room", metadata="m1"))
        assert dispatch.id.startswith("AD_") and dispatch.room == "api-room"

        async def both() -> bool:
            return len(await agents_in(lk, "api-room")) == 2

        # the room was auto-created without agents: the default dispatch came too
        await until_async(both, 60, "the named and the default agent in api-room")
        by_worker = {p.attributes["worker"]: p for p in await agents_in(lk, "api-room")}
        assert by_worker["N"].attributes["dispatch_id"] == dispatch.id
        assert by_worker["N"].attributes["job_metadata"] == "m1"
        listed = {d.id: d for d in await lk.agent_dispatch.list_dispatch("api-room")}
        assert {d.agent_name for d in listed.values()} == {"", "named"}
        job_state = listed[dispatch.id].state.jobs[0].state
        assert job_state.participant_identity == by_worker["N"].identity
        await lk.agent_dispatch.delete_dispatch(dispatch.id, "api-room")

        async def named_gone() -> bool:
            return [p.attributes["worker"] for p in await agents_in(lk, "api-room")] == ["A"]

        await until_async(named_gone, 15, "the named agent to leave")

        async def no_jobs() -> bool:
            return int((await asyncio.to_thread(named.info)).get("active_jobs", 0)) == 0

        await until_async(no_jobs, 15, "worker N to have no job")
        assert [d.agent_name for d in await lk.agent_dispatch.list_dispatch("api-room")] == [""]
    finally:
        await lk.aclose()


async def test_a_full_worker_sends_the_next_job_to_the_other(server: RoostServer,
                                                            spawn: Spawn) -> None:
    for tag in ("A", "B"):  # one job fills a worker (load 1.0 ≥ threshold 0.5)
        spawn(server, tag, THRESH="0.5", JOB_LOAD="1.0")
    lk = client(server)
    try:
        tags = []
        for room in ("spill-1", "spill-2"):
            await lk.room.create_room(api.CreateRoomRequest(name=room))

            async def arrived(room: str = room) -> list[models.ParticipantInfo]:
                return await agents_in(lk, room)

            await until_async(arrived, 60, f"an agent in {room}")
            tags.append((await agents_in(lk, room))[0].attributes["worker"])
        assert sorted(tags) == ["A", "B"]
        await lk.room.create_room(api.CreateRoomRequest(name="spill-3"))
        await asyncio.sleep(4.0)  # waits for an agent that must NOT come: both are full
        assert await agents_in(lk, "spill-3") == []
    finally:
        await lk.aclose()


async def test_deleting_the_room_ends_the_job(server: RoostServer, spawn: Spawn) -> None:
    worker = spawn(server, "A")
    lk = client(server)
    try:
        await lk.room.create_room(api.CreateRoomRequest(name="doomed"))

        async def arrived() -> list[models.ParticipantInfo]:
            return await agents_in(lk, "doomed")

        await until_async(arrived, 60, "the agent in doomed")
        assert int((await asyncio.to_thread(worker.info)).get("active_jobs", 0)) == 1
        await lk.room.delete_room(api.DeleteRoomRequest(room="doomed"))

        async def idle() -> bool:
            return int((await asyncio.to_thread(worker.info)).get("active_jobs", 0)) == 0

        await until_async(idle, 30, "the worker's job to end")
    finally:
        await lk.aclose()


@pytest.mark.parametrize("reassign", [True, False])
async def test_a_job_whose_worker_dies_goes_to_another_worker(
        start_server: Callable[..., RoostServer], spawn: Spawn, tmp_path: Path,
        reassign: bool) -> None:
    config = tmp_path / "agents.yaml"
    config.write_text(f"agents:\n  reassign_orphaned_jobs: {str(reassign).lower()}\n")
    server = start_server("--config", str(config))
    first = spawn(server, "A")
    lk = client(server)
    try:
        await lk.room.create_room(api.CreateRoomRequest(name="orphan"))

        async def arrived() -> list[models.ParticipantInfo]:
            return await agents_in(lk, "orphan")

        await until_async(arrived, 60, "the first agent")
        spawn(server, "B")
        first.signal(signal.SIGKILL)  # the worker and its job process, without goodbyes

        async def replaced() -> bool:
            return [p.attributes["worker"] for p in await agents_in(lk, "orphan")] == ["B"]

        if reassign:  # after the dead agent's resume grace (20 s) it is offered again
            await until_async(replaced, 60, "worker B's agent in place of A's")
        else:
            async def gone() -> bool:
                return await agents_in(lk, "orphan") == []

            await until_async(gone, 60, "the dead agent to be removed")
            await asyncio.sleep(3.0)  # waits for a re-offer that must NOT happen
            assert await agents_in(lk, "orphan") == []
    finally:
        await lk.aclose()

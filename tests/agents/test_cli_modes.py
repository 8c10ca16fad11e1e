"""The livekit-agents 1.8.9 CLI modes other than `dev`, run as a user runs them against roost:
`start` (production: registers on /agent, takes automatic dispatches, drains on SIGTERM) and
`connect --room R` (no /agent at all: the framework finds or creates R with RoomService and
joins it with a token it signs itself, as a job it launches locally)."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from livekit import api
from livekit.protocol import agent, models
from tests.agents.conftest import Spawn
from tests.agents.test_livekit_agents import agents_in, client, meet
from tests.helpers.agents import AgentWorker, agents_available
from tests.helpers.server import RoostServer
from tests.helpers.wait import until_async

pytestmark = [pytest.mark.skipif(bool(agents_available()), reason=agents_available()),
              pytest.mark.timeout(240)]

JS = agent.JobStatus


def registered_id(worker: AgentWorker) -> str:
    """The worker id from `start` mode's JSON log line (production logging, not dev's)."""
    for line in worker.log().splitlines():
        if line.startswith("{") and '"registered worker"' in line:
            return str(json.loads(line)["id"])
    raise AssertionError(f"no JSON 'registered worker' line:\n{worker.log()[-4000:]}")


async def test_start_mode_registers_and_takes_a_new_rooms_automatic_dispatch(
        server: RoostServer, spawn: Spawn) -> None:
    worker = spawn(server, "P", mode="start")
    worker_id = registered_id(worker)
    assert worker_id.startswith("AW_")
    # a user joins a new room: its default dispatch goes to the production worker
    seen = await meet(server, "prod-room", expect=1)
    (found,) = seen["agents"]
    assert found["attributes"]["worker"] == "P"
    assert found["attributes"]["lk.agent_name"] == ""
    assert found["identity"].startswith("agent-AJ_")
    assert found["echo"] == "echo:x"
    assert abs(found["pitch"] - 440) < 15, found["pitch"]
    lk = client(server)
    try:
        (dispatch,) = await lk.agent_dispatch.list_dispatch("prod-room")
        (job,) = dispatch.state.jobs
        assert job.state.worker_id == worker_id
        assert job.state.participant_identity == found["identity"]
    finally:
        await lk.aclose()


async def test_start_mode_drains_on_sigterm_keeping_its_job_until_the_room_ends(
        server: RoostServer, spawn: Spawn) -> None:
    worker = spawn(server, "P", mode="start")
    lk = client(server)
    try:
        await lk.room.create_room(api.CreateRoomRequest(name="kept"))

        async def kept_agent() -> list[models.ParticipantInfo]:
            return await agents_in(lk, "kept")

        (agent_p,) = await until_async(kept_agent, 60, "the agent in kept")
        assert agent_p.attributes["worker"] == "P"
        # SIGTERM to the worker alone (as an orchestrator stops it), not its job process
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait_for_log, "draining worker", 15)

        # a draining worker reports itself full: a new room's job finds no worker
        await lk.room.create_room(api.CreateRoomRequest(name="late"))

        async def late_failed() -> list[agent.Job]:
            return [j for d in await lk.agent_dispatch.list_dispatch("late")
                    for j in d.state.jobs if j.state.status == JS.JS_FAILED]

        (late,) = await until_async(late_failed, 30, "the late room's job to fail")
        assert late.state.error == "no workers available"
        assert late.state.worker_id == ""
        # ... while its running job stays: the agent is still in kept, the worker alive
        assert [p.identity for p in await agents_in(lk, "kept")] == [agent_p.identity]
        assert worker.process.poll() is None
        # the room ends, so does the job; the drained worker then exits cleanly
        await lk.room.delete_room(api.DeleteRoomRequest(room="kept"))
        code = await asyncio.to_thread(worker.process.wait, 30)
        assert code == 0, worker.log()[-4000:]
        assert "drain timed out" not in worker.log()
    finally:
        await lk.aclose()


async def test_connect_mode_joins_the_named_room_without_a_worker_registration(
        server: RoostServer, spawn: Spawn) -> None:
    spawn(server, "C", mode="connect", ready="starting worker",
          args=("--room", "cli-room", "--participant-identity", "agent-cli"))
    lk = client(server)
    try:
        async def connected() -> list[models.ParticipantInfo]:
            return await agents_in(lk, "cli-room")

        (p,) = await until_async(connected, 60, "the connected agent in cli-room")
        assert p.identity == "agent-cli"
        # no job offer, so no on_request: the agent carries none of a dispatched job's
        # attributes (worker, lk.agent_name)
        assert dict(p.attributes) == {}
        # the framework created the room with CreateRoom: roost gave it the default
        # dispatch, which has no job (no worker is registered)
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=["cli-room"]))
        assert [r.name for r in rooms.rooms] == ["cli-room"]
        dispatches = await lk.agent_dispatch.list_dispatch("cli-room")
        assert [(d.agent_name, list(d.state.jobs)) for d in dispatches] == [("", [])]
    finally:
        await lk.aclose()
    # a user in the room meets it: RPC echo and its 440 Hz tone
    seen = await meet(server, "cli-room", expect=1)
    (found,) = seen["agents"]
    assert found["identity"] == "agent-cli"
    assert found["echo"] == "echo:x"
    assert abs(found["pitch"] - 440) < 15, found["pitch"]

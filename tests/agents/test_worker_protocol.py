"""The `/agent` worker protocol against hand-driven workers: registration, offers, refusals,
timeouts and hostile frames (the real framework is in test_livekit_agents.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import jwt
import pytest
from livekit import api
from livekit.protocol import agent
from tests.agents.rawworker import RawWorker, worker_token
from tests.helpers.server import RoostServer
from tests.helpers.wait import until_async

CONFIG = ("agents:\n  availability_timeout: 1.5\n  job_join_timeout: 2\n")


@pytest.fixture
def agent_server(start_server: Callable[..., RoostServer], tmp_path: object) -> RoostServer:
    from pathlib import Path

    path = Path(str(tmp_path)) / "agents.yaml"
    path.write_text(CONFIG)
    return start_server("--config", str(path))


async def lkapi(server: RoostServer) -> api.LiveKitAPI:
    return api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)


async def test_registration_answers_first_with_the_worker_id(agent_server: RoostServer) -> None:
    worker = await RawWorker.connect(agent_server)
    try:
        ping = agent.WorkerMessage()
        ping.ping.timestamp = 1234
        await worker.send(ping)  # answered even before registration
        pong = await worker.expect("pong")
        assert pong.pong.last_timestamp == 1234
        worker_id = await worker.register("named")
        assert worker_id.startswith("AW_")
    finally:
        await worker.close()


async def test_a_room_job_is_offered_accepted_and_assigned_with_a_job_token(
        agent_server: RoostServer) -> None:
    worker = await RawWorker.connect(agent_server)
    lk = await lkapi(agent_server)
    try:
        await worker.register()
        await lk.room.create_room(api.CreateRoomRequest(name="raw-room"))
        offer = await worker.expect("availability")
        job = offer.availability.job
        assert job.id.startswith("AJ_") and job.type == agent.JT_ROOM
        assert job.room.name == "raw-room" and job.dispatch_id.startswith("AD_")
        await worker.answer(job, True, identity="raw-agent")
        assignment = await worker.expect("assignment")
        assert assignment.assignment.job.id == job.id
        assert not assignment.assignment.HasField("url")  # the worker uses its own URL
        claims = jwt.decode(assignment.assignment.token, agent_server.api_secret,
                            algorithms=["HS256"])
        assert claims["sub"] == "raw-agent" and claims["kind"] == "agent"
        assert claims["video"]["room"] == "raw-room" and claims["video"]["agent"] is True
        assert claims["attributes"]["lk.agent_name"] == ""
        dispatches = await lk.agent_dispatch.list_dispatch("raw-room")
        assert [d.agent_name for d in dispatches] == [""]  # the default dispatch
        state = dispatches[0].state.jobs[0].state
        assert state.participant_identity == "raw-agent"
        assert state.status == agent.JS_RUNNING and state.worker_id == worker.worker_id
    finally:
        await lk.aclose()
        await worker.close()


async def test_an_accepted_job_whose_agent_never_joins_is_ended_and_terminated(
        agent_server: RoostServer) -> None:
    worker = await RawWorker.connect(agent_server)
    lk = await lkapi(agent_server)
    try:
        await worker.register()
        await lk.room.create_room(api.CreateRoomRequest(name="no-show"))
        job = (await worker.expect("availability")).availability.job
        await worker.answer(job, True, identity="never-joins")
        await worker.expect("assignment")
        termination = await worker.expect("termination", timeout=10)  # job_join_timeout 2 s
        assert termination.termination.job_id == job.id
        state = (await lk.agent_dispatch.list_dispatch("no-show"))[0].state.jobs[0].state
        assert state.status == agent.JS_FAILED and "did not join" in state.error
    finally:
        await lk.aclose()
        await worker.close()


async def test_a_declining_worker_is_skipped_for_the_next(agent_server: RoostServer) -> None:
    first, second = await RawWorker.connect(agent_server), await RawWorker.connect(agent_server)
    lk = await lkapi(agent_server)
    try:
        await first.register()
        await second.register()
        await lk.room.create_room(api.CreateRoomRequest(name="spill"))
        # whichever is offered first declines; the other must then get the same job
        waits = {w: asyncio.ensure_future(w.expect("availability")) for w in (first, second)}
        done, _ = await asyncio.wait(waits.values(), return_when=asyncio.FIRST_COMPLETED)
        offered = done.pop()
        decliner = next(w for w, t in waits.items() if t is offered)
        other = second if decliner is first else first
        job = offered.result().availability.job
        assert job.state.worker_id == decliner.worker_id
        await decliner.answer(job, False)
        again = await asyncio.wait_for(waits[other], 10)
        assert again.availability.job.id == job.id
        assert again.availability.job.state.worker_id == other.worker_id
    finally:
        await lk.aclose()
        await first.close()
        await second.close()


async def test_a_worker_that_never_answers_fails_the_job_and_keeps_others_working(
        agent_server: RoostServer) -> None:
    silent = await RawWorker.connect(agent_server)
    lk = await lkapi(agent_server)
    try:
        await silent.register()
        await lk.room.create_room(api.CreateRoomRequest(name="silence"))
        await silent.expect("availability")

        async def failed() -> bool:
            jobs = (await lk.agent_dispatch.list_dispatch("silence"))[0].state.jobs
            return bool(jobs) and jobs[0].state.status == agent.JS_FAILED

        await until_async(failed, 10, "the unanswered job to fail")
        jobs = (await lk.agent_dispatch.list_dispatch("silence"))[0].state.jobs
        assert "availability timeout" in jobs[0].state.error
        # the server still serves: another room's job is offered to the same worker
        await lk.room.create_room(api.CreateRoomRequest(name="after-silence"))
        offer = await silent.expect("availability")
        assert offer.availability.job.room.name == "after-silence"
    finally:
        await lk.aclose()
        await silent.close()


async def test_a_worker_that_reports_full_gets_no_offers(agent_server: RoostServer) -> None:
    worker = await RawWorker.connect(agent_server)
    lk = await lkapi(agent_server)
    try:
        await worker.register()
        await worker.status(1.0, full=True)
        pong_probe = agent.WorkerMessage()
        pong_probe.ping.timestamp = 7
        await worker.send(pong_probe)
        await worker.expect("pong")  # the status update was handled before this ping
        await lk.room.create_room(api.CreateRoomRequest(name="full"))
        with pytest.raises(TimeoutError):
            await worker.receive(timeout=1.5)  # waits for an offer that must NOT come
        jobs = (await lk.agent_dispatch.list_dispatch("full"))[0].state.jobs
        assert jobs and jobs[0].state.status == agent.JS_FAILED
    finally:
        await lk.aclose()
        await worker.close()


@pytest.mark.parametrize("grant", [False, None])
async def test_a_worker_without_the_agent_grant_is_refused(agent_server: RoostServer,
                                                           grant: bool | None) -> None:
    headers = {} if grant is None else \
        {"Authorization": f"Bearer {worker_token(agent_server, agent_grant=False)}"}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{agent_server.url}/agent", headers=headers)
        assert refused.value.status == 401
        async with session.get(f"{agent_server.http_url}/agent") as plain:
            assert plain.status == 404  # not a WebSocket upgrade


@pytest.mark.parametrize("frame", [b"\xff\xff\xff", b"", "text frame"])
async def test_garbage_closes_only_that_worker(agent_server: RoostServer,
                                               frame: bytes | str) -> None:
    good, bad = await RawWorker.connect(agent_server), await RawWorker.connect(agent_server)
    try:
        await good.register()
        await bad.register()
        if isinstance(frame, str):
            await bad.ws.send_str(frame)  # skipped, as the reference does with text
            await bad.send(agent.WorkerMessage())  # then an empty message: closed
        else:
            await bad.ws.send_bytes(frame)
        assert await bad.receive(timeout=5) is None  # closed
        ping = agent.WorkerMessage()
        ping.ping.timestamp = 9
        await good.send(ping)
        assert (await good.expect("pong")).pong.last_timestamp == 9
    finally:
        await good.close()
        await bad.close()


async def test_an_unregistered_worker_is_closed_after_the_register_timeout(
        agent_server: RoostServer) -> None:
    worker = await RawWorker.connect(agent_server)
    try:
        assert await worker.receive(timeout=15) is None  # REGISTER_TIMEOUT is 10 s
    finally:
        await worker.close()

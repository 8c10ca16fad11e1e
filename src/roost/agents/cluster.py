"""AgentCluster: agent jobs between nodes over the Redis bus, as livekit-server's psrpc.

A room's node keeps its dispatches and job records. When none of its own workers takes a
job it asks every other node which matching workers it holds (`agent.check`, the affinity
being their summed spare load), then offers the job to the best node (`agent.job`), which
runs the offers over its workers and signs the job token. That node keeps the job as
*hosted* and reports back what its worker says (`agent.job_event`: status, lost,
migrated); the room's node ends the job there with `agent.end`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit.protocol import agent

from roost.agents.jobs import NO_WORKER, JobRecord, Placement
from roost.agents.worker import Worker
from roost.routing import Bus, Router, RoutingUnavailable

if TYPE_CHECKING:
    from roost.agents.service import AgentService

log = logging.getLogger("roost.agents")

CHECK, OFFER, EVENT, END = "agent.check", "agent.job", "agent.job_event", "agent.end"
CHECK_TIMEOUT = 2.0  # seconds a node has to say which workers it holds
EVENT_TIMEOUT = 5.0
OFFER_MARGIN = 5.0  # beyond agents.availability_timeout, for the bus and the assignment


@dataclass
class HostedJob:
    """A job run by a worker of this node for a room on another node."""

    job: agent.Job
    room_node: str


def encode_job(job: agent.Job) -> str:
    return base64.b64encode(job.SerializeToString()).decode()


def decode_job(text: str) -> agent.Job:
    return agent.Job.FromString(base64.b64decode(text))


class AgentCluster:
    """This node's side of cross-node dispatch: asks others, answers them, relays status."""

    def __init__(self, service: AgentService, router: Router, bus: Bus) -> None:
        self.service = service
        self.router = router
        self.bus = bus
        self.node_id = bus.node_id
        self.hosted: dict[str, HostedJob] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        bus.serve(CHECK, self._answer_check)
        bus.serve(OFFER, self._answer_offer)
        bus.serve(EVENT, self._answer_event)
        bus.serve(END, self._answer_end)

    # -- the room's node -----------------------------------------------------------------
    async def _survey(self, agent_name: str, job_type: int,
                      tried: set[str]) -> list[tuple[float, str]]:
        """(affinity, node id) of every other node holding matching workers, best first;
        affinity 0 means registered but none available."""
        try:
            nodes = [n.id for n in await self.router.nodes() if n.id != self.node_id]
        except RoutingUnavailable as exc:
            log.info("cannot list nodes for agent dispatch: %s", exc)
            return []
        body = {"agent_name": agent_name, "job_type": job_type, "tried": sorted(tried)}
        replies = await asyncio.gather(
            *(self.bus.request(n, CHECK, body, CHECK_TIMEOUT) for n in nodes),
            return_exceptions=True)
        found = []
        for node, reply in zip(nodes, replies, strict=True):
            if isinstance(reply, BaseException):
                log.debug("node %s did not answer %s: %s", node, CHECK, reply)
            elif reply.get("registered"):
                found.append((float(reply.get("affinity", 0.0)), node))
        return sorted(found, reverse=True)

    async def registered(self, agent_name: str, job_type: int) -> bool:
        """Whether any other node holds a worker for this agent name and job type."""
        return bool(await self._survey(agent_name, job_type, set()))

    async def offer_elsewhere(self, record: JobRecord) -> Placement:
        """Offer the job to the other nodes' workers, best node first."""
        job = record.job
        timeout = self.service.settings.agents.availability_timeout + OFFER_MARGIN
        for affinity, node in await self._survey(job.agent_name, job.type, record.tried):
            if affinity <= 0 or record.finished:
                continue
            body = {"job": encode_job(job), "tried": sorted(record.tried)}
            try:
                reply = await self.bus.request(node, OFFER, body, timeout)
            except RoutingUnavailable as exc:
                log.info("node %s could not take job %s: %s", node, job.id, exc,
                         extra={"room": record.room, "job": job.id})
                continue
            record.tried.update(str(t) for t in reply.get("tried", []))
            outcome = str(reply.get("outcome", NO_WORKER))
            if outcome != NO_WORKER:
                return Placement(outcome, str(reply.get("worker_id", "")),
                                 str(reply.get("identity", "")), node=node)
        return Placement(NO_WORKER)

    def end_elsewhere(self, node: str, job_id: str) -> None:
        """The job ended here: its worker's node forgets it and ends it if still running."""
        self._spawn(self._request(node, END, {"job_id": job_id}))

    async def _answer_event(self, sender: str, body: dict[str, Any]) -> dict[str, Any]:
        record = self.service.jobs.get(str(body.get("job_id", "")))
        if record is None or record.worker_node != sender or record.finished:
            return {"known": False}
        event = body.get("event")
        if event == "status":
            self.service.apply_status(record, int(body.get("status", 0)),
                                      str(body.get("error", "")))
        elif event == "lost":
            self.service.orphan(record)
        elif event == "migrated":
            record.orphaned = False
            record.job.state.worker_id = str(body.get("worker_id", ""))
        return {"known": True}

    # -- the worker's node ---------------------------------------------------------------
    async def _answer_check(self, sender: str, body: dict[str, Any]) -> dict[str, Any]:
        name, job_type = str(body.get("agent_name", "")), int(body.get("job_type", 0))
        tried = {str(t) for t in body.get("tried", [])}
        matching = [w for w in self.service.workers.values()
                    if w.registered and w.agent_name == name and w.job_type == job_type]
        affinity = sum(max(0.0, 1.0 - w.load) for w in matching
                       if w.available and w.id not in tried)
        return {"registered": len(matching), "affinity": affinity}

    async def _answer_offer(self, sender: str, body: dict[str, Any]) -> dict[str, Any]:
        job = decode_job(str(body["job"]))
        tried = {str(t) for t in body.get("tried", [])}

        def take(worker: Worker, identity: str) -> bool:
            self.hosted[job.id] = HostedJob(job, sender)
            return True

        placement = await self.service.offer_here(
            job, tried, take, lambda: self.hosted.pop(job.id, None))
        return {"outcome": placement.outcome, "worker_id": placement.worker_id,
                "identity": placement.identity, "tried": sorted(tried)}

    async def _answer_end(self, sender: str, body: dict[str, Any]) -> dict[str, Any]:
        job_id = str(body.get("job_id", ""))
        hosted = self.hosted.get(job_id)
        if hosted is None or hosted.room_node != sender:
            return {"known": False}
        del self.hosted[job_id]
        for worker in list(self.service.workers.values()):
            if worker.jobs.pop(job_id, None) is not None:
                await worker.terminate(job_id)
        return {"known": True}

    def job_status(self, worker: Worker, update: agent.UpdateJobStatus) -> None:
        """A worker here reports on a hosted job: pass it to the room's node."""
        hosted = self.hosted.get(update.job_id)
        if hosted is None:
            return
        if update.status in (agent.JobStatus.JS_SUCCESS, agent.JobStatus.JS_FAILED):
            del self.hosted[update.job_id]
            worker.jobs.pop(update.job_id, None)
        self._spawn(self._request(hosted.room_node, EVENT, {
            "job_id": update.job_id, "event": "status", "status": int(update.status),
            "error": update.error}))

    def worker_lost(self, job_id: str) -> None:
        """The worker running a hosted job is gone (the entry stays for a migrate)."""
        hosted = self.hosted.get(job_id)
        if hosted is not None:
            self._spawn(self._request(hosted.room_node, EVENT,
                                      {"job_id": job_id, "event": "lost"}))

    def migrated(self, worker: Worker, job_id: str) -> None:
        """A reconnected worker here still runs a hosted job."""
        hosted = self.hosted.get(job_id)
        if hosted is not None:
            worker.jobs[job_id] = hosted.job
            self._spawn(self._request(hosted.room_node, EVENT, {
                "job_id": job_id, "event": "migrated", "worker_id": worker.id}))

    # -- plumbing ------------------------------------------------------------------------
    async def _request(self, node: str, method: str, body: dict[str, Any]) -> None:
        try:
            await self.bus.request(node, method, body, EVENT_TIMEOUT)
        except RoutingUnavailable as exc:
            log.info("%s to node %s failed: %s", method, node, exc,
                     extra={"job": body.get("job_id", "")})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

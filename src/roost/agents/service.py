"""AgentService: the workers registered on this node, and each room's dispatches and jobs.

Dispatch follows livekit-server: a new room gets the dispatches its configuration names
(`RoomConfiguration.agents` from the token, CreateRoom or a preset) or else one default
dispatch for unnamed workers. Each dispatch launches a JT_ROOM job at once, a JT_PARTICIPANT
job per (non-agent) participant that joins and a JT_PUBLISHER job per first publisher,
for whichever worker type it matches. A job goes to an available worker of the dispatch's
agent name, picked at random weighted by `1 - load`; one that declines is skipped for the
next; when none of this node's workers takes it, the other nodes' are asked (cluster.py).
Beyond the reference (settings.agents): a job whose worker's connection is lost is
offered again once its agent has left, and a job whose agent never joins is ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from livekit.protocol import agent, agent_dispatch, models

from roost import ids
from roost.agents.jobs import (
    ASSIGNED,
    CANCELLED,
    NO_WORKER,
    REJECTED,
    TIMEOUT,
    Dispatch,
    JobRecord,
    Placement,
    job_token,
)
from roost.agents.worker import (
    DISPATCH,
    JOB,
    AvailabilityTimeout,
    JobRejected,
    Worker,
    WorkerClosed,
    WorkerNotAvailable,
    WorkerSocket,
)
from roost.ids import Identity, RoomName
from roost.telemetry import count_agent_job

if TYPE_CHECKING:
    from roost.agents.cluster import AgentCluster
    from roost.config import Settings
    from roost.room.manager import RoomManager
    from roost.room.participant import Participant
    from roost.room.room import Room
    from roost.routing import Router

log = logging.getLogger("roost.agents")

JT = agent.JobType
JS = agent.JobStatus
Reason = models.DisconnectReason
AGENT_LEAVE_GRACE = 3.0  # seconds a deleted dispatch's agent has to leave before removal

# job_started / job_ended listeners: (event, room name, job)
JobListener = Callable[[str, RoomName, agent.Job], None]


class AgentService:
    """Dispatches agents into the rooms of this node, to the workers registered here."""

    def __init__(self, settings: Settings, rooms: RoomManager, node_id: str,
                 router: Router | None = None) -> None:
        self.settings = settings
        self.rooms = rooms
        self.node_id = node_id
        self.workers: dict[str, Worker] = {}
        self.dispatches: dict[RoomName, dict[str, Dispatch]] = {}
        self.jobs: dict[str, JobRecord] = {}  # every unfinished job, by id
        self.job_listeners: list[JobListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.random = random.Random()
        self.cluster: AgentCluster | None = None  # in Redis mode: workers on other nodes
        if router is not None and router.bus is not None:
            from roost.agents.cluster import AgentCluster

            self.cluster = AgentCluster(self, router, router.bus)
        rooms.listeners.append(self.on_room_event)

    # -- workers -----------------------------------------------------------------------
    def worker(self, socket: WorkerSocket, api_key: str) -> Worker:
        """A new worker connection; the caller awaits its `run()`."""
        return Worker(socket, api_key=api_key, node_id=self.node_id,
                      region=self.settings.region, on_registered=self._registered,
                      on_job_status=self._job_status, on_migrate=self.migrate,
                      on_closed=self._worker_closed)

    def _registered(self, worker: Worker) -> None:
        self.workers[worker.id] = worker

    def pick(self, agent_name: str, job_type: int, tried: set[str]) -> Worker | None:
        """An available matching worker not yet tried, weighted by spare load."""
        candidates = [w for w in self.workers.values()
                      if w.available and w.agent_name == agent_name and w.job_type == job_type
                      and w.id not in tried]
        weights = [max(0.0, 1.0 - w.load) for w in candidates]
        if not candidates or sum(weights) <= 0:
            return None
        return self.random.choices(candidates, weights)[0]

    def _worker_closed(self, worker: Worker) -> None:
        self.workers.pop(worker.id, None)
        log.info("agent worker left (%d running jobs)", len(worker.jobs),
                 extra=worker.log_extra())
        for job_id in list(worker.jobs):
            record = self.jobs.get(job_id)
            if record is not None and not record.finished:
                self.orphan(record)
            elif record is None and self.cluster is not None:
                self.cluster.worker_lost(job_id)

    def orphan(self, record: JobRecord) -> None:
        """The job's worker is gone: offer it again once its agent is not in the room."""
        record.orphaned = True
        room = self._open_room(record.room)
        present = room is not None and record.identity and \
            Identity(record.identity) in room.participants
        if room is not None and not present and self.settings.agents.reassign_orphaned_jobs:
            self._relaunch(record)

    def migrate(self, worker: Worker, job_ids: list[str]) -> None:
        """A reconnected worker still runs these jobs: they are its own again."""
        for job_id in job_ids:
            record = self.jobs.get(job_id)
            if record is not None and not record.finished and not record.worker_node:
                record.worker, record.orphaned = worker, False
                worker.jobs[job_id] = record.job
            elif record is None and self.cluster is not None:
                self.cluster.migrated(worker, job_id)

    def _job_status(self, worker: Worker, update: agent.UpdateJobStatus) -> None:
        record = self.jobs.get(update.job_id)
        if record is None and self.cluster is not None and update.job_id in worker.jobs:
            self.cluster.job_status(worker, update)  # the job's room is on another node
            return
        if record is None or record.worker is not worker:
            log.debug("status for unknown job %s", update.job_id, extra=worker.log_extra())
            return
        self.apply_status(record, update.status, update.error)

    def apply_status(self, record: JobRecord, status: int, error: str) -> None:
        """A status its worker reported for a job of a room here."""
        state = record.job.state
        state.updated_at = time.time_ns()
        if status in (JS.JS_SUCCESS, JS.JS_FAILED):
            self._finish(record, status, error, reported=True)
        else:
            state.status = status  # type: ignore[assignment]

    # -- rooms ------------------------------------------------------------------------
    def _open_room(self, name: RoomName) -> Room | None:
        room = self.rooms.rooms.get(name)
        return room if room is not None and not room.closed else None

    def on_room_event(self, event: str, room: Room, participant: Participant | None,
                      track: object) -> None:
        """RoomManager listener: room start/end, joins, leaves and first publishes."""
        if event == "room_started":
            self._room_started(room)
        elif event == "room_finished":
            self._room_finished(room)
        elif participant is None:
            return
        elif event == "participant_joined":
            self._participant_joined(room, participant)
        elif event == "track_published":
            if not participant.is_dependent:
                for d in self.dispatches.get(room.name, {}).values():
                    self._launch_for(room, d, JT.JT_PUBLISHER, participant)
        elif event == "participant_left":
            self._participant_left(room, participant)

    def _room_started(self, room: Room) -> None:
        requested = room.agent_dispatches
        wanted = list(requested) if requested else [agent_dispatch.RoomAgentDispatch()]
        for entry in wanted:
            self.add_dispatch(room, agent_name=entry.agent_name, metadata=entry.metadata,
                              attributes=dict(entry.attributes), deployment=entry.deployment)

    def _room_finished(self, room: Room) -> None:
        for d in self.dispatches.pop(room.name, {}).values():
            for record in d.jobs:
                if not record.finished:
                    self._terminate(record)
                    self._finish(record, JS.JS_SUCCESS, "")

    def _participant_joined(self, room: Room, p: Participant) -> None:
        for record in self._room_jobs(room.name):
            if record.identity == p.identity:
                record.joined = True
        if p.is_dependent:
            return  # agents and egress never trigger participant jobs
        for d in self.dispatches.get(room.name, {}).values():
            self._launch_for(room, d, JT.JT_PARTICIPANT, p)
            if p.is_publisher:
                self._launch_for(room, d, JT.JT_PUBLISHER, p)

    def _participant_left(self, room: Room, p: Participant) -> None:
        for record in self._room_jobs(room.name):
            if record.identity != p.identity or record.finished:
                continue
            if record.orphaned:
                if self.settings.agents.reassign_orphaned_jobs and not room.closed:
                    self._relaunch(record)
                else:
                    self._finish(record, JS.JS_FAILED, "agent worker left")
            elif record.joined:  # as livekit: the job failed, and the worker is told
                self._terminate(record)
                self._finish(record, JS.JS_FAILED, "agent worker left the room")

    def _room_jobs(self, name: RoomName) -> list[JobRecord]:
        return [r for d in self.dispatches.get(name, {}).values() for r in d.jobs]

    # -- dispatches -------------------------------------------------------------------
    def add_dispatch(self, room: Room, *, agent_name: str = "", metadata: str = "",
                     attributes: dict[str, str] | None = None,
                     deployment: str = "") -> Dispatch:
        """A new dispatch in `room`: its room job now, participant/publisher jobs as due."""
        info = agent_dispatch.AgentDispatch(id=ids.new_id(DISPATCH), agent_name=agent_name,
                                            room=room.name, metadata=metadata,
                                            deployment=deployment)
        info.attributes.update(attributes or {})
        info.state.created_at = time.time_ns()
        d = Dispatch(info)
        self.dispatches.setdefault(room.name, {})[d.id] = d
        self._launch_for(room, d, JT.JT_ROOM, None)
        for p in list(room.participants.values()):
            if not p.is_dependent:
                self._launch_for(room, d, JT.JT_PARTICIPANT, p)
                if p.is_publisher:
                    self._launch_for(room, d, JT.JT_PUBLISHER, p)
        return d

    def list_dispatches(self, room: RoomName, dispatch_id: str = "") -> list[Dispatch]:
        found = list(self.dispatches.get(room, {}).values())
        return [d for d in found if not dispatch_id or d.id == dispatch_id]

    def delete_dispatch(self, room: RoomName, dispatch_id: str) -> Dispatch | None:
        """Remove a dispatch and end its jobs; agents still present are removed after a grace."""
        d = self.dispatches.get(room, {}).pop(dispatch_id, None)
        if d is None:
            return None
        d.info.state.deleted_at = time.time_ns()
        for record in d.jobs:
            if not record.finished:
                self._terminate(record)
                self._finish(record, JS.JS_SUCCESS, "")
                if record.identity:
                    self._spawn(self._remove_after_grace(room, Identity(record.identity)))
        return d

    async def _remove_after_grace(self, name: RoomName, identity: Identity) -> None:
        await asyncio.sleep(AGENT_LEAVE_GRACE)  # the worker's own shutdown should win
        room = self._open_room(name)
        p = room.participants.get(identity) if room is not None else None
        if room is not None and p is not None:
            room.remove(p, Reason.PARTICIPANT_REMOVED)

    # -- jobs -------------------------------------------------------------------------
    def _launch_for(self, room: Room, d: Dispatch, job_type: int,
                    p: Participant | None) -> None:
        if p is not None:
            key = (p.sid, job_type)
            if key in d.launched_for:
                return
            d.launched_for.add(key)
        if any(w.agent_name == d.info.agent_name and w.job_type == job_type
               for w in self.workers.values()):
            self._new_job(room, d, job_type, p)
        elif self.cluster is not None:
            self._spawn(self._launch_if_registered(room.name, d, job_type, p))
        else:
            self._not_dispatched(room, d, job_type)

    async def _launch_if_registered(self, name: RoomName, d: Dispatch, job_type: int,
                                    p: Participant | None) -> None:
        assert self.cluster is not None
        registered = await self.cluster.registered(d.info.agent_name, job_type)
        room = self._open_room(name)
        if room is None or self.dispatches.get(name, {}).get(d.id) is not d:
            return
        if registered:
            self._new_job(room, d, job_type, p)
        else:
            self._not_dispatched(room, d, job_type)

    def _not_dispatched(self, room: Room, d: Dispatch, job_type: int) -> None:
        if job_type == JT.JT_ROOM or d.info.agent_name:
            log.info("no %s worker for agent %r: job not dispatched",
                     JT.Name(job_type), d.info.agent_name, extra=room.log_extra())
            count_agent_job("no_worker")

    def _new_job(self, room: Room, d: Dispatch, job_type: int,
                 p: Participant | None) -> None:
        job = agent.Job(id=ids.new_id(JOB), dispatch_id=d.id, type=job_type,  # type: ignore[arg-type]
                        agent_name=d.info.agent_name, metadata=d.info.metadata,
                        deployment=d.info.deployment)
        job.room.CopyFrom(room.to_proto())
        job.attributes.update(d.info.attributes)
        if p is not None:
            job.participant.CopyFrom(p.to_proto())
        job.state.status = JS.JS_PENDING
        job.state.updated_at = time.time_ns()
        record = JobRecord(job=job, room=room.name, dispatch_id=d.id)
        d.jobs.append(record)
        self.jobs[job.id] = record
        self._spawn(self._assign(record))

    def _relaunch(self, record: JobRecord) -> None:
        """Offer an orphaned job's work again, to another worker, as a new job."""
        room = self._open_room(record.room)
        d = self.dispatches.get(record.room, {}).get(record.dispatch_id)
        self._finish(record, JS.JS_FAILED, "agent worker lost")
        if room is None or d is None:
            return
        job = agent.Job()
        job.CopyFrom(record.job)
        job.id = ids.new_id(JOB)
        job.ClearField("state")
        job.state.status = JS.JS_PENDING
        job.room.CopyFrom(room.to_proto())
        fresh = JobRecord(job=job, room=record.room, dispatch_id=d.id, tried=set(record.tried))
        d.jobs.append(fresh)
        self.jobs[job.id] = fresh
        log.info("job %s re-offered as %s after its worker was lost", record.job.id, job.id,
                 extra=room.log_extra())
        count_agent_job("reassigned")
        self._spawn(self._assign(fresh))

    async def _assign(self, record: JobRecord) -> None:
        """Offer the job here, then to the other nodes' workers, until one accepts."""
        job, started = record.job, time.monotonic()
        placement = Placement(NO_WORKER)
        if self.pick(job.agent_name, job.type, record.tried) is not None:
            placement = await self.offer_here(
                job, record.tried, lambda w, identity: self._take(record, w, identity),
                lambda: self._take(record, None, ""))
        if placement.outcome == NO_WORKER and self.cluster is not None and not record.finished:
            placement = await self.cluster.offer_elsewhere(record)
        self._placed(record, placement, time.monotonic() - started)

    async def offer_here(self, job: agent.Job, tried: set[str],
                         take: Callable[[Worker, str], bool],
                         release: Callable[[], object]) -> Placement:
        """Offer `job` to this node's workers in turn (weighted by spare load) until one
        accepts; `take` records the acceptance before the assignment goes out (False
        cancels: the room went away meanwhile), `release` undoes it if that fails."""
        extra = {"room": job.room.name, "job": job.id}
        while True:
            worker = self.pick(job.agent_name, job.type, tried)
            if worker is None:
                return Placement(NO_WORKER)
            tried.add(worker.id)
            try:
                answer = await worker.offer(job, self.settings.agents.availability_timeout)
            except (WorkerNotAvailable, WorkerClosed):
                continue
            except JobRejected:
                return Placement(REJECTED, worker.id)
            except AvailabilityTimeout as exc:
                log.info("%s", exc, extra=extra)
                return Placement(TIMEOUT, worker.id)
            identity = answer.participant_identity or f"agent-{job.id}"
            answer.participant_identity = identity
            if not take(worker, identity):
                return Placement(CANCELLED)
            state = job.state
            state.worker_id, state.participant_identity = worker.id, identity
            state.status = JS.JS_RUNNING
            state.started_at = state.updated_at = time.time_ns()
            secret = self.settings.keys.get(worker.api_key, "")
            try:
                await worker.assign(job, job_token(worker, secret, job, answer))
            except WorkerClosed:
                release()
                continue
            log.info("job %s assigned to worker %s as %s", job.id, worker.id, identity,
                     extra=extra)
            return Placement(ASSIGNED, worker.id, identity)

    def _take(self, record: JobRecord, worker: Worker | None, identity: str) -> bool:
        if worker is not None and (record.finished or self._open_room(record.room) is None):
            return False
        record.worker, record.identity = worker, identity
        return True

    def _placed(self, record: JobRecord, placement: Placement, elapsed: float) -> None:
        """Record how the offers ended: a running job, or a finished one saying why."""
        extra = {"room": record.room, "job": record.job.id}
        outcome = placement.outcome
        if outcome == ASSIGNED and placement.node:  # a worker of another node took it
            state = record.job.state
            state.worker_id, state.participant_identity = placement.worker_id, \
                placement.identity
            state.status = JS.JS_RUNNING
            state.started_at = state.updated_at = time.time_ns()
            record.worker_node, record.identity = placement.node, placement.identity
            if record.finished and self.cluster is not None:  # ended meanwhile: end theirs
                self.cluster.end_elsewhere(placement.node, record.job.id)
                return
            if self._open_room(record.room) is None:
                self._finish(record, JS.JS_SUCCESS, "")
                return
            log.info("job %s assigned to worker %s on node %s as %s", record.job.id,
                     placement.worker_id, placement.node, placement.identity, extra=extra)
        if outcome == ASSIGNED:
            count_agent_job("assigned", elapsed)
            self._emit("agent_job_started", record)
            self._spawn(self._expect_join(record))
        elif outcome == NO_WORKER and not record.finished:
            log.info("no agent worker available for job %s", record.job.id, extra=extra)
            self._finish(record, JS.JS_FAILED, "no workers available")
            count_agent_job("no_worker")
        elif outcome == REJECTED:
            self._finish(record, JS.JS_SUCCESS, "")  # rejected with terminate: done
            count_agent_job("rejected")
        elif outcome == TIMEOUT:
            self._finish(record, JS.JS_FAILED, "agent worker availability timeout")
            count_agent_job("timeout")

    async def _expect_join(self, record: JobRecord) -> None:
        """End a job whose agent has not joined its room within agents.job_join_timeout."""
        timeout = self.settings.agents.job_join_timeout
        if timeout <= 0:
            return
        await asyncio.sleep(timeout)  # a deadline, not a settle: checked once, then done
        room = self._open_room(record.room)
        if record.finished or record.joined or room is None:
            return
        if Identity(record.identity) in room.participants:
            record.joined = True
            return
        log.info("agent %s did not join within %.0f s; job ended", record.identity, timeout,
                 extra={"room": record.room, "job": record.job.id})
        self._terminate(record)
        self._finish(record, JS.JS_FAILED, "agent did not join the room")
        count_agent_job("join_timeout")

    def _terminate(self, record: JobRecord) -> None:
        """Tell a local worker to end the job (`_finish` tells another node's)."""
        worker = record.worker
        if worker is not None and not worker.closed:
            worker.jobs.pop(record.job.id, None)
            self._spawn(worker.terminate(record.job.id))

    def _finish(self, record: JobRecord, status: int, error: str,
                reported: bool = False) -> None:
        """End a job; unless its worker `reported` the end, its node is told to end it."""
        if record.finished:
            return
        was_running = record.status == JS.JS_RUNNING
        record.end(status, error)
        self.jobs.pop(record.job.id, None)
        if record.worker is not None:
            record.worker.jobs.pop(record.job.id, None)
        if record.worker_node and not reported and self.cluster is not None:
            self.cluster.end_elsewhere(record.worker_node, record.job.id)
        if was_running:
            self._emit("agent_job_ended", record)

    def _emit(self, event: str, record: JobRecord) -> None:
        for listener in self.job_listeners:
            try:
                listener(event, record.room, record.job)
            except Exception:
                log.exception("job listener failed", extra={"event": event})

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for worker in list(self.workers.values()):
            with contextlib.suppress(Exception):
                await worker.socket.close(1001, "server shutting down")

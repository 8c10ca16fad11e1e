"""AgentService: the workers registered on this node, and each room's dispatches and jobs.

Dispatch follows livekit-server: a new room gets the dispatches its configuration names
(`RoomConfiguration.agents` from the token, CreateRoom or a preset) or else one default
dispatch for unnamed workers. Each dispatch launches a JT_ROOM job at once, a JT_PARTICIPANT
job per (non-agent) participant that joins and a JT_PUBLISHER job per first publisher,
for whichever worker type it matches. A job goes to an available worker of the dispatch's
agent name, picked at random weighted by `1 - load`; one that declines is skipped for the
next. Beyond the reference (settings.agents): a job whose worker's connection is lost is
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
from roost.agents.jobs import Dispatch, JobRecord, job_token
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
    from roost.config import Settings
    from roost.room.manager import RoomManager
    from roost.room.participant import Participant
    from roost.room.room import Room

log = logging.getLogger("roost.agents")

JT = agent.JobType
JS = agent.JobStatus
Reason = models.DisconnectReason
AGENT_LEAVE_GRACE = 3.0  # seconds a deleted dispatch's agent has to leave before removal

# job_started / job_ended listeners: (event, room name, job)
JobListener = Callable[[str, RoomName, agent.Job], None]


class AgentService:
    """Dispatches agents into the rooms of this node, to the workers registered here."""

    def __init__(self, settings: Settings, rooms: RoomManager, node_id: str) -> None:
        self.settings = settings
        self.rooms = rooms
        self.node_id = node_id
        self.workers: dict[str, Worker] = {}
        self.dispatches: dict[RoomName, dict[str, Dispatch]] = {}
        self.jobs: dict[str, JobRecord] = {}  # every unfinished job, by id
        self.job_listeners: list[JobListener] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.random = random.Random()
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
            if record is None or record.finished:
                continue
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
            if record is not None and not record.finished:
                record.worker, record.orphaned = worker, False
                worker.jobs[job_id] = record.job

    def _job_status(self, worker: Worker, update: agent.UpdateJobStatus) -> None:
        record = self.jobs.get(update.job_id)
        if record is None or record.worker is not worker:
            log.debug("status for unknown job %s", update.job_id, extra=worker.log_extra())
            return
        state = record.job.state
        state.updated_at = time.time_ns()
        if update.status in (JS.JS_SUCCESS, JS.JS_FAILED):
            self._finish(record, update.status, update.error)
        else:
            state.status = update.status

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
        if not any(w.agent_name == d.info.agent_name and w.job_type == job_type
                   for w in self.workers.values()):
            if job_type == JT.JT_ROOM or d.info.agent_name:
                log.info("no %s worker for agent %r: job not dispatched",
                         JT.Name(job_type), d.info.agent_name, extra=room.log_extra())
                count_agent_job("no_worker")
            return
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
        """Offer the job to workers in turn until one accepts (or none is left)."""
        job, started = record.job, time.monotonic()
        extra = {"room": record.room, "job": job.id}
        while not record.finished:
            worker = self.pick(job.agent_name, job.type, record.tried)
            if worker is None:
                log.info("no agent worker available for job %s", job.id, extra=extra)
                self._finish(record, JS.JS_FAILED, "no workers available")
                count_agent_job("no_worker")
                return
            record.tried.add(worker.id)
            try:
                answer = await worker.offer(job, self.settings.agents.availability_timeout)
            except (WorkerNotAvailable, WorkerClosed):
                continue
            except JobRejected:
                self._finish(record, JS.JS_SUCCESS, "")  # rejected with terminate: done
                count_agent_job("rejected")
                return
            except AvailabilityTimeout as exc:
                log.info("%s", exc, extra=extra)
                self._finish(record, JS.JS_FAILED, "agent worker availability timeout")
                count_agent_job("timeout")
                return
            if record.finished or self._open_room(record.room) is None:
                return  # the room or dispatch went away while the worker decided
            identity = answer.participant_identity or f"agent-{job.id}"
            answer.participant_identity = identity
            secret = self.settings.keys.get(worker.api_key, "")
            state = job.state
            state.worker_id, state.participant_identity = worker.id, identity
            state.status = JS.JS_RUNNING
            state.started_at = state.updated_at = time.time_ns()
            record.worker, record.identity = worker, identity
            try:
                await worker.assign(job, job_token(worker, secret, job, answer))
            except WorkerClosed:
                record.worker = None
                continue
            log.info("job %s assigned to worker %s as %s", job.id, worker.id, identity,
                     extra=extra)
            count_agent_job("assigned", time.monotonic() - started)
            self._emit("agent_job_started", record)
            self._spawn(self._expect_join(record))
            return

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
        worker = record.worker
        if worker is not None and not worker.closed:
            worker.jobs.pop(record.job.id, None)
            self._spawn(worker.terminate(record.job.id))

    def _finish(self, record: JobRecord, status: int, error: str) -> None:
        if record.finished:
            return
        was_running = record.status == JS.JS_RUNNING
        record.end(status, error)
        self.jobs.pop(record.job.id, None)
        if record.worker is not None:
            record.worker.jobs.pop(record.job.id, None)
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
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for worker in list(self.workers.values()):
            with contextlib.suppress(Exception):
                await worker.socket.close(1001, "server shutting down")

"""One registered agent worker: its `/agent` connection, registration, offers and jobs.

The worker speaks binary `WorkerMessage`s; roost answers with `ServerMessage`s. The first
frame roost sends is always the RegisterWorkerResponse. An offer (AvailabilityRequest) waits
for the worker's AvailabilityResponse; an accepted job gets its JobAssignment with a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from google.protobuf.message import DecodeError
from livekit.protocol import agent, models

from roost import PROTOCOL_SERVER_VERSION, SERVER_PROTOCOL, ids

log = logging.getLogger("roost.agents")

WORKER = "AW_"
JOB = "AJ_"
DISPATCH = "AD_"
AGENT_PROTOCOL = 1  # the worker protocol version roost speaks (livekit's CurrentProtocol)
REGISTER_TIMEOUT = 10.0  # seconds from the upgrade to the worker's RegisterWorkerRequest
AVAILABILITY_TIMEOUT = 10.0  # seconds a worker has to answer an offer
CLOSE_POLICY_VIOLATION = 1008
MAX_DEPLOYMENT = 64

JT = agent.JobType
JS = agent.JobStatus


class WorkerSocket(Protocol):
    """A full-duplex stream of binary frames with one worker (the edge's WebSocket)."""

    @property
    def closed(self) -> bool: ...

    async def receive(self) -> bytes | str | None: ...

    async def send(self, frame: bytes | str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class WorkerNotAvailable(Exception):
    """The worker declined the job (full, draining, or its request_fnc said no)."""


class WorkerClosed(Exception):
    """The worker's connection ended before it answered."""


class AvailabilityTimeout(Exception):
    """The worker did not answer the offer in AVAILABILITY_TIMEOUT."""


class JobRejected(Exception):
    """The worker rejected the job with `terminate`: it is finished, not offered again."""


class RegistrationError(Exception):
    """The worker's first message was not an acceptable RegisterWorkerRequest."""


def valid_deployment(name: str) -> bool:
    """livekit's rule: at most 64 bytes, no `_`, whitespace or control characters."""
    if len(name.encode()) > MAX_DEPLOYMENT:
        return False
    return not any(c == "_" or c.isspace() or not c.isprintable() for c in name)


def now_ns() -> int:
    return time.time_ns()


class Worker:
    """A worker registered on this node; `run` serves its connection until it ends."""

    def __init__(self, socket: WorkerSocket, *, api_key: str, node_id: str, region: str,
                 on_registered: Callable[[Worker], None],
                 on_job_status: Callable[[Worker, agent.UpdateJobStatus], None],
                 on_migrate: Callable[[Worker, list[str]], None],
                 on_closed: Callable[[Worker], None]) -> None:
        self.socket = socket
        self.api_key = api_key  # job tokens are signed with this key's secret
        self.node_id = node_id
        self.region = region
        self.id = ids.new_id(WORKER)
        self.agent_name = ""
        self.namespace = ""
        self.job_type = JT.JT_ROOM
        self.deployment = ""
        self.version = ""
        self.permissions = models.ParticipantPermission()
        self.status = agent.WorkerStatus.WS_AVAILABLE
        self.load = 0.0
        self.job_count = 0
        self.jobs: dict[str, agent.Job] = {}  # running on this worker, by job id
        self.registered = False
        self.closed = False
        self._offers: dict[str, asyncio.Future[agent.AvailabilityResponse]] = {}
        self._on_registered = on_registered
        self._on_job_status = on_job_status
        self._on_migrate = on_migrate
        self._on_closed = on_closed
        self._send_lock = asyncio.Lock()

    def log_extra(self) -> dict[str, str]:
        return {"worker": self.id, "agent_name": self.agent_name}

    @property
    def available(self) -> bool:
        return self.registered and not self.closed \
            and self.status == agent.WorkerStatus.WS_AVAILABLE

    # -- connection --------------------------------------------------------------------
    async def run(self) -> None:
        """Register (within REGISTER_TIMEOUT), then handle messages until the socket ends."""
        try:
            try:
                await asyncio.wait_for(self._register(), REGISTER_TIMEOUT)
            except TimeoutError:
                log.info("agent worker did not register in %.0f s", REGISTER_TIMEOUT)
                await self.socket.close(CLOSE_POLICY_VIOLATION, "register timeout")
                return
            except RegistrationError as exc:
                log.info("agent worker registration refused: %s", exc)
                await self.socket.close(CLOSE_POLICY_VIOLATION, str(exc))
                return
            if self.closed:
                return
            while True:
                message = await self._receive()
                if message is None:
                    return
                if not await self._handle(message):
                    return
        finally:
            self.closed = True
            for future in self._offers.values():
                if not future.done():
                    future.set_exception(WorkerClosed(self.id))
            self._offers.clear()
            if not self.socket.closed:
                with contextlib.suppress(Exception):
                    await self.socket.close()
            if self.registered:
                self._on_closed(self)

    async def _receive(self) -> agent.WorkerMessage | None:
        """The next WorkerMessage; None when the socket ended or sent something unreadable."""
        while True:
            frame = await self.socket.receive()
            if frame is None:
                return None
            if isinstance(frame, str):
                continue  # the reference worker skips text frames; so does roost
            try:
                return agent.WorkerMessage.FromString(frame)
            except DecodeError:
                log.info("undecodable worker message; closing", extra=self.log_extra())
                await self.socket.close(CLOSE_POLICY_VIOLATION, "malformed WorkerMessage")
                return None

    async def _register(self) -> None:
        while True:
            message = await self._receive()
            if message is None:
                self.closed = True
                return
            which = message.WhichOneof("message")
            if which == "ping":  # answered even before registration
                await self._pong(message.ping)
                continue
            if which != "register":
                raise RegistrationError(f"expected register, got {which or 'an empty message'}")
            break
        req = message.register
        if req.type not in JT.values():
            raise RegistrationError(f"unknown job type {req.type}")
        if not valid_deployment(req.deployment):
            raise RegistrationError("invalid deployment name")
        self.agent_name = req.agent_name
        self.namespace = req.namespace if req.HasField("namespace") else ""
        self.job_type = req.type
        self.deployment = req.deployment
        self.version = req.version
        if req.HasField("allowed_permissions"):
            self.permissions.CopyFrom(req.allowed_permissions)
        else:
            self.permissions = models.ParticipantPermission(
                can_subscribe=True, can_publish=True, can_publish_data=True,
                can_update_metadata=True)
        response = agent.ServerMessage()
        response.register.worker_id = self.id
        info = response.register.server_info
        info.edition = models.ServerInfo.Edition.Standard
        info.version = PROTOCOL_SERVER_VERSION
        info.protocol = SERVER_PROTOCOL
        info.agent_protocol = AGENT_PROTOCOL
        info.region = self.region
        info.node_id = self.node_id
        await self.send(response)
        self.registered = True
        log.info("agent worker registered (%s, version %s)", JT.Name(self.job_type),
                 self.version, extra=self.log_extra())
        self._on_registered(self)

    async def _handle(self, message: agent.WorkerMessage) -> bool:
        """Handle one message; False closes the connection (unknown or empty messages)."""
        which = message.WhichOneof("message")
        if which == "availability":
            answer = message.availability
            future = self._offers.pop(answer.job_id, None)
            if future is not None and not future.done():
                future.set_result(answer)
        elif which == "update_worker":
            update = message.update_worker
            if update.HasField("status"):
                self.status = update.status
            self.load = update.load
            self.job_count = update.job_count
        elif which == "update_job":
            self._on_job_status(self, message.update_job)
        elif which == "ping":
            await self._pong(message.ping)
        elif which == "migrate_job":  # re-registered with jobs still running
            self._on_migrate(self, list(message.migrate_job.job_ids))
        elif which in ("simulate_job", "register"):
            log.debug("ignoring %s from agent worker", which, extra=self.log_extra())
        else:
            log.info("unknown worker message %s; closing", which or "(empty)",
                     extra=self.log_extra())
            await self.socket.close(CLOSE_POLICY_VIOLATION, "unknown worker message")
            return False
        return True

    async def _pong(self, ping: agent.WorkerPing) -> None:
        reply = agent.ServerMessage()
        reply.pong.last_timestamp = ping.timestamp
        reply.pong.timestamp = int(time.time() * 1000)
        await self.send(reply)

    async def send(self, message: agent.ServerMessage) -> None:
        """Write one ServerMessage; raises WorkerClosed when the socket is gone."""
        if self.closed and message.WhichOneof("message") != "register":
            raise WorkerClosed(self.id)
        async with self._send_lock:
            try:
                await self.socket.send(message.SerializeToString())
            except ConnectionError as exc:
                raise WorkerClosed(self.id) from exc

    # -- jobs ----------------------------------------------------------------------------
    async def offer(self, job: agent.Job,
                    timeout: float = AVAILABILITY_TIMEOUT) -> agent.AvailabilityResponse:
        """Offer `job`; the worker's acceptance, else WorkerNotAvailable, JobRejected,
        AvailabilityTimeout or WorkerClosed."""
        if self.closed:
            raise WorkerClosed(self.id)
        future: asyncio.Future[agent.AvailabilityResponse] = \
            asyncio.get_running_loop().create_future()
        self._offers[job.id] = future
        request = agent.ServerMessage()
        offered = request.availability.job
        offered.CopyFrom(job)
        offered.state.worker_id = self.id
        offered.state.status = JS.JS_RUNNING
        offered.state.started_at = offered.state.updated_at = now_ns()
        extra = {**self.log_extra(), "job": job.id, "room": job.room.name}
        try:
            await self.send(request)
            log.debug("job offered", extra=extra)  # bench/agents.py times these two lines
            answer = await asyncio.wait_for(future, timeout)
            log.debug("job offer answered (available=%s)", answer.available, extra=extra)
        except TimeoutError as exc:
            raise AvailabilityTimeout(f"worker {self.id} did not answer in {timeout:g} s") \
                from exc
        finally:
            self._offers.pop(job.id, None)
        if answer.available:
            return answer
        if answer.terminate:
            raise JobRejected(job.id)
        raise WorkerNotAvailable(self.id)

    async def assign(self, job: agent.Job, token: str) -> None:
        """Hand an accepted job to the worker, which joins with `token` (no url: its own)."""
        message = agent.ServerMessage()
        message.assignment.job.CopyFrom(job)
        message.assignment.token = token
        self.jobs[job.id] = job
        await self.send(message)
        log.debug("job assignment sent", extra={**self.log_extra(), "job": job.id,
                                                "room": job.room.name})

    async def terminate(self, job_id: str) -> None:
        """Ask the worker to end a job (it shuts the job process down)."""
        message = agent.ServerMessage()
        message.termination.job_id = job_id
        with contextlib.suppress(WorkerClosed):
            await self.send(message)

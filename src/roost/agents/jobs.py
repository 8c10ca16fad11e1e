"""Jobs and dispatches: the records roost keeps, and the token a job's agent joins with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from livekit.protocol import agent, agent_dispatch

from roost.agents.worker import Worker
from roost.auth import VideoGrant, issue_token
from roost.ids import RoomName

AGENT_NAME_ATTRIBUTE = "lk.agent_name"  # set by the server on every job participant
JOB_TOKEN_TTL = 3600.0


@dataclass
class JobRecord:
    """One job: where it runs and how it is doing."""

    job: agent.Job
    room: RoomName
    dispatch_id: str
    worker: Worker | None = None
    identity: str = ""  # the agent participant's, once accepted
    joined: bool = False  # its participant has been seen in the room
    orphaned: bool = False  # its worker's connection ended while the job was running
    tried: set[str] = field(default_factory=set)  # worker ids offered this job
    worker_node: str = ""  # the node of its worker when that is not this one

    @property
    def status(self) -> int:
        return int(self.job.state.status)

    @property
    def finished(self) -> bool:
        return self.status in (agent.JobStatus.JS_SUCCESS, agent.JobStatus.JS_FAILED)

    def end(self, status: int, error: str = "") -> None:
        state = self.job.state
        state.status = status  # type: ignore[assignment]
        state.error = error
        state.ended_at = state.updated_at = time.time_ns()


ASSIGNED, NO_WORKER, REJECTED, TIMEOUT, CANCELLED = (
    "assigned", "no_worker", "rejected", "timeout", "cancelled")


@dataclass
class Placement:
    """How offering a job to one node's workers ended (and to whom, when assigned)."""

    outcome: str  # ASSIGNED, NO_WORKER (none left to ask), REJECTED, TIMEOUT or CANCELLED
    worker_id: str = ""
    identity: str = ""
    node: str = ""  # the worker's node, when it is another one


@dataclass
class Dispatch:
    """An AgentDispatch in a room and the jobs it launched."""

    info: agent_dispatch.AgentDispatch
    jobs: list[JobRecord] = field(default_factory=list)
    # (participant sid, job type) pairs already given a participant/publisher job
    launched_for: set[tuple[str, int]] = field(default_factory=set)

    @property
    def id(self) -> str:
        return str(self.info.id)

    def to_proto(self) -> agent_dispatch.AgentDispatch:
        out = agent_dispatch.AgentDispatch()
        out.CopyFrom(self.info)
        out.state.jobs.extend(r.job for r in self.jobs)
        return out


def job_token(worker: Worker, secret: str, job: agent.Job,
              answer: agent.AvailabilityResponse) -> str:
    """The token the job's agent joins with, as livekit builds it (protocol agent/token.go)."""
    perm = worker.permissions
    grant = VideoGrant(room_join=True, agent=True, room=RoomName(job.room.name),
                       can_subscribe=perm.can_subscribe, can_publish=perm.can_publish,
                       can_publish_data=perm.can_publish_data, hidden=perm.hidden,
                       can_update_own_metadata=perm.can_update_metadata,
                       can_subscribe_metrics=perm.can_subscribe_metrics)
    attributes = dict(answer.participant_attributes)
    attributes[AGENT_NAME_ATTRIBUTE] = worker.agent_name
    return issue_token(worker.api_key, secret, identity=answer.participant_identity,
                       name=answer.participant_name, metadata=answer.participant_metadata,
                       kind="agent", attributes=attributes, video=grant,
                       valid_for=JOB_TOKEN_TTL)

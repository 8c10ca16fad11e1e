"""The routing contract: nodes, where rooms live, and the message bus between nodes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from roost.ids import RoomName

SERVING = "serving"
DRAINING = "draining"
BINARY, TEXT, CLOSE = "b", "t", "c"  # stream frame kinds: protobuf, protojson, close


class RoutingUnavailable(Exception):
    """The cluster cannot be asked right now (Redis down, node unreachable, no node left)."""


class NodeUnreachable(RoutingUnavailable, ConnectionError):
    """A message found no listener on the node it was addressed to."""


@dataclass
class LocalLoad:
    """What this node hosts right now, for heartbeats and room claims."""

    rooms: list[RoomName] = field(default_factory=list)
    participants: int = 0


@dataclass
class NodeInfo:
    """One roost process of the cluster, as its last heartbeat described it."""

    id: str
    url: str  # http://host:port of its edge (RoomService calls are forwarded there)
    state: str = SERVING
    rooms: int = 0
    participants: int = 0
    cpu: float = 0.0  # share of one core its process used since the last heartbeat
    started_at: float = 0.0
    updated_at: float = 0.0

    @property
    def load(self) -> int:
        """The placement weight: rooms plus participants."""
        return self.rooms + self.participants

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: bytes | str) -> NodeInfo:
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


# A bus request handler: (sender node id, request body) → reply body.
Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class Stream(Protocol):
    """Frames exchanged with one peer node for one relayed connection."""

    stream_id: str
    peer: str

    async def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """The next (kind, payload); None once the stream is closed or broken.

        Raises TimeoutError when `timeout` passes without a frame.
        """
        ...

    async def send(self, kind: str, payload: bytes) -> None:
        """Publish one frame to the peer; raises ConnectionError when it cannot."""
        ...

    def close(self) -> None:
        """Stop receiving; a pending `receive` returns None."""
        ...


class Bus(Protocol):
    """Messages between nodes: request/reply and per-connection frame streams."""

    node_id: str

    def serve(self, method: str, handler: Handler) -> None:
        """Answer requests for `method` with `handler`."""

    async def request(self, node: str, method: str, body: dict[str, Any],
                      timeout: float) -> dict[str, Any]:
        """Ask `node`; raises RoutingUnavailable (NodeUnreachable if nobody listens)."""
        ...

    def open_stream(self, stream_id: str, peer: str) -> Stream:
        """Start receiving the frames `peer` sends for `stream_id`."""
        ...


class Router(Protocol):
    """Where rooms live: this node alone (LocalRouter) or a cluster over Redis (RedisRouter)."""

    node_id: str
    bus: Bus | None  # None when every room is on this node
    on_conflict: Callable[[RoomName], None]  # a room hosted here was found claimed by another node

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Leave the cluster: release this node's rooms and registration."""

    async def set_draining(self) -> None:
        """Take no new rooms from now on."""

    async def place(self, room: RoomName) -> NodeInfo:
        """The node hosting `room`, or the least-loaded live node, now claimed for it."""
        ...

    async def owner(self, room: RoomName) -> NodeInfo | None:
        """The live node hosting `room`, or None."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """Every live node."""
        ...

    def is_alive(self, node_id: str) -> bool:
        """Whether `node_id` was alive at the last heartbeat (cached, no round trip)."""
        ...

    def suspect(self, node_id: str) -> None:
        """`node_id` did not answer: stop placing rooms there for a while."""

    def room_closed(self, room: RoomName) -> None:
        """A room of this node closed: release its claim."""

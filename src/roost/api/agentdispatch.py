"""Twirp livekit.AgentDispatchService: CreateDispatch, DeleteDispatch, ListDispatch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message
from livekit.protocol import agent_dispatch as ad

from roost.agents.service import AgentService
from roost.agents.worker import valid_deployment
from roost.api import errors
from roost.api.guards import ensure_admin
from roost.auth import Claims
from roost.config import Settings
from roost.ids import RoomName
from roost.room.manager import RoomManager
from roost.room.room import Room

SERVICE = "livekit.AgentDispatchService"
Method = Callable[[Claims | None, Any], Awaitable[Message]]


class AgentDispatchService:
    """The dispatch API, over this node's rooms and AgentService (roomAdmin per room)."""

    def __init__(self, settings: Settings, rooms: RoomManager, agents: AgentService) -> None:
        self.settings = settings
        self.rooms = rooms
        self.agents = agents
        self.limit = settings.limit

    def methods(self) -> dict[str, tuple[type[Message], Method]]:
        """Twirp method name → (request type, implementation)."""
        return {
            "CreateDispatch": (ad.CreateAgentDispatchRequest, self.create_dispatch),
            "DeleteDispatch": (ad.DeleteAgentDispatchRequest, self.delete_dispatch),
            "ListDispatch": (ad.ListAgentDispatchRequest, self.list_dispatch),
        }

    def _room(self, name: str) -> Room | None:
        room = self.rooms.rooms.get(RoomName(name))
        return room if room is not None and not room.closed else None

    async def create_dispatch(self, claims: Claims | None,
                              req: ad.CreateAgentDispatchRequest) -> ad.AgentDispatch:
        ensure_admin(claims, req.room)
        if not valid_deployment(req.deployment):
            raise errors.invalid_argument("invalid deployment name")
        if not self.limit.check_metadata(req.metadata):
            raise errors.invalid_argument("metadata size exceeds limits")
        if not self.limit.check_attributes(dict(req.attributes)):
            raise errors.invalid_argument("attributes size exceeds limits")
        room = self._room(req.room)
        if room is None:
            if not self.settings.room.auto_create:
                raise errors.room_not_found()
            # as livekit: created with no agents, so it also gets the default dispatch
            room = self.rooms.create_room(RoomName(req.room))
        dispatch = self.agents.add_dispatch(room, agent_name=req.agent_name,
                                            metadata=req.metadata,
                                            attributes=dict(req.attributes),
                                            deployment=req.deployment)
        return dispatch.to_proto()

    async def delete_dispatch(self, claims: Claims | None,
                              req: ad.DeleteAgentDispatchRequest) -> ad.AgentDispatch:
        ensure_admin(claims, req.room)
        dispatch = self.agents.delete_dispatch(RoomName(req.room), req.dispatch_id)
        if dispatch is None:
            raise errors.TwirpError("not_found", "dispatch not found")
        return dispatch.to_proto()

    async def list_dispatch(self, claims: Claims | None,
                            req: ad.ListAgentDispatchRequest) -> ad.ListAgentDispatchResponse:
        ensure_admin(claims, req.room)
        if self._room(req.room) is None:
            raise errors.room_not_found()
        found = self.agents.list_dispatches(RoomName(req.room), req.dispatch_id)
        return ad.ListAgentDispatchResponse(agent_dispatches=[d.to_proto() for d in found])

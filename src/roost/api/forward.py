"""RoomService on any node: calls about a room hosted elsewhere go to its node over HTTP.

The call is re-sent unchanged (same path, body, content type and Authorization) with an
`X-Roost-Forwarded` header, so the hosting node answers it locally and never forwards again.
ListRooms asks every live node and merges; CreateRoom and CreateDispatch place the room
first.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web
from google.protobuf.message import DecodeError, Message
from livekit.protocol import agent_dispatch, models
from livekit.protocol import room as room_pb

from roost.api.errors import TwirpError
from roost.ids import RoomName
from roost.routing import NodeInfo, Router, RoutingUnavailable

log = logging.getLogger("roost.api")

FORWARDED = "X-Roost-Forwarded"
FORWARD_TIMEOUT = 30.0  # seconds; PerformRpc may wait for a participant's answer
LIST_TIMEOUT = 5.0


class ApiForwarder:
    """Decides where a RoomService call runs and carries it there."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._http: aiohttp.ClientSession | None = None

    @property
    def clustered(self) -> bool:
        return self.router.bus is not None

    async def close(self, app: web.Application | None = None) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(FORWARD_TIMEOUT))
        return self._http

    async def target(self, method: str, message: Message,
                     request: web.Request) -> NodeInfo | None:
        """The node that must run this call, or None to run it here."""
        if not self.clustered or FORWARDED in request.headers:
            return None
        try:
            if isinstance(message, room_pb.CreateRoomRequest) and message.name:
                node: NodeInfo | None = await self.router.place(RoomName(message.name))
            elif isinstance(message, agent_dispatch.CreateAgentDispatchRequest) and \
                    message.room:  # it creates the room when there is none
                node = await self.router.place(RoomName(message.room))
            elif "room" in message.DESCRIPTOR.fields_by_name:
                room = RoomName(str(getattr(message, "room", "")))
                node = await self.router.owner(room) if room else None
            else:
                return None
        except RoutingUnavailable as exc:
            if isinstance(message, room_pb.CreateRoomRequest):
                raise TwirpError("unavailable", f"cannot place the room: {exc}") from exc
            log.warning("routing unavailable; answering %s from this node: %s", method, exc)
            return None
        return None if node is None or node.id == self.router.node_id else node

    def _headers(self, request: web.Request) -> dict[str, str]:
        headers = {"Content-Type": request.headers.get("Content-Type", "application/protobuf"),
                   FORWARDED: self.router.node_id}
        auth = request.headers.get("Authorization")
        if auth is not None:
            headers["Authorization"] = auth
        return headers

    async def forward(self, node: NodeInfo, request: web.Request, body: bytes) -> web.Response:
        """Run the call on `node` and answer with exactly what it answered."""
        url = node.url + request.path_qs
        try:
            async with self._session().post(url, data=body,
                                            headers=self._headers(request)) as resp:
                data = await resp.read()
                return web.Response(status=resp.status, body=data,
                                    content_type=resp.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.router.suspect(node.id)
            raise TwirpError("unavailable", f"the room's node is unreachable: {exc}") from exc

    async def list_rooms(self, local: room_pb.ListRoomsResponse, req: room_pb.ListRoomsRequest,
                         request: web.Request) -> room_pb.ListRoomsResponse:
        """Add every other live node's rooms to this node's answer."""
        if not self.clustered or FORWARDED in request.headers:
            return local
        try:
            nodes = [n for n in await self.router.nodes() if n.id != self.router.node_id]
        except RoutingUnavailable as exc:
            log.warning("ListRooms answers from this node only: %s", exc)
            return local
        headers = self._headers(request)
        headers["Content-Type"] = "application/protobuf"
        body = req.SerializeToString()

        async def ask(node: NodeInfo) -> list[models.Room]:
            url = f"{node.url}/twirp/livekit.RoomService/ListRooms"
            try:
                async with self._session().post(url, data=body, headers=headers,
                                                timeout=aiohttp.ClientTimeout(LIST_TIMEOUT)
                                                ) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientError(f"status {resp.status}")
                    answer = room_pb.ListRoomsResponse()
                    answer.ParseFromString(await resp.read())
                    return list(answer.rooms)
            except (aiohttp.ClientError, TimeoutError, DecodeError) as exc:
                log.warning("ListRooms: node %s did not answer: %s", node.id, exc)
                return []

        merged = room_pb.ListRoomsResponse()
        merged.rooms.extend(local.rooms)
        seen = {r.name for r in local.rooms}
        for rooms in await asyncio.gather(*(ask(n) for n in nodes)):
            for room in rooms:
                if room.name not in seen:
                    seen.add(room.name)
                    merged.rooms.append(room)
        return merged

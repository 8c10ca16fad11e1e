"""LocalRouter: a single node without Redis; every room lives here."""

from __future__ import annotations

import time
from collections.abc import Callable

from roost.ids import RoomName
from roost.routing.types import DRAINING, Bus, LocalLoad, NodeInfo


class LocalRouter:
    """Routes every room to this node; registration is a no-op."""

    bus: Bus | None = None

    def __init__(self, node_id: str, url: str = "",
                 load: Callable[[], LocalLoad] = LocalLoad) -> None:
        self.node_id = node_id
        self._load = load
        self._info = NodeInfo(id=node_id, url=url, started_at=time.time())
        self.on_conflict: Callable[[RoomName], None] = lambda room: None

    def _self(self) -> NodeInfo:
        load = self._load()
        self._info.rooms = len(load.rooms)
        self._info.participants = load.participants
        self._info.updated_at = time.time()
        return self._info

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def set_draining(self) -> None:
        self._info.state = DRAINING

    async def place(self, room: RoomName) -> NodeInfo:
        return self._self()

    async def owner(self, room: RoomName) -> NodeInfo | None:
        return self._self() if room in self._load().rooms else None

    async def nodes(self) -> list[NodeInfo]:
        return [self._self()]

    def is_alive(self, node_id: str) -> bool:
        return node_id == self.node_id

    def suspect(self, node_id: str) -> None:
        return None

    def room_closed(self, room: RoomName) -> None:
        return None

"""Parent-side helpers: roost.client rooms, and an official-SDK peer in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer
from tests.helpers.wait import until

from roost import client as rc

EVENT_TIMEOUT = 10.0


async def wait_until(predicate: Callable[[], bool], timeout: float = EVENT_TIMEOUT,
                     what: str = "condition") -> None:
    """Poll `predicate`; TimeoutError naming `what` after `timeout`."""
    await until(predicate, timeout, what)


class Recorder:
    """Records chosen events of a roost.client Room."""

    def __init__(self, room: rc.Room, *events: str) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        for name in events:
            room.on(name, lambda *args, n=name: self.events.append((n, args)))

    def all(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.events if event == name]

    async def wait(self, name: str, match: Callable[..., bool] = lambda *_: True,
                   timeout: float = EVENT_TIMEOUT) -> tuple[Any, ...]:
        found: list[tuple[Any, ...]] = []

        def check() -> bool:
            found[:] = [args for args in self.all(name) if match(*args)]
            return bool(found)

        await wait_until(check, timeout, what=f"event {name!r}")
        return found[0]


@contextlib.asynccontextmanager
async def joined(server: RoostServer, identity: str, room_name: str,
                 options: rc.RoomOptions | None = None, **grants: Any
                 ) -> AsyncIterator[rc.Room]:
    """A connected roost.client Room, disconnected on exit."""
    room = rc.Room()
    grants.setdefault("can_update_own_metadata", True)
    await asyncio.wait_for(room.connect(server.url, server.token(identity, room_name, **grants),
                                        options), 20)
    try:
        yield room
    finally:
        await asyncio.wait_for(room.disconnect(), 10)


class OfficialPeer:
    """The official SDK in a child process (`official_peer.peer`), driven over RPC."""

    def __init__(self, server: RoostServer, room_name: str, log_dir: Path,
                 identity: str = "official", controller: str = "roost") -> None:
        self.identity = identity
        self._args = (server.info, room_name, identity, controller)
        self._log_dir = log_dir
        self._task: asyncio.Future[Any] | None = None
        self.room: rc.Room | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(asyncio.to_thread(
            run_scenario, "tests.client.official_peer:peer", *self._args,
            timeout=120, log_dir=self._log_dir))

    async def ready(self, room: rc.Room, timeout: float = 30.0) -> rc.RemoteParticipant:
        """Wait until the peer is in `room` and has registered its RPC methods."""
        self.room = room

        def is_ready() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()  # raises the child's failure
                raise AssertionError("the official peer ended early")
            p = room.remote_participants.get(self.identity)
            return p is not None and p.attributes.get("ready") == "1"

        await wait_until(is_ready, timeout, what="the official peer to be ready")
        return room.remote_participants[self.identity]

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run one operation in the official peer and return its result."""
        assert self.room is not None
        answer = await self.room.local_participant.perform_rpc(
            destination_identity=self.identity, method="cmd",
            payload=json.dumps({"op": op, **args}), response_timeout=40)
        return json.loads(answer)  # type: ignore[no-any-return]

    async def finish(self) -> dict[str, Any]:
        """Tell the peer to leave; its final report."""
        await self.call("done")
        assert self._task is not None
        return await asyncio.wait_for(self._task, 60)  # type: ignore[no-any-return]

    async def abandon(self) -> None:
        """On failure: make the child leave soon (it also leaves when the controller does)."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("done"), 5)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 30)


@contextlib.asynccontextmanager
async def with_official(server: RoostServer, room_name: str, tmp_path: Path,
                        options: rc.RoomOptions | None = None
                        ) -> AsyncIterator[tuple[rc.Room, OfficialPeer]]:
    """`roost` (roost.client) and `official` (livekit.rtc, child process) in one room."""
    peer = OfficialPeer(server, room_name, tmp_path)
    peer.start()
    ok = False
    try:
        async with joined(server, "roost", room_name, options) as room:
            await peer.ready(room)
            yield room, peer
            ok = True
            await peer.finish()
    finally:
        if not ok:
            await peer.abandon()

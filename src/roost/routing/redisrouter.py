"""RedisRouter: the node registry, room placement and the bus, shared over Redis.

Keys: `roost:node:<id>` (the node's JSON, 5 s TTL, rewritten every heartbeat) and the set
`roost:nodes`; `roost:room:<name>` → hosting node id (5 s TTL, re-claimed by the host every
heartbeat, so a dead node's rooms free themselves); `roost:pending:<id>` counts rooms just
placed on a node, so a burst of new rooms spreads before the node's next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from roost.ids import RoomName
from roost.routing.bus import RedisBus
from roost.routing.types import (
    DRAINING,
    SERVING,
    Bus,
    LocalLoad,
    NodeInfo,
    RoutingUnavailable,
)

log = logging.getLogger("roost.routing")

NODE_KEY = "roost:node:"
NODES = "roost:nodes"
ROOM_KEY = "roost:room:"
PENDING_KEY = "roost:pending:"
HEARTBEAT = 1.5  # seconds between heartbeats while Redis answers
RETRY = 0.5  # seconds between attempts while it does not
NODE_TTL_MS = 5000
ROOM_TTL_MS = 5000
PENDING_TTL_MS = 3000
SUSPECT_FOR = 10.0  # seconds a node that did not answer gets no rooms
CPU_LIMIT = 0.9  # nodes busier than this get new rooms only when every node is
CLAIM_CHUNK = 500

# Refresh this node's claims; returns the (1-based) indexes of rooms another node holds.
CLAIM = """
local conflicts = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(conflicts, i)
  end
end
return conflicts
"""
# Delete a claim only if it still names the given node.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_FAILURES = (RedisError, OSError)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class CpuMeter:
    """This process's CPU use between samples at least a second apart, as a share of a core."""

    MIN_INTERVAL = 1.0  # shorter intervals (start-up, a drain beat) keep the last value

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()
        self._share = 0.0

    def sample(self) -> float:
        cpu, wall = time.process_time(), time.monotonic()
        if wall - self._wall >= self.MIN_INTERVAL:
            self._share = round((cpu - self._cpu) / (wall - self._wall), 3)
            self._cpu, self._wall = cpu, wall
        return self._share


class RedisRouter:
    """One node's membership in a Redis-backed cluster."""

    def __init__(self, redis: Redis, node_id: str, url: str,
                 load: Callable[[], LocalLoad]) -> None:
        self.redis = redis
        self.node_id = node_id
        self._bus = RedisBus(redis, node_id)
        self.bus: Bus | None = self._bus
        self.info = NodeInfo(id=node_id, url=url, started_at=time.time())
        self.on_conflict: Callable[[RoomName], None] = lambda room: None
        self._load = load
        self._nodes: dict[str, NodeInfo] = {}
        self._suspects: dict[str, float] = {}
        self._cpu = CpuMeter()
        self._claim = redis.register_script(CLAIM)
        self._release = redis.register_script(RELEASE)
        self._healthy = False
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe and register (bounded wait; a missing Redis is retried, not fatal)."""
        await self._bus.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bus.subscribed.wait(), 3.0)
        await self._beat()
        self._task = asyncio.get_running_loop().create_task(self._heartbeats())

    async def stop(self) -> None:
        if self._tasks:  # claims of rooms that just closed are being released
            await asyncio.wait(list(self._tasks), timeout=1.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*_FAILURES):
            pipe = self.redis.pipeline(transaction=False)
            for room in self._load().rooms:
                pipe.eval(RELEASE, 1, ROOM_KEY + room, self.node_id)
            pipe.delete(NODE_KEY + self.node_id)
            pipe.srem(NODES, self.node_id)
            await pipe.execute()
        for task in list(self._tasks):
            task.cancel()
        await self._bus.stop()
        with contextlib.suppress(*_FAILURES):
            await self.redis.aclose()
        log.info("left the cluster", extra={"node": self.node_id})

    async def set_draining(self) -> None:
        self.info.state = DRAINING
        await self._beat()

    # -- heartbeats ----------------------------------------------------------------
    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT if self._healthy else RETRY)
            try:
                await self._beat()
            except Exception:  # a bug here must not silence the node: log and go on
                log.exception("heartbeat failed", extra={"node": self.node_id})
                self._healthy = False

    async def _beat(self) -> None:
        try:
            self._healthy = await self._register()
        except _FAILURES as exc:
            self._healthy = False
            if not self._failing:
                log.warning("redis unreachable (%s); retrying", exc, extra={"node": self.node_id})
                self._failing = True
            return
        if self._failing and self._healthy:
            log.info("redis reachable again: node registered, rooms re-claimed",
                     extra={"node": self.node_id})
            self._failing = False

    async def _register(self) -> bool:
        """Write this node's heartbeat and claims; False while the bus is not subscribed."""
        load = self._load()
        info = self.info
        info.rooms, info.participants = len(load.rooms), load.participants
        info.cpu, info.updated_at = self._cpu.sample(), time.time()
        registered = self._bus.subscribed.is_set()  # unreachable nodes must look dead
        pipe = self.redis.pipeline(transaction=False)
        if registered:
            pipe.set(NODE_KEY + self.node_id, info.to_json(), px=NODE_TTL_MS)
            pipe.sadd(NODES, self.node_id)
        pipe.smembers(NODES)
        results = await pipe.execute()
        if registered:
            await self._claim_rooms(load.rooms)
        await self._refresh_nodes([_text(m) for m in results[-1]])
        return registered

    async def _claim_rooms(self, rooms: list[RoomName]) -> None:
        for start in range(0, len(rooms), CLAIM_CHUNK):
            chunk = rooms[start:start + CLAIM_CHUNK]
            conflicts = await self._claim(keys=[ROOM_KEY + r for r in chunk],
                                          args=[self.node_id, ROOM_TTL_MS])
            for index in conflicts:
                room = chunk[int(index) - 1]
                log.warning("room is claimed by another node; evicting the local copy",
                            extra={"room": room, "node": self.node_id})
                self.on_conflict(room)

    async def _refresh_nodes(self, ids: list[str]) -> None:
        nodes = await self._fetch(ids)
        dead = [i for i in ids if i not in nodes]
        if dead:
            await self.redis.srem(NODES, *dead)
        self._nodes = nodes

    async def _fetch(self, ids: list[str]) -> dict[str, NodeInfo]:
        if not ids:
            return {}
        values = await self.redis.mget([NODE_KEY + i for i in ids])
        return {i: NodeInfo.from_json(v) for i, v in zip(ids, values, strict=True) if v}

    # -- placement -----------------------------------------------------------------
    def _suspected(self, node_id: str) -> bool:
        until = self._suspects.get(node_id)
        if until is None:
            return False
        if until < time.monotonic():
            del self._suspects[node_id]
            return False
        return True

    def suspect(self, node_id: str) -> None:
        if node_id != self.node_id:
            log.info("node did not answer; no rooms go there for %.0f s", SUSPECT_FOR,
                     extra={"node": node_id})
            self._suspects[node_id] = time.monotonic() + SUSPECT_FOR

    def is_alive(self, node_id: str) -> bool:
        return node_id in self._nodes and not self._suspected(node_id)

    async def place(self, room: RoomName) -> NodeInfo:
        key = ROOM_KEY + room
        try:
            for _ in range(3):
                ids = sorted(set(self._nodes) | {self.node_id})
                pipe = self.redis.pipeline(transaction=False)
                pipe.get(key)
                pipe.smembers(NODES)
                pipe.mget([NODE_KEY + i for i in ids])
                pipe.mget([PENDING_KEY + i for i in ids])
                owner_raw, members, infos, pending_raw = await pipe.execute()
                new = sorted({_text(m) for m in members} - set(ids))
                if new:  # nodes that joined since the last heartbeat: one more round trip
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.mget([NODE_KEY + i for i in new])
                    pipe.mget([PENDING_KEY + i for i in new])
                    more_infos, more_pending = await pipe.execute()
                    ids, infos = ids + new, infos + more_infos
                    pending_raw = pending_raw + more_pending
                nodes = {i: NodeInfo.from_json(v) for i, v in zip(ids, infos, strict=True) if v}
                pending = {i: int(v or 0) for i, v in zip(ids, pending_raw, strict=True)}
                if owner_raw is not None:
                    owner_id = _text(owner_raw)
                    owner = nodes.get(owner_id) or (await self._fetch([owner_id])).get(owner_id)
                    if owner is not None and not self._suspected(owner_id):
                        return owner
                    log.info("the room's node is gone; placing the room again",
                             extra={"room": room, "node": owner_id})
                    await self._release(keys=[key], args=[owner_id])
                chosen = self._select(nodes, pending)
                if await self.redis.set(key, chosen.id, nx=True, px=ROOM_TTL_MS):
                    pipe = self.redis.pipeline(transaction=False)
                    pipe.incr(PENDING_KEY + chosen.id)
                    pipe.pexpire(PENDING_KEY + chosen.id, PENDING_TTL_MS)
                    await pipe.execute()
                    log.debug("room placed", extra={"room": room, "node": chosen.id})
                    return chosen
        except _FAILURES as exc:
            raise RoutingUnavailable(f"redis unavailable: {exc}") from exc
        raise RoutingUnavailable(f"could not place room {room!r}")

    def _select(self, nodes: dict[str, NodeInfo], pending: dict[str, int]) -> NodeInfo:
        live = [n for n in nodes.values() if n.state == SERVING and not self._suspected(n.id)]
        if not live and self.info.state == SERVING and self._bus.subscribed.is_set():
            live = [self.info]  # Redis just came back and nobody re-registered yet
        if not live:
            raise RoutingUnavailable("no node can take new rooms")
        return min(live, key=lambda n: (n.cpu > CPU_LIMIT, n.load + pending.get(n.id, 0),
                                        random.random()))

    async def owner(self, room: RoomName) -> NodeInfo | None:
        try:
            raw = await self.redis.get(ROOM_KEY + room)
            if raw is None:
                return None
            owner_id = _text(raw)
            node = (await self._fetch([owner_id])).get(owner_id)
        except _FAILURES as exc:
            raise RoutingUnavailable(f"redis unavailable: {exc}") from exc
        return None if node is None or self._suspected(owner_id) else node

    async def nodes(self) -> list[NodeInfo]:
        try:
            ids = [_text(m) for m in await self.redis.smembers(NODES)]
            found = await self._fetch(ids)
        except _FAILURES as exc:
            raise RoutingUnavailable(f"redis unavailable: {exc}") from exc
        return [n for n in found.values() if not self._suspected(n.id)]

    def room_closed(self, room: RoomName) -> None:
        task = asyncio.get_running_loop().create_task(self._release_room(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_room(self, room: RoomName) -> None:
        if room in self._load().rooms:
            return  # re-created meanwhile: keep the claim
        with contextlib.suppress(*_FAILURES):
            await self._release(keys=[ROOM_KEY + room], args=[self.node_id])

"""Roost nodes sharing a real redis-server, seen through Redis's registry of nodes and rooms."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from typing import Any

from tests.helpers.redis import RedisProcess
from tests.helpers.server import RoostServer

REGISTRY_TIMEOUT = 10.0


@dataclass
class Cluster:
    """Roost nodes sharing `redis`; node ids come from the registry in Redis."""

    redis: RedisProcess
    nodes: list[RoostServer]

    def registry(self) -> dict[str, dict[str, Any]]:
        """Live node id → its registry entry."""
        return {k.removeprefix("roost:node:"): json.loads(v)
                for k, v in self.redis.keys("roost:node:*").items()}

    def node_id(self, server: RoostServer) -> str:
        for node_id, entry in self.registry().items():
            if entry["url"] == server.http_url:
                return node_id
        raise AssertionError(f"{server.http_url} is not registered")

    def server(self, node_id: str) -> RoostServer:
        for server in self.nodes:
            if self.node_id(server) == node_id:
                return server
        raise AssertionError(f"no live server has node id {node_id}")

    def others(self, server: RoostServer) -> list[RoostServer]:
        return [s for s in self.nodes if s is not server]

    def room_owner(self, room: str) -> str | None:
        return self.redis.keys(f"roost:room:{room}").get(f"roost:room:{room}")

    def kill(self, server: RoostServer) -> None:
        """SIGKILL a node (the harness then ignores its exit code)."""
        proc = server.process
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        server.process = None
        self.nodes.remove(server)

    def wait_registered(self, count: int, timeout: float = REGISTRY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while len(self.registry()) != count:
            assert time.monotonic() < deadline, f"registry: {self.registry()}"
            time.sleep(0.1)

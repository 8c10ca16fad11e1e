"""Where rooms live: this node alone (LocalRouter) or a cluster of nodes sharing Redis."""

from __future__ import annotations

from collections.abc import Callable

from roost.config import RedisConfig
from roost.routing.local import LocalRouter
from roost.routing.types import (
    Bus,
    LocalLoad,
    NodeInfo,
    NodeUnreachable,
    Router,
    RoutingUnavailable,
    Stream,
)

__all__ = [
    "Bus",
    "LocalLoad",
    "LocalRouter",
    "NodeInfo",
    "NodeUnreachable",
    "Router",
    "RoutingUnavailable",
    "Stream",
    "make_router",
]


def make_router(redis: RedisConfig, node_id: str, url: str,
                load: Callable[[], LocalLoad]) -> Router:
    """A RedisRouter when `redis.address` or sentinels are configured, else a LocalRouter."""
    if not redis.address and not redis.sentinel_addresses:
        return LocalRouter(node_id, url, load)
    from roost.routing.client import redis_client
    from roost.routing.redisrouter import RedisRouter

    return RedisRouter(redis_client(redis), node_id, url, load)

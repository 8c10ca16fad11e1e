"""The redis-py asyncio client from `redis.*` settings: one address, or sentinels."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from roost.config import ConfigError, RedisConfig

DEFAULT_PORT = 6379
SOCKET_TIMEOUT = 3.0  # seconds; a hung Redis must not stall joins for long
CONNECT_TIMEOUT = 2.0

# redis-py logs each new connection's feature probes at DEBUG; --dev runs at DEBUG.
logging.getLogger("redis").setLevel(logging.INFO)


def parse_address(address: str) -> tuple[str, int]:
    """`host:port`, `host` or `[v6]:port` → (host, port)."""
    text = address.strip()
    if text.startswith("redis://"):
        text = text[len("redis://"):].rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    try:
        return host or "127.0.0.1", int(port) if port else DEFAULT_PORT
    except ValueError as exc:
        raise ConfigError(f"redis address {address!r} has a bad port") from exc


def redis_client(cfg: RedisConfig) -> Redis:
    """A client that fails fast (one retry, no back-off): callers retry on their own clock."""
    options: dict[str, Any] = {
        "username": cfg.username or None,
        "password": cfg.password or None,
        "db": cfg.db,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
    }
    if cfg.sentinel_addresses:
        if not cfg.sentinel_master_name:
            raise ConfigError("redis.sentinel_addresses needs redis.sentinel_master_name")
        sentinel = Sentinel([parse_address(a) for a in cfg.sentinel_addresses],
                            socket_timeout=SOCKET_TIMEOUT)
        client: Redis = sentinel.master_for(cfg.sentinel_master_name, **options)
        return client
    host, port = parse_address(cfg.address)
    return Redis(host=host, port=port, **options)

"""Limits and timers of the compose service, with defaults; each can be overridden from the
environment as `ROOST_COMPOSE_<FIELD>` (e.g. `ROOST_COMPOSE_JOIN_TIMEOUT=5`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

DEV_COMPOSE_API_KEY = "simli-dev-key"  # accepted as x-simli-api-key in --dev mode
ENV_PREFIX = "ROOST_COMPOSE_"


@dataclass(frozen=True)
class ComposeLimits:
    """Every bound a compose session enforces."""

    join_timeout: float = 30.0  # seconds for the client to join the room (Simli: 30 s)
    buffer_seconds: float = 60.0  # unplayed speech beyond this ends the session with RATE
    max_message_bytes: int = 1 << 20  # one WebSocket message (1 MiB ≈ 33 s of PCM16 16 kHz)
    ack_interval: float = 5.0  # seconds between ACK keep-alives
    token_ttl: float = 600.0  # seconds a session token stays redeemable
    max_sessions: int = 32  # concurrent sessions per server
    max_session_length: int = 24 * 3600  # upper bound for a request's maxSessionLength
    avatar_join_timeout: float = 15.0  # seconds for the avatar to join and publish
    done_grace: float = 0.4  # after DONE's last audio, time for it to reach listeners
    agent_max_streams: int = 8  # lk.audio_stream readers queued per agents-mode avatar

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ComposeLimits:
        """Defaults, overridden by `ROOST_COMPOSE_*` variables; a bad value raises ValueError."""
        env = os.environ if env is None else env
        changes: dict[str, float | int] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            value = int(raw) if f.type in (int, "int") else float(raw)
            if value <= 0:
                raise ValueError(f"{ENV_PREFIX}{f.name.upper()} must be positive, got {raw!r}")
            changes[f.name] = value
        return replace(cls(), **changes)  # type: ignore[arg-type]

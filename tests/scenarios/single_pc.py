"""Single peer connection (v1): more subscribed tracks than the client offered sections for."""

from __future__ import annotations

from typing import Any

from tests.scenarios.media_flow import publishers_reach_one_listener

TONES = {"p1": 440.0, "p2": 550.0, "p3": 660.0, "p4": 770.0}


async def four_publishers_reach_one_subscriber(srv: dict[str, str]) -> dict[str, Any]:
    """Four audio publishers; the subscriber gets all four tracks and hears each tone."""
    return await publishers_reach_one_listener(
        srv, "four", "sub", TONES, subscribe_timeout=20, heard_timeout=15)

"""Official Python SDK over the paths a firewall leaves: relay-only ICE via roost's TURN."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer, free_port

SCENARIOS = "tests.scenarios.network"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_relay_only_participants_hear_each_other_through_roosts_turn(
    start_server: Callable[..., RoostServer], tmp_path: Path, transport: str
) -> None:
    config = tmp_path / "livekit.yaml"
    config.write_text(
        f"rtc:\n  udp_port: {free_port()}\n"
        "turn:\n  enabled: true\n  relay_range_start: 0\n  relay_range_end: 0\n"
        f"  udp_port: {free_port() if transport == 'udp' else 0}\n"
        f"  tcp_port: {free_port() if transport == 'tcp' else 0}\n")
    server = start_server("--config", str(config))
    result = run_scenario(f"{SCENARIOS}:relay_only_tone_is_heard", server.info,
                          f"relay-{transport}", timeout=60)
    assert abs(result["pitch_hz"] - 440) < 15
    for who in ("alice", "bob"):
        paths = result[who]
        assert paths and all(kind == "relay" for kind, _ in paths), (who, paths)
        assert all(protocol == transport for _, protocol in paths), (who, paths)

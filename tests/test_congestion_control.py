"""Congestion control towards subscribers (rtc.congestion_control.enabled): the official SDK
subscriber negotiates transport-cc, roost stamps what it forwards and reads the feedback.

Two peer connections here: in single-PC mode the Python SDK's own offer carries no
transport-wide-cc extension for its receive sections, so roost cannot stamp (its REMB
still applies); roost's subscriber offer on /rtc does carry it."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

pytestmark = pytest.mark.timeout(120)


def twcc_feedback(server: RoostServer) -> dict[str, float]:
    """roost_twcc_feedback_total by result, from /metrics."""
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {s.labels["result"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "roost_twcc_feedback_total"}


@pytest.mark.parametrize("enabled", [True, False])
def test_the_sdk_subscriber_sends_twcc_feedback_only_when_enabled(
        start_server: Callable[..., RoostServer], tmp_path: Path, enabled: bool) -> None:
    config = tmp_path / "cc.yaml"
    config.write_text(f"rtc:\n  single_peer_connection: false\n  congestion_control:\n"
                      f"    enabled: {str(enabled).lower()}\n")
    server = start_server("--config", str(config))
    result = run_scenario("tests.scenarios.media:video_track_is_seen", server.info)
    assert result["frames"] >= 10  # the video still arrives, red and whole
    counts = twcc_feedback(server)
    if enabled:
        assert counts.get("used", 0) > 0, counts
        assert counts.get("unknown", 0) <= counts["used"] * 0.05, counts
    else:
        assert counts.get("used", 0) == 0, counts

"""Congestion control (rtc.congestion_control.enabled) with the official SDK: its subscriber
negotiates transport-cc, roost stamps what it forwards and reads the feedback; its publisher
negotiates transport-cc on video and roost sends it TWCC feedback.

Subscriber side on two peer connections, where roost's own subscriber offer carries the
extension. (In single-PC mode the SDK's recvonly sections carry none, but its send sections
do and the transport-wide sequence is bundle-wide: roost stamps on that id and the SDK's
feedback arrives, as tests/net/test_congestion.py shows.) The publisher side works on both:
the SDK's offer for what it sends carries the extension either way."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

pytestmark = pytest.mark.timeout(120)


def samples(server: RoostServer, name: str) -> dict[str, float]:
    """The samples of counter `name` from /metrics, by their labels' values."""
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {",".join(s.labels.values()): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


def twcc_feedback(server: RoostServer) -> dict[str, float]:
    """roost_twcc_feedback_total by result, from /metrics."""
    return samples(server, "roost_twcc_feedback_total")


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


@pytest.mark.parametrize(("enabled", "single_pc"),
                         [(True, True), (True, False), (False, True)])
def test_the_sdk_publisher_gets_twcc_feedback_only_when_enabled(
        start_server: Callable[..., RoostServer], tmp_path: Path, enabled: bool,
        single_pc: bool) -> None:
    config = tmp_path / "cc.yaml"
    config.write_text(f"rtc:\n  single_peer_connection: {str(single_pc).lower()}\n"
                      f"  congestion_control:\n    enabled: {str(enabled).lower()}\n")
    server = start_server("--config", str(config))
    result = run_scenario("tests.scenarios.media:video_track_is_seen", server.info)
    assert result["frames"] >= 10  # the video still arrives, red and whole
    sent = samples(server, "roost_twcc_feedback_sent_total").get("", 0)
    errors = samples(server, "roost_twcc_record_errors_total")
    if enabled:
        assert sent >= 3, sent  # 20 a second while the publisher sends
        assert errors.get("malformed", 0) == 0, errors
    else:
        assert sent == 0, sent


@pytest.mark.parametrize(("enabled", "cap"),
                         [(True, 10_000_000), (False, 10_000_000), (True, 400_000)])
def test_the_publisher_estimate_is_its_own_with_feedback_and_the_remb_caps_it(
        start_server: Callable[..., RoostServer], tmp_path: Path, enabled: bool,
        cap: int) -> None:
    """With TWCC feedback the SDK publisher's available outgoing bitrate is libwebrtc's
    own delay-based estimate (on loopback, ramping from its 300 kbit/s start), not the
    REMB; without it, it is the REMB itself. publisher_max_bitrate caps both."""
    config = tmp_path / "cc.yaml"
    config.write_text(f"rtc:\n  congestion_control:\n    enabled: {str(enabled).lower()}\n"
                      f"    publisher_max_bitrate: {cap}\n")
    server = start_server("--config", str(config))
    result = run_scenario("tests.scenarios.congestion:publisher_estimate", server.info,
                          timeout=60)
    settled = result["samples"][2:]
    available = [s["available_bps"] for s in settled]
    sent = sorted(s["sent_bps"] for s in settled)
    if cap < 10_000_000:
        assert max(available) <= cap * 1.05, available
        assert sent[len(sent) // 2] <= cap * 1.3, sent  # the encoder follows the estimate
    elif enabled:
        assert 150_000 < max(available) < cap / 2, available
    else:
        assert min(available) >= cap * 0.95, available

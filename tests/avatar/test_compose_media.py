"""The avatar seen and heard by an official-SDK client (scenarios in tests/avatar/scenarios.py,
run in a child process): the compose flow end to end, and the LiveKit-agents path.

Timing bounds are checked as the issue states them (SKIP silent within 200 ms); audio and video
arrive through a real SFU and the official SDK's jitter buffers on a 2-core machine that other
test runs may share, so the correlation bounds leave room for that.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.avatar.scenarios"
pytestmark = pytest.mark.timeout(150)


def _run(server: RoostServer, name: str) -> dict[str, Any]:
    result: dict[str, Any] = run_scenario(f"{SCENARIOS}:{name}", server.info, timeout=100)
    print(name, result)
    return result


def test_compose_end_to_end(server: RoostServer) -> None:
    """token → WebSocket → join info → SDK joins → speech → seen and heard → SKIP → DONE."""
    r = _run(server, "compose_end_to_end")
    assert r["first_message"].startswith('{"livekit_url"')
    assert r["avatar_kind"] == 4  # PARTICIPANT_KIND_AGENT
    assert r["video_size"] == [512, 512]
    # idle: the mouth stays shut; speaking: it opens, following the audio's energy
    assert r["idle_mouth_max"] < 0.02
    assert r["mouth_max"] > 0.05
    assert r["mouth_r"] > 0.6, r
    assert r["av_r"] > 0.5, r
    # the audio heard is the speech sent
    assert r["audio_r"] > 0.7, r
    assert r["speak_after_ms"] < 300
    # SKIP stops speech at once: SILENT, silence within 200 ms, mouth shut
    assert r["loud_before_skip"] > 1000
    assert r["silent_event_after_skip_ms"] < 200
    assert r["skip_silence_ms"] is not None and r["skip_silence_ms"] <= 200, r
    assert r["mouth_after_skip_max"] < 0.02
    # DONE: the queued tail is played, then STOP is the last text and the socket closes
    assert r["tail_heard_ms"] > 150
    assert r["after_done"][-1] == "STOP"
    assert r["after_done"][:2] == ["SPEAK", "SILENT"] or "SPEAK" in r["after_done"]
    assert r["done_to_close_ms"] < 3000
    assert r["events"][0] == "START"


def test_agents_path_streams_clear_buffer_and_playback_finished(server: RoostServer) -> None:
    """An agent drives the avatar with lk.audio_stream and lk.clear_buffer, as LiveKit agents do."""
    r = _run(server, "agents_path")
    assert r["start_status"] == 200 and r["start_body"]["agent_identity"] == "agent-1"
    assert r["avatar_attributes"]["lk.publish_on_behalf"] == "agent-1"
    # a whole segment: played, heard, reported with its length and not interrupted
    assert r["segment1"]["interrupted"] is False
    assert abs(r["segment1"]["playback_position"] - 1.0) < 0.05
    assert r["segment1_heard_ms"] > 300
    assert r["segment1_frames"] > 10
    # an interrupted segment: clear_buffer answers ok, playback_finished says where it stopped
    assert r["clear_answer"] == "ok"
    assert r["segment2"]["interrupted"] is True
    assert 0.3 < r["segment2"]["playback_position"] < r["segment2_started_ms"] / 1000 + 0.1
    assert r["segment2_after_clear_ms"] < 1000
    assert r["clear_silence_ms"] is not None and r["clear_silence_ms"] <= 300, r
    assert r["finished_count"] == 2

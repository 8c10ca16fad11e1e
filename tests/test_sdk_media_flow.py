"""With the official SDK: audio and video forwarded by roost arrive whole, on the right
tracks, to the right subscribers (scenarios in tests/scenarios/media_flow.py)."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.media_flow"


def test_a_tone_is_heard_at_its_pitch_for_its_whole_length(server: RoostServer) -> None:
    result = run_scenario(f"{SCENARIOS}:tone_is_heard_whole", server.info)
    assert abs(result["pitch_hz"] - 440) < 15
    assert result["heard_fraction"] >= 0.9


def test_two_publishers_reach_a_third_participant_on_the_right_tracks(
    server: RoostServer,
) -> None:
    result = run_scenario(f"{SCENARIOS}:two_publishers_reach_a_third", server.info)
    assert abs(result["alice"] - 440) < 15 and abs(result["bob"] - 660) < 15


def test_selective_subscription_delivers_only_what_was_asked_for(server: RoostServer) -> None:
    result = run_scenario(f"{SCENARIOS}:selective_subscription", server.info)
    assert abs(result["pitch_hz"] - 440) < 15 and abs(result["second_pitch_hz"] - 660) < 15


def test_revoked_permission_stops_the_media_and_a_grant_restores_it(
    server: RoostServer,
) -> None:
    result = run_scenario(f"{SCENARIOS}:permission_revoke_and_restore", server.info)
    assert result["subscriptions"] == 2


def test_six_participants_each_hear_the_other_five(server: RoostServer) -> None:
    result = run_scenario(f"{SCENARIOS}:six_way_call", server.info, timeout=90)
    assert result["pairs"] == 30


def test_an_h264_camera_is_seen(server: RoostServer) -> None:
    result = run_scenario(f"{SCENARIOS}:h264_camera_is_seen", server.info)
    assert result["mime"].lower() == "video/h264"

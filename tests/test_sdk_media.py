"""With the official SDK: a published microphone is heard and a camera is seen by others."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.media"


def test_published_microphone_is_heard_by_the_other_participant(server: RoostServer) -> None:
    result = run_scenario(f"{SCENARIOS}:audio_track_is_heard", server.info)
    assert abs(result["pitch_hz"] - 440) < 15


def test_published_camera_is_seen_by_the_other_participant(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:video_track_is_seen", server.info)

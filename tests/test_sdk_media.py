"""With the official SDK: a published microphone is heard and a camera is seen by others."""

import pytest
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.media"

# Temporary: as of 2026-11-21 18:30 the server answers AddTrack but publishes nothing to the
# room (no track_published at the subscriber, no server log line for the track).
MEDIA_NOT_WIRED = pytest.mark.xfail(
    strict=False, reason="media publication not yet forwarded to subscribers"
)


@MEDIA_NOT_WIRED
def test_published_microphone_is_heard_by_the_other_participant(server: RoostServer) -> None:
    result = run_scenario(f"{SCENARIOS}:audio_track_is_heard", server.info)
    assert abs(result["pitch_hz"] - 440) < 15


@MEDIA_NOT_WIRED
def test_published_camera_is_seen_by_the_other_participant(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:video_track_is_seen", server.info)

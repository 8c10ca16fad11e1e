"""Loss recovery with the official SDK's encoder behind roost: NACK → RTX, PLI → keyframe."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer


def test_nack_is_answered_over_rtx_and_pli_brings_a_keyframe(server: RoostServer) -> None:
    result = run_scenario("tests.scenarios.media_recovery:nack_and_pli_recovery", server.info)
    assert len(result["pli_to_keyframe_ms"]) == 2

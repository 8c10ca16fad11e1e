"""With the official SDK: who may join, and rooms that do not leak into each other."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.access"


def test_bad_tokens_are_refused_promptly(server: RoostServer) -> None:
    refusals = run_scenario(f"{SCENARIOS}:bad_tokens_are_refused", server.info)
    assert set(refusals) == {"wrong secret", "unknown key", "expired", "no room_join"}


def test_rooms_are_isolated_even_with_the_same_identities(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:rooms_are_isolated", server.info)

"""With the official SDK: who is in the room, as each participant sees it."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.presence"


def test_two_clients_join_and_see_each_other(server: RoostServer) -> None:
    sids = run_scenario(f"{SCENARIOS}:two_clients_see_each_other", server.info)
    assert sids["alice"] != sids["bob"]


def test_leaving_participant_is_reported_to_the_others(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:leaving_is_seen", server.info)


def test_second_join_with_same_identity_disconnects_the_first(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:duplicate_identity_replaces_first", server.info)


def test_hidden_participant_is_not_seen_but_receives_data(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:hidden_participant_is_invisible", server.info)

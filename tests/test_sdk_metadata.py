"""With the official SDK: participants change their own name, metadata and attributes."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.metadata"


def test_own_name_metadata_and_attributes_reach_everyone(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:own_changes_propagate", server.info)


def test_changing_own_metadata_needs_the_grant(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:changes_need_the_grant", server.info)


def test_late_joiner_sees_the_current_name_metadata_and_attributes(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:late_joiner_sees_current_state", server.info)

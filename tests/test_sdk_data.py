"""With the official SDK: data packets go to their destinations only, never back to the sender."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.data"


def test_reliable_packets_reach_destinations_only(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:reliable_packets_reach_destinations_only", server.info)


def test_lossy_packets_reach_destinations_only(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:lossy_packets_reach_destinations_only", server.info)


def test_reliable_burst_arrives_complete_and_in_order(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:reliable_burst_arrives_complete_and_in_order", server.info)


def test_participant_without_publish_data_grant_reaches_nobody(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:no_data_without_the_grant", server.info)

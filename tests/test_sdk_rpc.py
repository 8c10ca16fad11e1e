"""With the official SDK: one participant calls a method another registered."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.rpc"


def test_rpc_returns_the_handlers_answer(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:call_returns_the_handlers_answer", server.info)


def test_rpc_error_raised_by_the_handler_reaches_the_caller(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:handler_error_reaches_the_caller", server.info)


def test_rpc_to_an_unregistered_method_is_unsupported(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:unknown_method_is_unsupported", server.info)


def test_rpc_with_a_payload_beyond_15_kib_round_trips(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:large_payload_round_trips", server.info)

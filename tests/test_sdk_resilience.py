"""With the official SDK: connections drop and come back; the server stops."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.resilience"


def test_signal_resume_is_invisible_to_other_participants(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:signal_resume_is_invisible_to_others", server.info)


def test_full_reconnect_rejoins_the_room(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:full_reconnect_rejoins", server.info)


def test_server_shutdown_tells_clients_and_exits_cleanly(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:server_shutdown_disconnects_clients", server.info, server.pid)
    assert server.process is not None
    assert server.process.wait(15) == 0, "roost should exit 0 after a SIGTERM drain"

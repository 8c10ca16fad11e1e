"""With the official SDK: text and byte streams arrive complete and unchanged."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.streams"


def test_50_kb_text_stream_arrives_intact(server: RoostServer) -> None:
    result = run_scenario(f"{SCENARIOS}:text_stream_arrives_intact", server.info)
    assert result["chars"] == 50_000


def test_200_kb_byte_stream_arrives_intact(server: RoostServer) -> None:
    result = run_scenario(f"{SCENARIOS}:byte_stream_arrives_intact", server.info)
    assert result["bytes"] == 200_000

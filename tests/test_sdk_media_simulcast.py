"""With the official SDK: a simulcast camera; the subscriber's quality choice picks the layer."""

from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer


def test_subscriber_quality_switches_between_simulcast_layers(server: RoostServer) -> None:
    result = run_scenario("tests.scenarios.media_simulcast:quality_selects_the_layer",
                          server.info, timeout=90)
    assert result["high"] == [1280, 720]
    assert result["low"] == [320, 180]
    assert result["back"] == [1280, 720]

"""Official Python SDK over the paths a firewall leaves: relay-only ICE via roost's TURN."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.helpers.firewall import udp_port_dropped
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer, free_port

SCENARIOS = "tests.scenarios.network"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_relay_only_participants_hear_each_other_through_roosts_turn(
    start_server: Callable[..., RoostServer], tmp_path: Path, transport: str
) -> None:
    config = tmp_path / "livekit.yaml"
    config.write_text(
        f"rtc:\n  udp_port: {free_port()}\n"
        "turn:\n  enabled: true\n  relay_range_start: 0\n  relay_range_end: 0\n"
        f"  udp_port: {free_port() if transport == 'udp' else 0}\n"
        f"  tcp_port: {free_port() if transport == 'tcp' else 0}\n")
    server = start_server("--config", str(config))
    result = run_scenario(f"{SCENARIOS}:relay_only_tone_is_heard", server.info,
                          f"relay-{transport}", timeout=60)
    assert abs(result["pitch_hz"] - 440) < 15
    for who in ("alice", "bob"):
        paths = result[who]
        assert paths and all(kind == "relay" for kind, _ in paths), (who, paths)
        assert all(protocol == transport for _, protocol in paths), (who, paths)


def test_media_takes_ipv6_when_ipv4_udp_to_the_shared_port_is_dropped(
    start_server: Callable[..., RoostServer],
) -> None:
    """roost bound to 127.0.0.1 and ::1 on one UDP port; IPv4 UDP to it is dropped, so the
    SDKs' ICE picks the ::1 host candidate and the tone still arrives."""
    udp_port = free_port()
    server = start_server("--bind", "::1", "--udp-port", str(udp_port))
    with udp_port_dropped(udp_port):
        result = run_scenario(f"{SCENARIOS}:tone_is_heard", server.info, "ipv6", timeout=60)
    assert abs(result["pitch_hz"] - 440) < 15
    assert result["remote_addresses"] == ["::1"], result


def test_port_range_still_gives_each_peer_connection_its_own_port(
    start_server: Callable[..., RoostServer], tmp_path: Path
) -> None:
    """rtc.port_range_start/end without udp_port: the livekit.yaml form of old, still working."""
    low = free_port()
    config = tmp_path / "livekit.yaml"
    config.write_text(f"rtc:\n  port_range_start: {low}\n  port_range_end: {low + 40}\n")
    server = start_server("--config", str(config))
    result = run_scenario(f"{SCENARIOS}:tone_is_heard", server.info, "range", timeout=60)
    assert abs(result["pitch_hz"] - 440) < 15
    ports = {port for port in result["remote_ports"]}
    assert len(ports) >= 2 and all(low <= port <= low + 40 for port in ports), result


def test_a_turn_flood_does_not_disturb_a_relayed_call(
    start_server: Callable[..., RoostServer], tmp_path: Path
) -> None:
    """While a relay-only call runs through roost's TURN, someone floods the TURN port with
    unauthenticated and wrongly signed Allocates and junk: the call is heard all the same."""
    import os
    import socket
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from aioice import stun

    turn_port = free_port()
    config = tmp_path / "livekit.yaml"
    config.write_text(
        f"rtc:\n  udp_port: {free_port()}\n"
        f"turn:\n  enabled: true\n  udp_port: {turn_port}\n  relay_range_start: 0\n"
        "  relay_range_end: 0\n")
    server = start_server("--config", str(config))
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.is_set() and sent[0] < 200_000:
                request = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST)
                request.attributes["REQUESTED-TRANSPORT"] = 0x11000000
                if sent[0] % 3 == 1:
                    request.attributes["USERNAME"] = "9999999999:PA_forged"
                    request.attributes["REALM"] = "roost"
                    request.attributes["NONCE"] = b"made-up"
                    request.add_message_integrity(b"0" * 16)
                packet = bytes(request) if sent[0] % 3 != 2 else os.urandom(60)
                sock.sendto(packet, ("127.0.0.1", turn_port))
                sent[0] += 1

    with ThreadPoolExecutor(max_workers=1) as pool:
        flooding = pool.submit(flood)
        try:
            result = run_scenario(f"{SCENARIOS}:relay_only_tone_is_heard", server.info,
                                  "flooded", timeout=60)
        finally:
            stop.set()
            flooding.result(timeout=10)
    assert sent[0] > 1000, "the flood ran alongside the call"
    assert abs(result["pitch_hz"] - 440) < 15
    assert all(kind == "relay" for kind, _ in result["alice"] + result["bob"]), result

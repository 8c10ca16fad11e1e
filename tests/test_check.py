"""`roost check URL` against real servers: what a user running the self-test would see.

Plain dev server → HTTP, signalling and ICE/UDP pass, ICE/TCP and TURN skip with a reason;
ICE-TCP and the embedded TURN (UDP, TCP, TLS with a test CA) pass when configured; a wrong
secret or nothing listening fail with the reason and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from livekit import api
from tests.helpers.server import REPO_ROOT, RoostServer, free_port
from tests.helpers.wait import until_async
from tests.turn.helpers import free_udp_ports, make_certificates

from roost.check import CheckReport, run_checks
from roost.check_ice import IceCredentials, TurnUrl, udp_check
from roost.check_signal import ServerIce, SignalClient, http_base

TIMEOUT = 5.0
CLI_TIMEOUT = 60.0
ROOM = "roost-check"


def check_token(server: RoostServer, identity: str = "checker") -> str:
    return server.token(identity, ROOM, hidden=True)


def statuses(report: CheckReport) -> dict[str, list[str]]:
    """check name → the status of each of its rows, in order."""
    out: dict[str, list[str]] = {}
    for row in report.rows:
        out.setdefault(row.check, []).append(row.status)
    return out


def reasons(report: CheckReport, check: str) -> str:
    return " | ".join(row.reason for row in report.rows_of(check))


def roost_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roost", "check", *args], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT, cwd=REPO_ROOT, env=dict(os.environ),
                          check=False)


async def room_is_empty(server: RoostServer, timeout: float = TIMEOUT) -> None:
    """Poll RoomService until the check's room has no participant (or is gone)."""
    async with api.LiveKitAPI(server.http_url, server.api_key, server.api_secret) as lk:

        async def empty() -> bool:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PyJWT warns that the dev secret is short
                rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[ROOM]))
            return all(room.num_participants == 0 for room in rooms.rooms)

        await until_async(empty, timeout, "the check's participant to leave", interval=0.05)


async def test_dev_server_udp_passes_tcp_and_turn_skip(
        start_server: Callable[..., RoostServer]) -> None:
    server = start_server()
    report = await run_checks(server.url, check_token(server), timeout=TIMEOUT)

    assert statuses(report) == {"HTTP": ["PASS"], "signalling": ["PASS"], "ICE/UDP": ["PASS"],
                                "ICE/TCP": ["SKIP"], "TURN/UDP": ["SKIP"],
                                "TURN/TCP": ["SKIP"], "TURN/TLS": ["SKIP"]}
    assert report.exit_code == 0
    udp = report.rows_of("ICE/UDP")[0]
    assert udp.target.startswith("127.0.0.1:") and udp.target.endswith("host")
    assert udp.rtt_ms is not None and 0 <= udp.rtt_ms < TIMEOUT * 1000
    assert "rtc.tcp_port not set" in reasons(report, "ICE/TCP")
    assert reasons(report, "TURN/UDP") == "server offers no TURN"
    assert "'roost-check'" in reasons(report, "signalling")
    await room_is_empty(server)  # the check left (LeaveRequest), it did not linger


async def test_ice_tcp_and_embedded_turn_pass_when_configured(
        start_server: Callable[..., RoostServer], tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    turn_udp, = free_udp_ports(1)
    config = tmp_path / "livekit.yaml"
    config.write_text(
        "turn:\n  enabled: true\n  domain: 127.0.0.1\n"
        f"  udp_port: {turn_udp}\n  tcp_port: {free_port()}\n  tls_port: {free_port()}\n"
        f"  cert_file: {cert}\n  key_file: {key}\n"
        "  relay_range_start: 0\n  relay_range_end: 0\n")
    server = start_server("--tcp-port", str(free_port()), "--config", str(config))

    report = await run_checks(server.url, check_token(server), timeout=TIMEOUT,
                              ca_file=str(ca))
    assert {row.check: row.status for row in report.rows} == dict.fromkeys(
        ["HTTP", "signalling", "ICE/UDP", "ICE/TCP", "TURN/UDP", "TURN/TCP", "TURN/TLS"],
        "PASS"), report.table()
    assert report.rows_of("ICE/TCP")[0].target.endswith("tcp passive")
    assert report.rows_of("TURN/TLS")[0].target.startswith("turns:127.0.0.1:")
    assert "relay 127.0.0.1:" in reasons(report, "TURN/UDP")

    # Without the test CA the TLS relay is refused with a hint; the other paths still pass.
    untrusted = await run_checks(server.url, check_token(server, "checker2"), timeout=TIMEOUT)
    assert [r.status for r in untrusted.rows_of("TURN/TLS")] == ["FAIL"]
    assert "--ca-file" in reasons(untrusted, "TURN/TLS")
    assert untrusted.exit_code == 0
    insecure = await run_checks(server.url, check_token(server, "checker3"), timeout=TIMEOUT,
                                insecure=True)
    assert [r.status for r in insecure.rows_of("TURN/TLS")] == ["PASS"]


def test_cli_table_and_exit_status(start_server: Callable[..., RoostServer]) -> None:
    server = start_server()
    done = roost_check(server.url, "--room", "cli-check", "--timeout", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == ["CHECK", "TARGET", "RESULT", "RTT", "REASON"]
    assert [line.split()[0] for line in lines[2:-1]] == [
        "HTTP", "signalling", "ICE/UDP", "ICE/TCP", "TURN/UDP", "TURN/TCP", "TURN/TLS"]
    assert lines[-1] == "OK"


def test_cli_wrong_secret_fails_signalling_with_the_servers_reason(
        start_server: Callable[..., RoostServer]) -> None:
    server = start_server()
    done = roost_check(server.url, "--api-secret", "not-the-secret", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    rows = {row["check"]: row for row in report["rows"]}
    assert report["ok"] is False
    assert rows["HTTP"]["status"] == "PASS"
    assert rows["signalling"]["status"] == "FAIL"
    assert rows["signalling"]["reason"].startswith("HTTP 401 Unauthorized")
    assert "signature" in rows["signalling"]["reason"].lower()
    assert {rows[c]["status"] for c in ("ICE/UDP", "ICE/TCP", "TURN/UDP")} == {"SKIP"}


def test_cli_nothing_listening_fails_with_a_clear_reason() -> None:
    port = free_port()
    done = roost_check(f"ws://127.0.0.1:{port}", "--json", "--timeout", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    rows = {row["check"]: row for row in json.loads(done.stdout)["rows"]}
    for check in ("HTTP", "signalling"):
        assert rows[check]["status"] == "FAIL"
        assert rows[check]["reason"] == (
            f"connection refused by 127.0.0.1:{port} (nothing listening there?)")


@pytest.mark.parametrize("args", [
    ["ftp://127.0.0.1:7880"],
    ["ws://127.0.0.1:7880", "--token", "x", "--api-key", "devkey"],
    ["ws://127.0.0.1:7880", "--api-key", "unknown-key"],
    ["ws://127.0.0.1:7880", "--timeout", "0"],
    ["ws://127.0.0.1:7880", "--ca-file", "/nonexistent/ca.pem"],
])
def test_cli_usage_errors_exit_2(args: list[str]) -> None:
    done = roost_check(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("roost"), done.stderr


async def test_wrong_ice_password_is_refused_by_the_server(
        start_server: Callable[..., RoostServer]) -> None:
    server = start_server()
    client = SignalClient(http_base(server.url), check_token(server), None)
    try:
        await client.join(TIMEOUT)
        ice = await client.server_ice(TIMEOUT)
        candidate = ice.udp()[0]
        wrong = await udp_check(candidate, IceCredentials(ice.ufrag, "x" * 22), TIMEOUT)
        assert not wrong.passed and wrong.reason == "Binding refused: 401 Unauthenticated"
        right = await udp_check(candidate, IceCredentials(ice.ufrag, ice.pwd), TIMEOUT)
        assert right.passed, right.reason
    finally:
        await client.close(TIMEOUT)


def test_turn_urls_and_candidates_parse_as_servers_write_them() -> None:
    assert TurnUrl.parse("stun:stun.example.org:3478") is None
    udp = TurnUrl.parse("turn:turn.example.org", "u", "p")
    assert udp is not None and (udp.kind, udp.host, udp.port) == ("TURN/UDP", "turn.example.org",
                                                                  3478)
    tcp = TurnUrl.parse("turn:10.0.0.1:3479?transport=tcp")
    assert tcp is not None and (tcp.kind, tcp.port) == ("TURN/TCP", 3479)
    tls = TurnUrl.parse("turns:[::1]:443?transport=tcp")
    assert tls is not None and (tls.kind, tls.host, tls.port) == ("TURN/TLS", "::1", 443)
    with pytest.raises(ValueError, match="transport"):
        TurnUrl.parse("turn:h:1?transport=sctp")

    ice = ServerIce()
    ice.add_sdp("v=0\r\na=ice-lite\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
                "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
                "a=candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host\r\n"
                "a=candidate:2 1 tcp 1518280447 192.0.2.1 7881 typ host tcptype passive\r\n"
                "a=candidate:3 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n")
    assert (ice.ufrag, ice.pwd, ice.ice_lite, ice.complete) == (
        "abcd", "0123456789abcdefghijkl", True, False)
    assert [(c.host, c.port) for c in ice.udp()] == [("192.0.2.1", 50000)]
    assert [(c.host, c.port) for c in ice.tcp_passive()] == [("192.0.2.1", 7881)]

"""`roost check` run from a client namespace against roost in a server namespace: the verdict
a user would see for each network setup (client NAT, UDP blocked, no ICE-TCP, TURN only,
server behind 1:1 NAT with a right and a wrong `rtc.node_ip`).

The server namespace holds roost on 10.231.1.1; the client sits on 10.231.2.2 behind a
masquerading router (WAN 10.231.1.2); in the 1:1 NAT cases the client is 10.231.3.1 and an
edge router maps 10.231.3.10 to the server, then on 10.231.1.2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
from tests.helpers.netlab import Host, Lab, NetnsRoostServer
from tests.helpers.server import REPO_ROOT
from tests.net.topologies import client_behind_nat, server_behind_one_to_one_nat

StartRoost = Callable[..., NetnsRoostServer]
CHECK_TIMEOUT = 3  # seconds per step of `roost check`
TIMEOUT_REASONS = ("no Binding response within", "no Binding response (retransmissions")

pytestmark = pytest.mark.timeout(120)




def roost_check(client: Host, url: str) -> tuple[int, dict[str, Any]]:
    """`roost check URL --json` inside `client`: its exit status and parsed report."""
    done = client.run([sys.executable, "-m", "roost", "check", url, "--json",
                       "--timeout", str(CHECK_TIMEOUT)],
                      check=False, timeout=60, cwd=REPO_ROOT, env=dict(os.environ))
    assert done.returncode in (0, 1), f"exit {done.returncode}\n{done.stdout}{done.stderr}"
    report = json.loads(done.stdout)
    assert report["url"] == url
    assert report["ok"] is (done.returncode == 0), done.stdout
    return done.returncode, report


def statuses(report: dict[str, Any]) -> dict[str, list[str]]:
    """check name → the status of each of its rows, in order."""
    out: dict[str, list[str]] = {}
    for row in report["rows"]:
        out.setdefault(row["check"], []).append(row["status"])
    return out


def rows(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [row for row in report["rows"] if row["check"] == check]


def show(report: dict[str, Any]) -> str:
    return json.dumps(report["rows"], indent=1)


def test_client_behind_nat_every_offered_path_passes(lab: Lab,
                                                     start_roost_in: StartRoost) -> None:
    server_ns, nat, client = client_behind_nat(lab)
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882, "tcp_port": 7881}})

    code, report = roost_check(client, roost.url)

    assert statuses(report) == {
        "HTTP": ["PASS"], "signalling": ["PASS"], "ICE/UDP": ["PASS"], "ICE/TCP": ["PASS"],
        "TURN/UDP": ["SKIP"], "TURN/TCP": ["SKIP"], "TURN/TLS": ["SKIP"]}, show(report)
    assert code == 0
    assert rows(report, "ICE/UDP")[0]["target"] == "10.231.1.1:7882 host"
    assert rows(report, "ICE/TCP")[0]["target"] == "10.231.1.1:7881 tcp passive"
    # The server saw the router's WAN address: the probes really crossed the NAT.
    assert "server saw us as 10.231.1.2:" in rows(report, "ICE/UDP")[0]["reason"]
    for check in ("TURN/UDP", "TURN/TCP", "TURN/TLS"):
        assert rows(report, check)[0]["reason"] == "server offers no TURN"
    assert nat.masqueraded("udp") >= 1


def test_udp_blocked_ice_tcp_still_gives_a_media_path(lab: Lab,
                                                      start_roost_in: StartRoost) -> None:
    server_ns, nat, client = client_behind_nat(lab)
    client.block_udp()
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882, "tcp_port": 7881}})

    code, report = roost_check(client, roost.url)

    got = statuses(report)
    assert got["signalling"] == ["PASS"], show(report)
    assert got["ICE/UDP"] == ["FAIL"] and got["ICE/TCP"] == ["PASS"], show(report)
    # block_udp() drops in the client's own OUTPUT chain, so sendto() itself fails (EPERM)
    # rather than timing out as a firewall further away would make it.
    assert "firewall refused to send" in rows(report, "ICE/UDP")[0]["reason"], show(report)
    assert code == 0  # a media path works
    assert nat.masqueraded("udp") == 0


def test_udp_blocked_and_no_tcp_port_means_no_media_path(lab: Lab,
                                                         start_roost_in: StartRoost) -> None:
    server_ns, _, client = client_behind_nat(lab)
    client.block_udp()
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882}})

    code, report = roost_check(client, roost.url)

    got = statuses(report)
    assert got["HTTP"] == ["PASS"] and got["signalling"] == ["PASS"], show(report)
    assert got["ICE/UDP"] == ["FAIL"] and got["ICE/TCP"] == ["SKIP"], show(report)
    assert "rtc.tcp_port not set" in rows(report, "ICE/TCP")[0]["reason"]
    assert code == 1 and report["ok"] is False


def test_udp_blocked_turn_over_tcp_relays(lab: Lab, start_roost_in: StartRoost) -> None:
    server_ns, _, client = client_behind_nat(lab)
    client.block_udp()
    roost = start_roost_in(server_ns, config={
        "rtc": {"udp_port": 7882},
        "turn": {"enabled": True, "udp_port": 3478, "tcp_port": 3479,
                 "relay_range_start": 0, "relay_range_end": 0}})

    code, report = roost_check(client, roost.url)

    got = statuses(report)
    assert got["signalling"] == ["PASS"], show(report)
    assert got["ICE/UDP"] == ["FAIL"], show(report)
    assert got["TURN/UDP"] == ["FAIL"] and got["TURN/TCP"] == ["PASS"], show(report)
    assert "cannot allocate a relay" in rows(report, "TURN/UDP")[0]["reason"], show(report)
    turn_tcp = rows(report, "TURN/TCP")[0]
    assert turn_tcp["target"].endswith(":3479?transport=tcp"), show(report)
    assert "10.231.1.1:7882: Binding success" in turn_tcp["reason"], show(report)
    assert code == 0


def test_server_behind_one_to_one_nat_with_the_right_node_ip(
        lab: Lab, start_roost_in: StartRoost) -> None:
    public = "10.231.3.10"
    client, server_ns = server_behind_one_to_one_nat(lab, public)
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882, "node_ip": public}},
                           public_host=public)

    code, report = roost_check(client, roost.url)

    udp = {row["target"]: row for row in rows(report, "ICE/UDP")}
    assert udp[f"{public}:7882 host"]["status"] == "PASS", show(report)
    assert "server saw us as 10.231.3.1:" in udp[f"{public}:7882 host"]["reason"]
    # The private bind address is announced too; from outside there is no route to it.
    assert [row["status"] for target, row in udp.items()
            if target != f"{public}:7882 host"] == ["FAIL"], show(report)
    assert code == 0


def test_server_behind_one_to_one_nat_with_a_wrong_node_ip(
        lab: Lab, start_roost_in: StartRoost) -> None:
    public, wrong = "10.231.3.10", "10.231.3.20"  # .20 is nobody's address
    client, server_ns = server_behind_one_to_one_nat(lab, public)
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882, "node_ip": wrong}},
                           public_host=public)

    code, report = roost_check(client, roost.url)

    got = statuses(report)
    assert got["HTTP"] == ["PASS"] and got["signalling"] == ["PASS"], show(report)
    udp = {row["target"]: row for row in rows(report, "ICE/UDP")}
    # roost announces its bind address and node_ip; the client has no route to the first,
    # and the second, the one the user configured, silently eats the Binding request.
    assert sorted(udp) == [f"{server_ns.address}:7882 host", f"{wrong}:7882 host"], show(report)
    assert {row["status"] for row in udp.values()} == {"FAIL"}, show(report)
    assert udp[f"{wrong}:7882 host"]["reason"].startswith(TIMEOUT_REASONS), show(report)
    assert "unreachable" in udp[f"{server_ns.address}:7882 host"]["reason"], show(report)
    assert code == 1 and report["ok"] is False

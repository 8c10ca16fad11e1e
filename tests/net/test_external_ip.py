"""A server behind 1:1 NAT that does not know its public address: rtc.use_external_ip asks a
STUN server on the public side (another roost's TURN port, which answers Binding requests)
and announces what it hears."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.helpers.netlab import Lab, NetnsRoostServer, start_scenario_in
from tests.net.topologies import server_behind_one_to_one_nat

CALL = "tests.net.scenarios:everyone_hears_everyone"
StartRoost = Callable[..., NetnsRoostServer]


@pytest.mark.timeout(240)
def test_use_external_ip_discovers_the_public_address_through_stun(
    lab: Lab, start_roost_in: StartRoost, tmp_path: Path
) -> None:
    public = "10.231.3.10"
    client, server_ns = server_behind_one_to_one_nat(lab, public)
    # A STUN server out on the public network: roost's TURN port answers Binding requests.
    stun = start_roost_in(client, config={"turn": {
        "enabled": True, "udp_port": 3478, "relay_range_start": 0, "relay_range_end": 0}})
    roost = start_roost_in(server_ns, config={"rtc": {
        "udp_port": 7882, "use_external_ip": True,
        "stun_servers": [f"{client.address}:3478"]}}, public_host=public)
    assert stun.pid != roost.pid

    assert f"says this node is {public}" in roost.log_tail(200)
    result = start_scenario_in(client, CALL, roost.info, 2, "extip", timeout=90,
                               log_dir=tmp_path).wait()
    assert result["pairs"] == 2  # media reached the public address roost discovered


@pytest.mark.timeout(120)
def test_use_external_ip_without_an_answer_falls_back_and_says_so(
    lab: Lab, start_roost_in: StartRoost
) -> None:
    server_ns = lab.host("server")
    lab.link(server_ns, lab.host("peer"), "10.231.4.0/24")
    roost = start_roost_in(server_ns, config={"rtc": {
        "udp_port": 7882, "use_external_ip": True, "stun_servers": ["10.231.4.2:3478"]}})
    log = roost.log_tail(200)
    assert "no STUN server answered" in log, log

"""With the official SDK across a real (namespaced) network: clients behind NAT, UDP blocked,
a server behind 1:1 NAT, one shared UDP port.

The server namespace holds roost on 10.231.1.1; the SDK participants run in a client
namespace on 10.231.2.2 behind a masquerading router whose WAN address is 10.231.1.2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.helpers.netlab import (
    HOLD_MARKER,
    Lab,
    NetnsRoostServer,
    start_scenario_in,
    wait_for,
)
from tests.net.topologies import client_behind_nat, server_behind_one_to_one_nat

CALL = "tests.net.scenarios:everyone_hears_everyone"
StartRoost = Callable[..., NetnsRoostServer]



@pytest.mark.timeout(240)
def test_two_participants_behind_nat_hear_each_other(
    lab: Lab, start_roost_in: StartRoost, tmp_path: Path
) -> None:
    server_ns, nat, client = client_behind_nat(lab)
    roost = start_roost_in(server_ns)  # default settings: ephemeral UDP ports
    assert roost.url == "ws://10.231.1.1:7880"

    call = start_scenario_in(client, CALL, roost.info, 2, timeout=90, log_dir=tmp_path)
    result = call.wait()

    assert result["pairs"] == 2
    assert result["min_heard_s"] >= 1.5
    # Signalling and media both went through the NAT, not around it.
    assert nat.masqueraded("tcp") >= 2 and nat.masqueraded("udp") >= 1


@pytest.mark.timeout(240)
def test_eight_participants_share_one_udp_port(
    lab: Lab, start_roost_in: StartRoost, tmp_path: Path
) -> None:
    server_ns, _, client = client_behind_nat(lab)
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882}})

    call = start_scenario_in(client, CALL, roost.info, 8, "eight", True, timeout=150,
                             log_dir=tmp_path)
    call.wait_for_output(HOLD_MARKER, timeout=150)  # everyone has heard everyone; call is up
    sockets = server_ns.udp_sockets(pid=roost.pid)
    call.send_line()
    result = call.wait()

    assert result["pairs"] == 8 * 7
    described = "\n".join(s["line"] for s in sockets)
    assert [s["port"] for s in sockets] == [7882], (
        f"roost should hold exactly one UDP socket, on 7882; it holds:\n{described}")


@pytest.mark.timeout(240)
def test_audio_flows_over_ice_tcp_when_the_client_cannot_use_udp(
    lab: Lab, start_roost_in: StartRoost, tmp_path: Path
) -> None:
    server_ns, nat, client = client_behind_nat(lab)
    client.block_udp()
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882, "tcp_port": 7881}})

    call = start_scenario_in(client, CALL, roost.info, 2, "tcp", True, timeout=120,
                             log_dir=tmp_path)
    call.wait_for_output(HOLD_MARKER, timeout=120)  # both heard each other; call is up
    ice_tcp = server_ns.tcp_connections(7881, pid=roost.pid)
    call.send_line()
    result = call.wait()

    assert result["pairs"] == 2
    assert nat.masqueraded("udp") == 0, "no UDP should have left the client"
    assert ice_tcp, "the media should have flowed over ICE-TCP connections to port 7881"


@pytest.mark.timeout(240)
def test_server_behind_one_to_one_nat_announces_its_node_ip(
    lab: Lab, start_roost_in: StartRoost, tmp_path: Path
) -> None:
    public = "10.231.3.10"
    client, server_ns = server_behind_one_to_one_nat(lab, public)
    # The client can reach only the public address; roost must announce it in its candidates.
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882, "node_ip": public}},
                           public_host=public)

    assert client.run(["ip", "route", "get", server_ns.address], check=False).returncode != 0

    result = start_scenario_in(client, CALL, roost.info, 2, "nat11", timeout=90,
                               log_dir=tmp_path).wait()

    assert result["pairs"] == 2  # media reached 10.231.3.10, the only address it could


@pytest.mark.timeout(240)
def test_call_survives_nat_rebinding(
    lab: Lab, start_roost_in: StartRoost, tmp_path: Path
) -> None:
    server_ns, nat, client = client_behind_nat(lab)
    roost = start_roost_in(server_ns, config={"rtc": {"udp_port": 7882}})
    call = start_scenario_in(client, CALL, roost.info, 2, "rebind", True, 2, timeout=150,
                             log_dir=tmp_path)
    call.wait_for_output(HOLD_MARKER, timeout=60)  # they hear each other from 10.231.1.2

    new_address = nat.rebind()  # every flow now leaves from 10.231.1.3, on new ports
    assert new_address == "10.231.1.3"

    def signalling_from_new_address() -> list[str]:
        return [line for line in server_ns.tcp_connections(7880, pid=roost.pid)
                if f" {new_address}:" in line]

    # The old WebSocket is reset at the SDK's next ping; it reconnects from the new address.
    wait_for(signalling_from_new_address, 40, "the SDK to reconnect from the new address")
    call.send_line()
    call.wait_for_output(HOLD_MARKER, timeout=90, count=2)  # ...and they hear each other again
    call.send_line()
    result = call.wait()

    assert result["round"] == 2 and result["pairs"] == 2

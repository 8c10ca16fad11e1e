"""Addresses and ICE servers: what roost binds, what it announces, what clients are told."""

from __future__ import annotations

from pathlib import Path

from livekit.protocol import rtc
from tests.helpers.server import RoostServer
from tests.helpers.wait import until_async
from tests.rawclient import RawClient

from roost.config import Settings
from roost.edge.network import IceServerList, local_addresses, media_plan
from roost.media.icemux import IceMux


def test_node_ip_that_is_not_ours_is_announced_not_bound() -> None:
    settings = Settings(bind_addresses=["127.0.0.1"])
    settings.rtc.node_ip = "203.0.113.7"  # 1:1 NAT: a public address this host does not have
    plan = media_plan(settings)
    assert plan.bind == ["127.0.0.1"] and plan.announce == ["203.0.113.7"]


def test_node_ip_that_is_ours_is_bound_first() -> None:
    settings = Settings(bind_addresses=["127.0.0.1"])
    settings.rtc.node_ip = "127.0.0.1"
    assert media_plan(settings).bind == ["127.0.0.1"]
    assert media_plan(settings).announce == []


def test_wildcard_bind_gives_every_interface_address() -> None:
    plan = media_plan(Settings(bind_addresses=["0.0.0.0"]))
    assert "127.0.0.1" in plan.bind
    assert set(plan.bind) <= local_addresses()


def test_ice_servers_from_config_and_the_embedded_turn() -> None:
    settings = Settings(bind_addresses=["127.0.0.1"])
    settings.rtc.stun_servers = ["stun.example.test:3478"]
    settings.rtc.turn_servers = [
        {"host": "turn.example.test", "port": 443, "protocol": "tls",
         "username": "u", "credential": "c"},
        {"host": "turn.example.test", "port": 3478, "protocol": "udp",
         "username": "u", "credential": "c"},
    ]
    settings.turn.enabled = True
    settings.turn.domain = "turn.roost.test"
    settings.turn.tcp_port = 3479
    settings.turn.tls_port = 5349
    settings.turn.external_tls = True

    class Issuer:
        def issue(self, user: str) -> tuple[str, str]:
            return f"9999999999:{user}", "pw-" + user

    mux = IceMux(addresses=["127.0.0.1"], advertised=["198.51.100.4"])
    servers = IceServerList(settings, mux, Issuer()).for_participant("PA_x")
    own = servers[0]
    assert list(own.urls) == ["turn:turn.roost.test:3478?transport=udp",
                              "turn:turn.roost.test:3479?transport=tcp",
                              "turns:turn.roost.test:443?transport=tcp"]
    assert own.username == "9999999999:PA_x" and own.credential == "pw-PA_x"
    assert [list(s.urls) for s in servers[1:]] == [
        ["stun:stun.example.test:3478"],
        ["turns:turn.example.test:443?transport=tcp"],
        ["turn:turn.example.test:3478?transport=udp"],
    ]


def test_without_a_domain_turn_urls_name_the_announced_address() -> None:
    settings = Settings(bind_addresses=["127.0.0.1"])
    settings.turn.enabled = True

    class Issuer:
        def issue(self, user: str) -> tuple[str, str]:
            return "u", "p"

    mux = IceMux(addresses=["127.0.0.1"], advertised=["198.51.100.4"])
    (own,) = IceServerList(settings, mux, Issuer()).for_participant("PA_y")
    assert list(own.urls) == ["turn:198.51.100.4:3478?transport=udp"]


async def test_join_response_carries_the_configured_ice_servers(
    start_server: object, tmp_path: Path
) -> None:
    config = tmp_path / "livekit.yaml"
    config.write_text(
        "rtc:\n  stun_servers: ['stun.example.test:19302']\n"
        "  turn_servers:\n    - {host: turn.example.test, port: 3478, protocol: udp,"
        " username: alice, credential: s3cret}\n")
    server: RoostServer = start_server("--config", str(config))  # type: ignore[operator]
    client = await RawClient.connect(server.url, server.token("ice", "ice-room"))
    try:
        join = await client.join()
        urls = [list(s.urls) for s in join.ice_servers]
        assert urls == [["stun:stun.example.test:19302"],
                        ["turn:turn.example.test:3478?transport=udp"]]
        turn = join.ice_servers[1]
        assert (turn.username, turn.credential) == ("alice", "s3cret")
        assert isinstance(join, rtc.JoinResponse)
    finally:
        await client.close()


async def test_shared_port_drops_are_counted_in_metrics(
    start_server: object, tmp_path: Path
) -> None:
    import asyncio
    import socket
    import urllib.request

    from tests.helpers.server import free_port

    udp_port = free_port()
    server: RoostServer = start_server("--udp-port", str(udp_port))  # type: ignore[operator]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3):
            sock.sendto(b"\x80" + bytes(40), ("127.0.0.1", udp_port))  # SRTP from nobody

    def scrape() -> str:
        with urllib.request.urlopen(server.http_url + "/metrics", timeout=5) as response:
            return str(response.read().decode())

    line = 'roost_ice_dropped_total{reason="unknown_address"} 3.0'

    async def counted() -> bool:  # the server's loop reads the datagrams a moment later
        return line in await asyncio.to_thread(scrape)

    await until_async(counted, 5.0, line, interval=0.1)

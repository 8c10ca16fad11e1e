"""Routing pieces without Redis: bus envelopes, addresses, relayed join parameters, config."""

from __future__ import annotations

import pytest
from livekit.protocol import models

from roost.config import ConfigError, Settings, from_env
from roost.room.participant import ClientParams
from roost.routing import LocalLoad, LocalRouter, make_router
from roost.routing.bus import pack, unpack
from roost.routing.client import parse_address
from roost.routing.types import NodeInfo
from roost.signal.relay import params_from_dict, params_to_dict


def test_bus_envelope_round_trips_and_refuses_truncation() -> None:
    data = pack("q", "ND_abc", "r1", b"\x00payload")
    assert unpack(data) == ("q", "ND_abc", "r1", b"\x00payload")
    assert unpack(pack("c", "ND_x", "", b"")) == ("c", "ND_x", "", b"")
    for cut in (0, 1, 2, 5, 8):
        with pytest.raises(ValueError):
            unpack(data[:cut])


def test_redis_addresses() -> None:
    assert parse_address("127.0.0.1:6380") == ("127.0.0.1", 6380)
    assert parse_address("redis.internal") == ("redis.internal", 6379)
    assert parse_address("redis://10.0.0.2:7000/") == ("10.0.0.2", 7000)
    assert parse_address("[::1]:6390") == ("::1", 6390)
    with pytest.raises(ConfigError):
        parse_address("host:port")


def test_client_params_survive_the_relay() -> None:
    info = models.ClientInfo(sdk=models.ClientInfo.SDK.JS, version="2.5.0", protocol=16)
    params = ClientParams(protocol=16, auto_subscribe=False, sdk="js", capabilities=[1],
                          reconnect=True, reconnect_sid="PA_x", client_info=info)
    back = params_from_dict(params_to_dict(params))
    assert back == params


def test_node_info_json_ignores_unknown_fields() -> None:
    node = NodeInfo(id="ND_a", url="http://127.0.0.1:7880", rooms=2, participants=5)
    assert NodeInfo.from_json(node.to_json()) == node
    assert NodeInfo.from_json('{"id": "ND_b", "url": "", "future": 1}').id == "ND_b"
    assert node.load == 7


def test_redis_settings_from_env_and_router_choice() -> None:
    settings = Settings()
    from_env(settings, {"REDIS_HOST": "127.0.0.1:6399", "REDIS_PASSWORD": "pw"})
    assert (settings.redis.address, settings.redis.password) == ("127.0.0.1:6399", "pw")
    local = make_router(Settings().redis, "ND_one", "http://x", LocalLoad)
    assert isinstance(local, LocalRouter) and local.bus is None


async def test_local_router_places_everything_here() -> None:
    router = LocalRouter("ND_one", "http://127.0.0.1:7880",
                         lambda: LocalLoad(rooms=["a"], participants=3))
    assert (await router.place("anything")).id == "ND_one"
    assert (await router.owner("a")) is not None and (await router.owner("b")) is None
    (node,) = await router.nodes()
    assert (node.rooms, node.participants) == (1, 3)
    await router.set_draining()
    assert (await router.nodes())[0].state == "draining"

"""roost.client ↔ official SDK in one roost room: data packets and RPC, both directions."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from tests.client.helpers import Recorder, joined, wait_until, with_official
from tests.helpers.server import RoostServer

from roost import client as rc

pytestmark = pytest.mark.timeout(120)


async def test_data_packets_both_ways_with_destinations(server: RoostServer,
                                                        tmp_path: Path) -> None:
    async with with_official(server, "interop-data", tmp_path) as (room, peer), \
            joined(server, "carol", "interop-data") as carol:
        got = Recorder(room, "data_received")
        carol_got = Recorder(carol, "data_received")
        await wait_until(lambda: "carol" in room.remote_participants, what="carol")

        # roost → official only (carol must not see it); reliable and lossy
        await room.local_participant.publish_data(
            b"for official", reliable=True, topic="private", destination_identities=["official"])
        for i in range(5):
            await room.local_participant.publish_data(
                f"lossy {i}".encode(), reliable=False, destination_identities=["official"])
        await room.local_participant.publish_data(b"to all", topic="news")
        await carol_got.wait("data_received", lambda p: p.data == b"to all")
        report = await peer.call("received")
        seen = [(base64.b64decode(d["payload"]), d["topic"], d["reliable"], d["sender"])
                for d in report["data"]]
        assert (b"for official", "private", True, "roost") in seen
        assert any(p.startswith(b"lossy") and not rel for p, _, rel, _ in seen), seen
        assert (b"to all", "news", True, "roost") in seen
        assert [p.data for (p,) in carol_got.all("data_received")] == [b"to all"]

        # official → roost only, reliable then lossy
        for reliable in (True, False):
            payload = base64.b64encode(f"from official {reliable}".encode()).decode()
            await peer.call("publish_data", payload=payload, reliable=reliable, topic="t",
                            destinations=["roost"])
        for reliable in (True, False):
            (packet,) = await got.wait(
                "data_received", lambda p, r=reliable: p.data == f"from official {r}".encode())
            assert packet.topic == "t"
            assert packet.participant is not None and packet.participant.identity == "official"
            expected = rc.DataPacketKind.KIND_RELIABLE if reliable else rc.DataPacketKind.KIND_LOSSY
            assert packet.kind == expected
        await asyncio.sleep(0.3)  # a wait for nothing: carol must get none of it
        assert not any(p.data.startswith(b"from official") for (p,) in carol_got.all(
            "data_received"))


@pytest.mark.parametrize("client_protocol", [1, 0], ids=["rpc-v2", "rpc-v1"])
async def test_rpc_both_ways(server: RoostServer, tmp_path: Path, client_protocol: int) -> None:
    options = rc.RoomOptions(client_protocol=client_protocol)
    async with with_official(server, "interop-rpc", tmp_path, options) as (room, peer):
        local = room.local_participant
        # roost calls official
        assert await local.perform_rpc(destination_identity="official", method="upper",
                                       payload="stressed") == "STRESSED"
        with pytest.raises(rc.RpcError) as err:
            await local.perform_rpc(destination_identity="official", method="fail",
                                    payload="A-17")
        assert (err.value.code, err.value.message) == (4042, "no such order")
        assert json.loads(err.value.data or "") == {"order": "A-17"}
        with pytest.raises(rc.RpcError) as err:
            await local.perform_rpc(destination_identity="official", method="nope", payload="")
        assert err.value.code == rc.RpcError.ErrorCode.UNSUPPORTED_METHOD
        with pytest.raises(rc.RpcError) as err:
            await local.perform_rpc(destination_identity="official", method="slow",
                                    payload="", response_timeout=2)
        assert err.value.code == rc.RpcError.ErrorCode.RESPONSE_TIMEOUT
        big = "abcdefghij" * 4_000
        if client_protocol == 0:
            with pytest.raises(rc.RpcError) as err:
                await local.perform_rpc(destination_identity="official", method="echo",
                                        payload=big)
            assert err.value.code == rc.RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE
        else:
            assert await local.perform_rpc(destination_identity="official", method="echo",
                                           payload=big) == big

        # official calls roost
        calls: list[rc.RpcInvocationData] = []

        async def reverse(data: rc.RpcInvocationData) -> str:
            calls.append(data)
            return data.payload[::-1]

        async def refuse(data: rc.RpcInvocationData) -> str:
            raise rc.RpcError(4001, "refused", data=data.payload)

        async def dawdle(data: rc.RpcInvocationData) -> str:
            await asyncio.sleep(10)
            return "late"

        local.register_rpc_method("reverse", reverse)
        local.register_rpc_method("refuse", refuse)
        local.register_rpc_method("dawdle", dawdle)
        local.register_rpc_method("big", lambda data: "x" * 20_000)
        assert await peer.call("rpc", method="reverse", payload="stressed") == {
            "answer": "desserts"}
        assert calls[0].caller_identity == "official" and calls[0].method == "reverse"
        result = await peer.call("rpc", method="refuse", payload="why")
        assert (result["error"], result["message"], result["data"]) == (4001, "refused", "why")
        result = await peer.call("rpc", method="missing", payload="")
        assert result["error"] == rc.RpcError.ErrorCode.UNSUPPORTED_METHOD
        result = await peer.call("rpc", method="dawdle", payload="", response_timeout=2)
        assert result["error"] == rc.RpcError.ErrorCode.RESPONSE_TIMEOUT
        result = await peer.call("rpc", method="big", payload="")
        if client_protocol == 0:
            assert result["error"] == rc.RpcError.ErrorCode.RESPONSE_PAYLOAD_TOO_LARGE
        else:
            assert result == {"answer": "x" * 20_000}

"""RPC between participants: results, application errors and unknown methods."""

from __future__ import annotations

import asyncio
import json

from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms, wait_until

ROOM = "rpc"


async def _pair(rooms: Rooms) -> tuple[rtc.Room, rtc.Room]:
    """Alice (caller) and Bob (callee), each aware of the other."""
    alice = rooms.new()
    alice_events = EventLog(alice, "participant_connected", label="alice")
    await rooms.join("alice", ROOM, room=alice)
    bob = await rooms.join("bob", ROOM)
    if "bob" not in alice.remote_participants:
        await alice_events.wait("participant_connected", lambda p: p.identity == "bob")
    return alice, bob


async def call_returns_the_handlers_answer(srv: dict[str, str]) -> None:
    rooms = Rooms(srv)
    try:
        alice, bob = await _pair(rooms)
        calls: list[rtc.RpcInvocationData] = []

        async def reverse(data: rtc.RpcInvocationData) -> str:
            calls.append(data)
            return json.dumps({"reversed": data.payload[::-1]})

        bob.local_participant.register_rpc_method("reverse", reverse)
        answer = await asyncio.wait_for(
            alice.local_participant.perform_rpc(
                destination_identity="bob", method="reverse", payload="stressed"
            ),
            20,
        )
        assert json.loads(answer) == {"reversed": "desserts"}
        assert len(calls) == 1
        assert calls[0].caller_identity == "alice"
        assert calls[0].method == "reverse"
        assert calls[0].payload == "stressed"
    finally:
        await rooms.close()


async def large_payload_round_trips(srv: dict[str, str]) -> None:
    """A 40 KB request and answer (beyond the 15 KiB v1 limit: needs RPC v2 over streams)."""
    rooms = Rooms(srv)
    try:
        alice, bob = await _pair(rooms)
        bob.local_participant.register_rpc_method("upper", lambda data: data.payload.upper())
        payload = "abcdefghij" * 4_000
        answer = await asyncio.wait_for(
            alice.local_participant.perform_rpc(
                destination_identity="bob", method="upper", payload=payload
            ),
            20,
        )
        assert answer == payload.upper()
    finally:
        await rooms.close()


async def handler_error_reaches_the_caller(srv: dict[str, str]) -> None:
    rooms = Rooms(srv)
    try:
        alice, bob = await _pair(rooms)

        async def refuse(data: rtc.RpcInvocationData) -> str:
            raise rtc.RpcError(4042, "no such order", data=json.dumps({"order": data.payload}))

        bob.local_participant.register_rpc_method("cancel-order", refuse)
        try:
            await asyncio.wait_for(
                alice.local_participant.perform_rpc(
                    destination_identity="bob", method="cancel-order", payload="A-17"
                ),
                20,
            )
        except rtc.RpcError as exc:
            assert exc.code == 4042, (exc.code, exc.message)
            assert exc.message == "no such order"
            assert exc.data is not None and json.loads(exc.data) == {"order": "A-17"}
        else:
            raise AssertionError("perform_rpc should have raised the handler's RpcError")
    finally:
        await rooms.close()


async def unknown_method_is_unsupported(srv: dict[str, str]) -> None:
    rooms = Rooms(srv)
    try:
        alice, bob = await _pair(rooms)
        await wait_until(lambda: "alice" in bob.remote_participants, what="bob to see alice")
        try:
            await asyncio.wait_for(
                alice.local_participant.perform_rpc(
                    destination_identity="bob", method="no-such-method", payload=""
                ),
                20,
            )
        except rtc.RpcError as exc:
            assert exc.code == rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD, (exc.code, exc.message)
        else:
            raise AssertionError("perform_rpc of an unregistered method should fail")
    finally:
        await rooms.close()

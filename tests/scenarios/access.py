"""Who may join: tokens signed with the wrong secret, expired or without room_join are refused."""

from __future__ import annotations

import time
from typing import Any

from livekit import rtc
from tests.helpers.sdk import Rooms, ServerInfo, wait_until
from tests.helpers.server import make_token

ROOM = "access"
REFUSAL_DEADLINE = 8.0


async def _refused(rooms: Rooms, token: str) -> dict[str, Any]:
    room = rooms.new()
    started = time.monotonic()
    try:
        await room.connect(rooms.server.url, token)
    except rtc.ConnectError as exc:
        elapsed = time.monotonic() - started
        assert elapsed < REFUSAL_DEADLINE, f"refusal took {elapsed:.1f} s"
        return {"error": str(exc), "seconds": round(elapsed, 3)}
    raise AssertionError("connect with a bad token should have failed")


async def bad_tokens_are_refused(srv: dict[str, str]) -> dict[str, Any]:
    rooms = Rooms(srv)
    server: ServerInfo = rooms.server
    try:
        results = {
            "wrong secret": await _refused(
                rooms, make_token(server.api_key, "not-the-secret", "eve", ROOM)
            ),
            "unknown key": await _refused(
                rooms, make_token("nokey", server.api_secret, "eve", ROOM)
            ),
            "expired": await _refused(
                rooms, make_token(server.api_key, server.api_secret, "eve", ROOM, ttl_seconds=-120)
            ),
            "no room_join": await _refused(
                rooms,
                make_token(server.api_key, server.api_secret, "eve", ROOM, room_join=False),
            ),
        }
        # The room never saw Eve: a legitimate participant is alone.
        alice = await rooms.join("alice", ROOM)
        assert dict(alice.remote_participants) == {}
        return results
    finally:
        await rooms.close()


async def rooms_are_isolated(srv: dict[str, str]) -> None:
    """The same identities in two rooms: no presence, data or duplicate-identity crosstalk."""
    rooms = Rooms(srv)
    try:
        events: dict[str, list[tuple[str, bytes]]] = {}
        joined: dict[str, rtc.Room] = {}
        for room_name in ("red", "blue"):
            for identity in ("alice", "bob"):
                room = rooms.new()
                key = f"{room_name}/{identity}"
                events[key] = []
                room.on(
                    "data_received",
                    lambda p, key=key: events[key].append(
                        (p.participant.identity if p.participant else "", p.data)
                    ),
                )
                joined[key] = await rooms.join(identity, room_name, room=room)

        for key, room in joined.items():
            assert room.isconnected(), f"{key} was disconnected (duplicate identity across rooms?)"
            assert set(room.remote_participants) <= {"alice", "bob"}
            assert room.name == key.split("/")[0]

        await joined["red/alice"].local_participant.publish_data(b"red secret")
        await joined["blue/alice"].local_participant.publish_data(b"blue news")
        await wait_until(lambda: events["red/bob"] and events["blue/bob"], what="both bobs")
        # Barrier in each room: bob answers alice; by then any leaked packet has arrived.
        for room_name in ("red", "blue"):
            await joined[f"{room_name}/bob"].local_participant.publish_data(b"ack")
        await wait_until(
            lambda: (
                (b"ack" in [d for _, d in events["red/alice"]])
                and (b"ack" in [d for _, d in events["blue/alice"]])
            ),
            what="acks",
        )
        assert events["red/bob"] == [("alice", b"red secret")]
        assert events["blue/bob"] == [("alice", b"blue news")]
        assert events["red/alice"] == [("bob", b"ack")]
        assert events["blue/alice"] == [("bob", b"ack")]
        assert joined["red/bob"].remote_participants["alice"].sid == (
            joined["red/alice"].local_participant.sid
        )
    finally:
        await rooms.close()

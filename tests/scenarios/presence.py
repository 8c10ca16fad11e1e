"""Who is in the room: joining, leaving, duplicate identities and hidden participants."""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms, wait_until

ROOM = "presence"


async def two_clients_see_each_other(srv: dict[str, str]) -> dict[str, Any]:
    """Alice joins, then Bob: each sees the other with the sid, identity and name of his token."""
    rooms = Rooms(srv)
    try:
        alice = rooms.new()
        alice_events = EventLog(alice, "participant_connected", label="alice")
        await rooms.join("alice", ROOM, room=alice, name="Alice")

        me = alice.local_participant
        assert me.identity == "alice"
        assert me.name == "Alice"
        assert me.sid.startswith("PA_"), me.sid
        assert alice.name == ROOM
        assert dict(alice.remote_participants) == {}, "alice is alone in a new room"

        bob = await rooms.join(
            "bob",
            ROOM,
            name="Bob",
            metadata="bob's metadata",
            attributes={"role": "tester"},
        )
        # Bob learns about Alice from the join itself.
        assert set(bob.remote_participants) == {"alice"}
        seen_alice = bob.remote_participants["alice"]
        assert seen_alice.sid == me.sid
        assert seen_alice.name == "Alice"

        # Alice is told that Bob arrived, with what his token says about him.
        (seen_bob,) = await alice_events.wait(
            "participant_connected", lambda p: p.identity == "bob"
        )
        assert seen_bob.sid == bob.local_participant.sid
        assert seen_bob.sid.startswith("PA_"), seen_bob.sid
        assert seen_bob.sid != me.sid
        assert seen_bob.name == "Bob"
        assert seen_bob.metadata == "bob's metadata"
        assert seen_bob.attributes == {"role": "tester"}
        assert set(alice.remote_participants) == {"bob"}
        assert alice.remote_participants["bob"] is seen_bob

        room_sid_a = await asyncio.wait_for(alice.sid, 5)
        room_sid_b = await asyncio.wait_for(bob.sid, 5)
        assert room_sid_a == room_sid_b, (room_sid_a, room_sid_b)
        assert room_sid_a.startswith("RM_"), room_sid_a
        return {"alice": me.sid, "bob": seen_bob.sid, "room": room_sid_a}
    finally:
        await rooms.close()


async def leaving_is_seen(srv: dict[str, str]) -> None:
    """When Bob disconnects, Alice gets participant_disconnected and Bob leaves her list."""
    rooms = Rooms(srv)
    try:
        alice = rooms.new()
        alice_events = EventLog(
            alice, "participant_connected", "participant_disconnected", label="alice"
        )
        await rooms.join("alice", ROOM, room=alice)
        bob = await rooms.join("bob", ROOM)
        await alice_events.wait("participant_connected", lambda p: p.identity == "bob")
        bob_sid = bob.local_participant.sid

        await asyncio.wait_for(bob.disconnect(), 10)

        # The SDK sends its leave and then closes the socket and the connection; now and then
        # the leave is lost with the socket (seen under load), and roost then removes Bob
        # once his failed connection has been gone 5 s (CONNECTION_TIMEOUT, as livekit does).
        (gone,) = await alice_events.wait(
            "participant_disconnected", lambda p: p.identity == "bob", timeout=15.0)
        assert gone.sid == bob_sid
        assert "bob" not in alice.remote_participants
        assert gone.disconnect_reason in (
            rtc.DisconnectReason.CLIENT_INITIATED, rtc.DisconnectReason.CONNECTION_TIMEOUT
        ), f"disconnect_reason {gone.disconnect_reason}"
    finally:
        await rooms.close()


async def duplicate_identity_replaces_first(srv: dict[str, str]) -> None:
    """A second join as 'alice' disconnects the first session with DUPLICATE_IDENTITY."""
    rooms = Rooms(srv)
    try:
        observer = await rooms.join("observer", ROOM)
        first = rooms.new()
        first_events = EventLog(first, "disconnected", label="alice#1")
        await rooms.join("alice", ROOM, room=first)
        first_sid = first.local_participant.sid
        await wait_until(
            lambda: "alice" in observer.remote_participants, what="observer to see alice"
        )

        second = await rooms.join("alice", ROOM)
        second_sid = second.local_participant.sid
        assert second_sid != first_sid

        (reason,) = await first_events.wait("disconnected")
        assert reason == rtc.DisconnectReason.DUPLICATE_IDENTITY, (
            f"first session disconnected with reason {reason}"
        )
        assert second.isconnected()
        # Everyone else now sees the new session under the same identity.
        await wait_until(
            lambda: (
                (p := observer.remote_participants.get("alice")) is not None and p.sid == second_sid
            ),
            what="observer to see alice's new sid",
        )
        assert set(second.remote_participants) == {"observer"}
    finally:
        await rooms.close()


async def hidden_participant_is_invisible(srv: dict[str, str]) -> None:
    """A hidden participant is never announced to others, yet receives the room's data."""
    rooms = Rooms(srv)
    try:
        alice = rooms.new()
        alice_events = EventLog(alice, "participant_connected", label="alice")
        await rooms.join("alice", ROOM, room=alice)

        ghost = rooms.new()
        ghost_events = EventLog(ghost, "data_received", label="ghost")
        await rooms.join("ghost", ROOM, room=ghost, hidden=True)
        # The hidden participant does see the others.
        assert set(ghost.remote_participants) == {"alice"}

        # Carol joins after the ghost; once Alice has seen Carol, she would have seen the ghost.
        await rooms.join("carol", ROOM)
        await alice_events.wait("participant_connected", lambda p: p.identity == "carol")
        assert "ghost" not in alice.remote_participants
        assert [p.identity for (p,) in alice_events.all("participant_connected")] == ["carol"]

        await alice.local_participant.publish_data(b"to everyone", topic="news")
        (packet,) = await ghost_events.wait("data_received")
        assert packet.data == b"to everyone"
        assert packet.topic == "news"
        assert packet.participant is not None and packet.participant.identity == "alice"

        await alice.local_participant.publish_data(
            b"just for the ghost", destination_identities=["ghost"]
        )
        await ghost_events.wait("data_received", lambda p: p.data == b"just for the ghost")
    finally:
        await rooms.close()

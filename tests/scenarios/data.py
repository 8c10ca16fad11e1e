"""Data packets: delivered to the named destinations only, never echoed, sender stamped."""

from __future__ import annotations

import time

from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms

ROOM = "data"


async def _join_three(rooms: Rooms) -> dict[str, tuple[rtc.Room, EventLog]]:
    joined: dict[str, tuple[rtc.Room, EventLog]] = {}
    for identity in ("alice", "bob", "carol"):
        room = rooms.new()
        events = EventLog(room, "data_received", "participant_connected", label=identity)
        await rooms.join(identity, ROOM, room=room)
        joined[identity] = (room, events)
    # Everyone knows everyone, so every packet can be attributed to a participant.
    for identity, (room, events) in joined.items():
        for other in joined:
            if other != identity and other not in room.remote_participants:
                await events.wait("participant_connected", lambda p, o=other: p.identity == o)
    return joined


async def reliable_packets_reach_destinations_only(srv: dict[str, str]) -> None:
    rooms = Rooms(srv)
    try:
        joined = await _join_three(rooms)
        alice, alice_events = joined["alice"]
        _, bob_events = joined["bob"]
        carol, carol_events = joined["carol"]

        await alice.local_participant.publish_data(
            b"for bob only", reliable=True, topic="private", destination_identities=["bob"]
        )
        (packet,) = await bob_events.wait("data_received", lambda p: p.data == b"for bob only")
        assert packet.topic == "private"
        assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE, packet.kind
        assert packet.participant is not None
        assert packet.participant.identity == "alice"
        assert packet.participant.sid == alice.local_participant.sid

        await alice.local_participant.publish_data(b"hello all", reliable=True, topic="news")
        for events in (bob_events, carol_events):
            (packet,) = await events.wait("data_received", lambda p: p.data == b"hello all")
            assert packet.topic == "news"
            assert packet.participant is not None and packet.participant.identity == "alice"

        # Alice's packets travel in order, so Carol got "hello all" after anything earlier.
        assert [p.data for (p,) in carol_events.all("data_received")] == [b"hello all"]

        # Barrier for the sender: Carol answers after seeing Alice's broadcast; an echo of
        # Alice's own packets would have been queued to Alice before Carol's answer.
        await carol.local_participant.publish_data(b"ack", destination_identities=["alice"])
        (packet,) = await alice_events.wait("data_received", lambda p: p.data == b"ack")
        assert packet.participant is not None and packet.participant.identity == "carol"
        assert [p.data for (p,) in alice_events.all("data_received")] == [b"ack"], (
            "the sender must never receive its own packets"
        )
        # Bob was not addressed by Carol.
        assert b"ack" not in [p.data for (p,) in bob_events.all("data_received")]
    finally:
        await rooms.close()


async def lossy_packets_reach_destinations_only(srv: dict[str, str]) -> None:
    rooms = Rooms(srv)
    try:
        joined = await _join_three(rooms)
        alice, alice_events = joined["alice"]
        _, bob_events = joined["bob"]
        carol, carol_events = joined["carol"]

        # Lossy means unacknowledged: resend until it arrives (loopback rarely drops).
        deadline = time.monotonic() + 10
        while not bob_events.all("data_received"):
            assert time.monotonic() < deadline, "no lossy packet reached bob in 10 s"
            await alice.local_participant.publish_data(
                b"lossy for bob", reliable=False, topic="cursor", destination_identities=["bob"]
            )
            try:
                await bob_events.wait("data_received", timeout=0.5)
            except TimeoutError:
                pass
        (packet,) = bob_events.all("data_received")[0]
        assert packet.data == b"lossy for bob"
        assert packet.topic == "cursor"
        assert packet.kind == rtc.DataPacketKind.KIND_LOSSY, packet.kind
        assert packet.participant is not None and packet.participant.identity == "alice"

        await alice.local_participant.publish_data(b"lossy for all", reliable=False)
        await carol_events.wait("data_received", lambda p: p.data == b"lossy for all")
        assert b"lossy for bob" not in [p.data for (p,) in carol_events.all("data_received")]
        # Barrier: an echo would have left the server before Carol's answer to the broadcast.
        await carol.local_participant.publish_data(b"ack", destination_identities=["alice"])
        await alice_events.wait("data_received", lambda p: p.data == b"ack")
        assert [p.data for (p,) in alice_events.all("data_received")] == [b"ack"], (
            "the sender must never receive its own packets"
        )
    finally:
        await rooms.close()


async def reliable_burst_arrives_complete_and_in_order(srv: dict[str, str]) -> dict[str, float]:
    """500 reliable packets sent back to back arrive once each, in order."""
    rooms = Rooms(srv)
    try:
        joined = await _join_three(rooms)
        alice, _ = joined["alice"]
        _, bob_events = joined["bob"]
        count = 500
        started = time.monotonic()
        for i in range(count):
            await alice.local_participant.publish_data(
                f"{i:05d}".encode() + b"." * 1000, topic="burst", destination_identities=["bob"]
            )
        await bob_events.wait("data_received", lambda p: p.data.startswith(b"%05d" % (count - 1)))
        elapsed = time.monotonic() - started
        got = [int(p.data[:5]) for (p,) in bob_events.all("data_received") if p.topic == "burst"]
        assert got == list(range(count)), f"{len(got)} packets, first wrong at " + str(
            next((i for i, v in enumerate(got) if v != i), None)
        )
        return {"packets_per_second": round(count / elapsed)}
    finally:
        await rooms.close()


async def no_data_without_the_grant(srv: dict[str, str]) -> None:
    """A participant whose token says can_publish_data=False cannot reach anyone with data."""
    rooms = Rooms(srv)
    try:
        alice = rooms.new()
        alice_events = EventLog(alice, "data_received", "participant_connected", label="alice")
        await rooms.join("alice", ROOM, room=alice)
        muted = await rooms.join("muted", ROOM, can_publish_data=False)
        await alice_events.wait("participant_connected", lambda p: p.identity == "muted")
        for reliable in (True, False):
            try:
                await muted.local_participant.publish_data(b"let me talk", reliable=reliable)
            except rtc.PublishDataError:
                pass  # refusing locally is fine too
        await muted.local_participant.publish_data(b"to alice", destination_identities=["alice"])

        # Barrier: Alice asks, the other participant answers; the refused packets were sent
        # earlier on the same channels, so they would have arrived by then.
        bob = rooms.new()
        bob_events = EventLog(bob, "data_received", label="bob")
        await rooms.join("bob", ROOM, room=bob)
        await bob.local_participant.publish_data(b"ack", destination_identities=["alice"])
        await alice_events.wait("data_received", lambda p: p.data == b"ack")
        from_muted = [
            p.data
            for (p,) in alice_events.all("data_received")
            if p.participant is not None and p.participant.identity == "muted"
        ]
        assert from_muted == [], f"packets from a participant without the grant: {from_muted}"
        assert bob_events.all("data_received") == []
    finally:
        await rooms.close()

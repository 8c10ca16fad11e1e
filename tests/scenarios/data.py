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

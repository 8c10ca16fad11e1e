"""Participants change their own name, metadata and attributes; everyone, self included, sees it."""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.rtc._ffi_client import FfiClient
from livekit.rtc._proto import ffi_pb2 as proto_ffi
from tests.helpers.sdk import EventLog, Rooms

ROOM = "metadata"
EVENTS = (
    "participant_name_changed",
    "participant_metadata_changed",
    "participant_attributes_changed",
)


async def own_changes_propagate(srv: dict[str, str]) -> None:
    """With can_update_own_metadata, Alice's set_name/set_metadata/set_attributes reach Bob."""
    rooms = Rooms(srv)
    try:
        alice = rooms.new()
        alice_events = EventLog(alice, *EVENTS, label="alice")
        await rooms.join("alice", ROOM, room=alice, name="Alice", can_update_own_metadata=True)
        bob = rooms.new()
        bob_events = EventLog(bob, *EVENTS, label="bob")
        await rooms.join("bob", ROOM, room=bob)
        me = alice.local_participant

        await asyncio.wait_for(me.set_name("Alice Liddell"), 10)
        (who, old, new) = await bob_events.wait("participant_name_changed")
        assert (who.identity, old, new) == ("alice", "Alice", "Alice Liddell")
        assert bob.remote_participants["alice"].name == "Alice Liddell"
        (who, old, new) = await alice_events.wait("participant_name_changed")
        assert (who.identity, new) == ("alice", "Alice Liddell")
        assert me.name == "Alice Liddell"

        await asyncio.wait_for(me.set_metadata('{"seat": 7}'), 10)
        (who, old, new) = await bob_events.wait("participant_metadata_changed")
        assert (who.identity, old, new) == ("alice", "", '{"seat": 7}')
        (who, _, new) = await alice_events.wait("participant_metadata_changed")
        assert (who.identity, new) == ("alice", '{"seat": 7}')
        assert me.metadata == '{"seat": 7}'

        await asyncio.wait_for(me.set_attributes({"mood": "curious", "size": "small"}), 10)
        (changed, who) = await bob_events.wait("participant_attributes_changed")
        assert who.identity == "alice"
        assert changed == {"mood": "curious", "size": "small"}
        assert bob.remote_participants["alice"].attributes == {"mood": "curious", "size": "small"}
        (changed, who) = await alice_events.wait("participant_attributes_changed")
        assert who.identity == "alice" and changed == {"mood": "curious", "size": "small"}
        assert me.attributes == {"mood": "curious", "size": "small"}

        # Attributes merge; an empty value deletes the key.
        await asyncio.wait_for(me.set_attributes({"size": "", "hat": "none"}), 10)
        (changed, _) = await bob_events.wait(
            "participant_attributes_changed", lambda changed, who: "hat" in changed
        )
        assert changed == {"size": "", "hat": "none"}, changed
        assert bob.remote_participants["alice"].attributes == {"mood": "curious", "hat": "none"}
    finally:
        await rooms.close()


async def _set_name_raw(participant: rtc.LocalParticipant, name: str) -> str:
    """set_name through the FFI, returning the error the SDK's Python wrapper drops."""
    req = proto_ffi.FfiRequest()
    req.set_local_name.local_participant_handle = participant._ffi_handle.handle
    req.set_local_name.name = name
    queue = FfiClient.instance.queue.subscribe()
    try:
        resp = FfiClient.instance.request(req)
        event = await queue.wait_for(
            lambda e: e.set_local_name.async_id == resp.set_local_name.async_id
        )
    finally:
        FfiClient.instance.queue.unsubscribe(queue)
    return event.set_local_name.error


async def changes_need_the_grant(srv: dict[str, str]) -> dict[str, str]:
    """Without can_update_own_metadata, set_name fails and nobody sees a new name."""
    rooms = Rooms(srv)
    try:
        mallory = rooms.new()
        mallory_events = EventLog(mallory, *EVENTS, label="mallory")
        await rooms.join("mallory", ROOM, room=mallory, name="Mallory")
        bob = rooms.new()
        bob_events = EventLog(bob, *EVENTS, "data_received", label="bob")
        await rooms.join("bob", ROOM, room=bob)

        error = await asyncio.wait_for(_set_name_raw(mallory.local_participant, "Admin"), 10)
        assert error, "set_name without can_update_own_metadata should fail"
        await asyncio.wait_for(mallory.local_participant.set_metadata("sneaky"), 10)
        await asyncio.wait_for(mallory.local_participant.set_attributes({"role": "admin"}), 10)

        # Barrier: Mallory's next data packet reaches Bob after any update she caused.
        await mallory.local_participant.publish_data(b"barrier")
        await bob_events.wait("data_received", lambda p: p.data == b"barrier")
        assert bob_events.count("participant_name_changed") == 0
        assert bob_events.count("participant_metadata_changed") == 0
        assert bob_events.count("participant_attributes_changed") == 0
        seen = bob.remote_participants["mallory"]
        assert (seen.name, seen.metadata, seen.attributes) == ("Mallory", "", {})
        assert mallory_events.events == [], mallory_events.events
        assert mallory.local_participant.name == "Mallory"
        return {"error": error}
    finally:
        await rooms.close()


async def late_joiner_sees_current_state(srv: dict[str, str]) -> None:
    """Changes made before Carol joined are what Carol sees when she arrives."""
    rooms = Rooms(srv)
    try:
        alice = rooms.new()
        alice_events = EventLog(alice, *EVENTS, label="alice")
        await rooms.join("alice", ROOM, room=alice, name="Alice", can_update_own_metadata=True)
        me = alice.local_participant
        await asyncio.wait_for(me.set_name("Queen Alice"), 10)
        await asyncio.wait_for(me.set_metadata("crowned"), 10)
        await asyncio.wait_for(me.set_attributes({"realm": "wonderland"}), 10)
        await alice_events.wait("participant_attributes_changed")

        carol = await rooms.join("carol", ROOM)
        seen = carol.remote_participants["alice"]
        assert (seen.name, seen.metadata, seen.attributes) == (
            "Queen Alice",
            "crowned",
            {"realm": "wonderland"},
        )
    finally:
        await rooms.close()

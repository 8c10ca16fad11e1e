"""Official-SDK clients on different nodes of one cluster: one room, data and audio between them.

Each scenario takes the connection info of two nodes (`RoostServer.info`); Alice connects to
the first, Bob to the second, and the room lives on whichever node the cluster placed it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms
from tests.helpers.wait import until
from tests.scenarios.media import SAMPLE_RATE, TONE_HZ, _background, _tone, heard_pitch

ROOM = "cluster"


async def _pair(node_a: dict[str, str], node_b: dict[str, str], room_name: str,
                ) -> tuple[Rooms, Rooms, rtc.Room, EventLog, rtc.Room, EventLog]:
    """Alice through node A, Bob through node B, each seeing the other."""
    rooms_a, rooms_b = Rooms(node_a), Rooms(node_b)
    alice, bob = rooms_a.new(), rooms_b.new()
    events = ("data_received", "participant_connected", "track_subscribed", "reconnected",
              "reconnecting", "disconnected")
    alice_events = EventLog(alice, *events, label="alice")
    bob_events = EventLog(bob, *events, label="bob")
    await rooms_a.join("alice", room_name, room=alice)
    await rooms_b.join("bob", room_name, room=bob)
    if "bob" not in alice.remote_participants:
        await alice_events.wait("participant_connected", lambda p: p.identity == "bob")
    assert "alice" in bob.remote_participants, list(bob.remote_participants)
    return rooms_a, rooms_b, alice, alice_events, bob, bob_events


async def _exchange(alice: rtc.Room, alice_events: EventLog, bob: rtc.Room,
                    bob_events: EventLog, tag: str, timeout: float = 10.0) -> None:
    """A reliable packet each way; the sender is stamped by the server."""
    await alice.local_participant.publish_data(f"to bob {tag}".encode(), reliable=True,
                                               topic="cluster")
    (packet,) = await bob_events.wait("data_received",
                                      lambda p: p.data == f"to bob {tag}".encode(), timeout)
    assert packet.participant is not None and packet.participant.identity == "alice"
    await bob.local_participant.publish_data(f"to alice {tag}".encode(), reliable=True)
    (packet,) = await alice_events.wait("data_received",
                                        lambda p: p.data == f"to alice {tag}".encode(), timeout)
    assert packet.participant is not None and packet.participant.identity == "bob"


async def data_across_nodes(node_a: dict[str, str], node_b: dict[str, str]) -> dict[str, Any]:
    """Alice and Bob, on different nodes, share a room and exchange reliable data."""
    rooms_a, rooms_b, alice, alice_events, bob, bob_events = await _pair(node_a, node_b, ROOM)
    try:
        await _exchange(alice, alice_events, bob, bob_events, "1")
        return {"alice_sid": alice.local_participant.sid, "bob_sid": bob.local_participant.sid}
    finally:
        await rooms_b.close()
        await rooms_a.close()


async def audio_across_nodes(node_a: dict[str, str], node_b: dict[str, str]) -> dict[str, Any]:
    """Alice (node A) publishes a 440 Hz microphone; Bob (node B) hears 440 Hz."""
    rooms_a, rooms_b, alice, _, _, bob_events = await _pair(node_a, node_b, "cluster-audio")
    try:
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await asyncio.wait_for(alice.local_participant.publish_track(track, options), 15)
        async with _background(_tone(source)):
            remote, _, publisher = await bob_events.wait("track_subscribed", timeout=15)
            assert publisher.identity == "alice"
            pitch = await heard_pitch(remote)
        assert abs(pitch - TONE_HZ) < 15, f"heard {pitch:.0f} Hz instead of {TONE_HZ:.0f} Hz"
        return {"pitch_hz": round(pitch, 1)}
    finally:
        await rooms_b.close()
        await rooms_a.close()


def _touch(path: str) -> None:
    Path(path).write_text("ready")


def _exists(path: str) -> bool:
    return Path(path).exists()


async def data_survives_redis_restart(node_a: dict[str, str], node_b: dict[str, str],
                                      ready_file: str, restarted_file: str) -> dict[str, Any]:
    """Data flows, Redis restarts under the cluster (the parent does it), data flows again."""
    rooms_a, rooms_b, alice, alice_events, bob, bob_events = await _pair(
        node_a, node_b, "cluster-restart")
    try:
        await _exchange(alice, alice_events, bob, bob_events, "before")
        _touch(ready_file)
        await until(lambda: _exists(restarted_file), 30, f"{restarted_file} to appear",
                    interval=0.05)
        # Clients whose signalling was relayed lose it with Redis and resume; media and data
        # go straight to the room's node, so they may never notice. Either way, within
        # bounded time both must be connected and exchanging data again.
        started = time.monotonic()
        deadline = started + 30
        tag = 0
        while True:
            tag += 1
            try:
                await _exchange(alice, alice_events, bob, bob_events, f"after-{tag}", 3)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        states = {"alice": alice.connection_state, "bob": bob.connection_state}
        assert all(s == rtc.ConnectionState.CONN_CONNECTED for s in states.values()), states
        return {"recovered_s": round(time.monotonic() - started, 2),
                "alice_reconnects": alice_events.count("reconnected"),
                "bob_reconnects": bob_events.count("reconnected")}
    finally:
        await rooms_b.close()
        await rooms_a.close()

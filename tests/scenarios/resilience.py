"""Connections break and come back: signal resume, full reconnect, server shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from livekit import rtc
from livekit.rtc._proto.room_pb2 import SimulateScenarioKind
from tests.helpers.sdk import EventLog, Rooms

ROOM = "resilience"
LINK_EVENTS = (
    "participant_connected",
    "participant_disconnected",
    "data_received",
    "reconnecting",
    "reconnected",
    "disconnected",
)


async def _pair(rooms: Rooms) -> tuple[rtc.Room, EventLog, rtc.Room, EventLog]:
    alice = rooms.new()
    alice_events = EventLog(alice, *LINK_EVENTS, label="alice")
    await rooms.join("alice", ROOM, room=alice)
    bob = rooms.new()
    bob_events = EventLog(bob, *LINK_EVENTS, label="bob")
    await rooms.join("bob", ROOM, room=bob)
    await alice_events.wait("participant_connected", lambda p: p.identity == "bob")
    return alice, alice_events, bob, bob_events


async def _exchange(a: rtc.Room, a_events: EventLog, b: rtc.Room, b_events: EventLog, tag: str):
    await a.local_participant.publish_data(f"{tag} a->b".encode())
    await b_events.wait("data_received", lambda p: p.data == f"{tag} a->b".encode())
    await b.local_participant.publish_data(f"{tag} b->a".encode())
    await a_events.wait("data_received", lambda p: p.data == f"{tag} b->a".encode())


async def signal_resume_is_invisible_to_others(srv: dict[str, str]) -> dict[str, float]:
    """Bob's signalling connection drops and resumes; Alice never sees him leave."""
    rooms = Rooms(srv)
    try:
        alice, alice_events, bob, bob_events = await _pair(rooms)
        bob_sid = bob.local_participant.sid
        await _exchange(alice, alice_events, bob, bob_events, "before")

        started = time.monotonic()
        await asyncio.wait_for(
            bob.simulate_scenario(SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT), 10
        )
        await bob_events.wait("reconnected", timeout=20)
        resumed_in = time.monotonic() - started
        assert bob.isconnected()
        assert bob.local_participant.sid == bob_sid, "a resume keeps the session"
        await _exchange(alice, alice_events, bob, bob_events, "after")
        assert alice_events.count("participant_disconnected") == 0
        assert alice.remote_participants["bob"].sid == bob_sid
        assert bob_events.count("disconnected") == 0
        return {"resume_seconds": round(resumed_in, 3)}
    finally:
        await rooms.close()


async def full_reconnect_rejoins(srv: dict[str, str]) -> dict[str, Any]:
    """Bob's client rebuilds its session from scratch; afterwards both can talk again."""
    rooms = Rooms(srv)
    try:
        alice, alice_events, bob, bob_events = await _pair(rooms)
        await _exchange(alice, alice_events, bob, bob_events, "before")
        old_sid = bob.local_participant.sid

        started = time.monotonic()
        await asyncio.wait_for(
            bob.simulate_scenario(SimulateScenarioKind.SIMULATE_FULL_RECONNECT), 10
        )
        await bob_events.wait("reconnected", timeout=30)
        rejoined_in = time.monotonic() - started
        assert bob.isconnected()
        await _exchange(alice, alice_events, bob, bob_events, "after")
        seen = alice.remote_participants.get("bob")
        assert seen is not None and seen.sid == bob.local_participant.sid
        assert set(alice.remote_participants) == {"bob"}
        assert set(bob.remote_participants) == {"alice"}
        assert bob_events.count("disconnected") == 0
        return {
            "rejoin_seconds": round(rejoined_in, 3),
            "sid_changed": old_sid != bob.local_participant.sid,
        }
    finally:
        await rooms.close()


async def server_shutdown_disconnects_clients(srv: dict[str, str], pid: int) -> dict[str, Any]:
    """SIGTERM to the server: every client is told (disconnected event) within a few seconds."""
    rooms = Rooms(srv)
    try:
        _, alice_events, _, bob_events = await _pair(rooms)
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        (a_reason,) = await alice_events.wait("disconnected", timeout=15)
        (b_reason,) = await bob_events.wait("disconnected", timeout=15)
        elapsed = time.monotonic() - started
        assert a_reason == rtc.DisconnectReason.SERVER_SHUTDOWN, f"alice: reason {a_reason}"
        assert b_reason == rtc.DisconnectReason.SERVER_SHUTDOWN, f"bob: reason {b_reason}"
        # The SDK must not have tried to resume against a server that said goodbye.
        assert alice_events.count("reconnecting") == 0
        return {"seconds": round(elapsed, 3)}
    finally:
        await rooms.close()

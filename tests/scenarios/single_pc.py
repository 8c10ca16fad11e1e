"""Single peer connection (v1): more subscribed tracks than the client offered sections for."""

from __future__ import annotations

from typing import Any

from tests.helpers.sdk import EventLog, Rooms
from tests.scenarios.media_flow import EVENTS, Ear, Tone, _check, _wait_heard

TONES = {"p1": 440.0, "p2": 550.0, "p3": 660.0, "p4": 770.0}


async def four_publishers_reach_one_subscriber(srv: dict[str, str]) -> dict[str, Any]:
    """Four audio publishers; the subscriber gets all four tracks and hears each tone."""
    rooms = Rooms(srv)
    tones = {who: Tone(hz) for who, hz in TONES.items()}
    ears: dict[str, Ear] = {}
    try:
        sub = rooms.new()
        events = EventLog(sub, *EVENTS, label="sub")
        await rooms.join("sub", "four", room=sub)
        for identity, tone in tones.items():
            await tone.publish(await rooms.join(identity, "four"))
        for identity in tones:
            track, _, _ = await events.wait(
                "track_subscribed", lambda t, p, who, i=identity: who.identity == i, timeout=20)
            ears[identity] = Ear(track, f"sub<-{identity}")
        for tone in tones.values():
            tone.burst(2.0)
        await _wait_heard(list(ears.values()), 1.5, timeout=15)
        for identity, ear in ears.items():
            _check(ear, tones[identity].hz)
        return {who: round(e.pitch, 1) for who, e in ears.items()}
    finally:
        for e in ears.values():
            await e.close()
        for tone in tones.values():
            await tone.close()
        await rooms.close()

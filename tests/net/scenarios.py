"""Official-SDK scenarios the network-lab tests run inside a client namespace.

They reuse the tone and ear of tests.scenarios.media_flow: every participant publishes its own
frequency and every participant must hear each other one at the right pitch.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from livekit import rtc
from tests.helpers.netlab import HOLD_MARKER
from tests.helpers.sdk import EventLog, Rooms
from tests.scenarios.media_flow import EVENTS, Ear, Tone, _wait_heard

SPACING_HZ = 110  # participant i plays 300 + 110 i Hz
TOLERANCE_HZ = 30  # under load a track can read ~20 Hz off; still far from its neighbours


async def everyone_hears_everyone(
    srv: dict[str, str], n: int, room_name: str = "netlab", hold: bool = False,
    subscribe_timeout: float = 40.0,
) -> dict[str, Any]:
    """`n` participants join and publish a tone each; each hears all the others, each right.

    With `hold`, once everyone has been heard the call stays up, after printing HOLD_MARKER,
    until a line arrives on stdin (at most 60 s): the test inspects the server meanwhile.
    """
    rooms = Rooms(srv)
    names = [f"p{i}" for i in range(n)]
    tones = {name: Tone(300 + SPACING_HZ * i, frame_ms=20) for i, name in enumerate(names)}
    logs: dict[str, EventLog] = {}
    ears: dict[tuple[str, str], Ear] = {}
    try:
        joined: dict[str, rtc.Room] = {}
        for name in names:
            room = rooms.new()
            logs[name] = EventLog(room, *EVENTS, label=name)
            joined[name] = await rooms.join(name, room_name, room=room, timeout=20)
        for name in names:
            await tones[name].publish(joined[name])
        deadline = time.monotonic() + subscribe_timeout
        while any(log.count("track_subscribed") < n - 1 for log in logs.values()):
            if time.monotonic() > deadline:
                counts = {name: log.count("track_subscribed") for name, log in logs.items()}
                raise TimeoutError(f"subscriptions after {subscribe_timeout:.0f} s: {counts}")
            await asyncio.sleep(0.1)
        for name, log in logs.items():
            for track, _, who in log.all("track_subscribed"):
                ears[(name, who.identity)] = Ear(track, f"{name}<-{who.identity}", frame_ms=50)
        for tone in tones.values():
            tone.burst(4.0)
        await _wait_heard(list(ears.values()), 1.5, timeout=20)
        bad = [f"{e.label}: {e.pitch:.0f} Hz (want {tones[src].hz:.0f}, "
               f"{e.loud_seconds:.2f} s heard)"
               for (_, src), e in ears.items() if abs(e.pitch - tones[src].hz) >= TOLERANCE_HZ]
        assert not bad, "wrong or missing audio: " + "; ".join(bad)
        result = {"pairs": len(ears),
                  "min_heard_s": round(min(e.loud_seconds for e in ears.values()), 2)}
        if hold:
            print(HOLD_MARKER, flush=True)
            line = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            try:
                await asyncio.wait_for(line, 60)
            except TimeoutError:
                raise TimeoutError("the test never released the held call") from None
        return result
    finally:
        for e in ears.values():
            await e.close()
        for tone in tones.values():
            await tone.close()
        await rooms.close()

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
from tests.scenarios.media_flow import EVENTS, Ear, Tone

SPACING_HZ = 110  # participant i plays 300 + 110 i Hz
TOLERANCE_HZ = 30  # under load a track can read ~20 Hz off; still far from its neighbours


async def _hold() -> None:
    """Tell the test the call is up (HOLD_MARKER) and wait for its line on stdin."""
    print(HOLD_MARKER, flush=True)
    line = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    try:
        await asyncio.wait_for(line, 60)
    except TimeoutError:
        raise TimeoutError("the test never released the held call") from None


class Call:
    """Everyone's tone and, per (listener, source), an ear on the newest subscribed track."""

    def __init__(self, tones: dict[str, Tone], logs: dict[str, EventLog]) -> None:
        self.tones = tones
        self.logs = logs
        self.ears: dict[tuple[str, str], Ear] = {}
        self.tracks: dict[tuple[str, str], rtc.Track] = {}

    async def listen_to_newest_tracks(self) -> None:
        """A (re)subscription brings a new track object: the ear follows it."""
        for name, log in self.logs.items():
            for track, _, who in log.all("track_subscribed"):
                pair = (name, who.identity)
                if self.tracks.get(pair) is track:
                    continue
                if pair in self.ears:
                    await self.ears.pop(pair).close()
                self.tracks[pair] = track
                self.ears[pair] = Ear(track, f"{name}<-{who.identity}", frame_ms=50)

    async def everyone_heard(self, timeout: float, seconds: float = 1.5) -> dict[str, Any]:
        """Everyone plays until each ear has heard `seconds` of its source, right; or fail."""
        n = len(self.tones)
        for ear in self.ears.values():
            ear.reset()
        deadline = time.monotonic() + timeout
        next_burst = 0.0
        while True:
            await self.listen_to_newest_tracks()
            if len(self.ears) == n * (n - 1) and all(
                    e.loud_seconds >= seconds for e in self.ears.values()):
                break
            if time.monotonic() > deadline:
                break
            if time.monotonic() >= next_burst:
                for tone in self.tones.values():
                    tone.burst(4.0)
                next_burst = time.monotonic() + 2.0
            await asyncio.sleep(0.1)
        missing = [f"{a}<-{b}" for a in self.tones for b in self.tones
                   if a != b and (a, b) not in self.ears]
        bad = [f"{e.label}: {e.pitch:.0f} Hz (want {self.tones[src].hz:.0f}, "
               f"{e.loud_seconds:.2f} s heard)"
               for (_, src), e in self.ears.items()
               if abs(e.pitch - self.tones[src].hz) >= TOLERANCE_HZ
               or e.loud_seconds < seconds]
        assert not missing and not bad, (
            f"after {timeout:.0f} s: not subscribed {missing}; wrong or missing audio: "
            + "; ".join(bad))
        return {"pairs": len(self.ears),
                "min_heard_s": round(min(e.loud_seconds for e in self.ears.values()), 2)}

    async def close(self) -> None:
        for ear in self.ears.values():
            await ear.close()
        for tone in self.tones.values():
            await tone.close()


async def everyone_hears_everyone(
    srv: dict[str, str], n: int, room_name: str = "netlab", hold: bool = False,
    rounds: int = 1, round_timeout: float = 45.0, subscribe_timeout: float = 40.0,
) -> dict[str, Any]:
    """`n` participants join and publish a tone each; each hears all the others, each right.

    With `hold`, after each round of hearing the call stays up, after printing HOLD_MARKER,
    until a line arrives on stdin (at most 60 s): the test inspects or changes the network
    meanwhile. Later rounds (`rounds` > 1) must hear everyone again within `round_timeout`,
    on re-subscribed tracks if the SDK reconnected. Returns the last round's numbers.
    """
    rooms = Rooms(srv)
    names = [f"p{i}" for i in range(n)]
    tones = {name: Tone(300 + SPACING_HZ * i, frame_ms=20) for i, name in enumerate(names)}
    logs: dict[str, EventLog] = {}
    call = Call(tones, logs)
    try:
        joined: dict[str, rtc.Room] = {}
        for name in names:
            room = rooms.new()
            logs[name] = EventLog(room, *EVENTS, label=name)
            joined[name] = await rooms.join(name, room_name, room=room, timeout=20)
        for name in names:
            await tones[name].publish(joined[name])
        await asyncio.gather(*(log.wait_count("track_subscribed", n - 1, subscribe_timeout)
                               for log in logs.values()))
        result = await call.everyone_heard(timeout=20)
        for later in range(1, rounds + 1):
            if hold:
                await _hold()
            if later < rounds:
                result = await call.everyone_heard(timeout=round_timeout)
                result["round"] = later + 1
        return result
    finally:
        await call.close()
        await rooms.close()

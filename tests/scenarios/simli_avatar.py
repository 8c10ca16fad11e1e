"""A listener (official SDK) in the room of a tests/agents/simli_app.py job: it meets the agent
and the avatar the Simli plugin sent in through roost, records the avatar's audio and mouth,
and drives the agent's says over RPC.

`speak`: one 2 s tone said to the end, then the job is shut down (the avatar follows the agent
out). `interrupt`: a long tone is interrupted after about a second, a short one is said to the
end, then the agent closes its AvatarSession (the plugin removes the avatar) and stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms, wait_until
from tests.helpers.signals import dominant_hz

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
AVATAR = "simli-avatar-agent"
RATE = 48_000
# Where the mouth of face "ada" is in the 512x512 picture, with room for head motion (the
# renderer paints only the mouth there; an open mouth shows its dark cavity).
MOUTH = (slice(292, 380), slice(192, 320))
DARK = 50  # luma below this inside MOUTH is the open mouth's cavity
LOUD_RMS = 400.0  # a 10 ms frame of received audio louder than this (int16 RMS) is the tone
SAY_TIMEOUT = 30.0


@dataclass
class Recording:
    """The avatar's media as the listener got it: per-frame arrival times and measures."""

    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)
    video: list[tuple[float, float]] = field(default_factory=list)  # (time, dark fraction)
    size: tuple[int, int] = (0, 0)

    def loud(self, t0: float, t1: float = float("inf")) -> list[tuple[float, np.ndarray]]:
        return [(t, pcm) for t, pcm in self.audio if t0 <= t < t1 and _rms(pcm) > LOUD_RMS]

    def loud_seconds(self, t0: float, t1: float = float("inf")) -> float:
        return sum(pcm.size for _, pcm in self.loud(t0, t1)) / RATE

    def pitch(self, t0: float, t1: float) -> float:
        loud = self.loud(t0, t1)
        return dominant_hz(np.concatenate([pcm for _, pcm in loud]), RATE) if loud else 0.0

    def mouth(self, t0: float, t1: float = float("inf")) -> list[float]:
        return [dark for t, dark in self.video if t0 <= t < t1]


def _rms(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


async def _record_audio(track: rtc.Track, rec: Recording) -> None:
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
    try:
        async for event in stream:
            rec.audio.append((time.monotonic(), np.frombuffer(event.frame.data, dtype=np.int16)
                              .copy()))
    finally:
        await stream.aclose()


async def _record_video(track: rtc.Track, rec: Recording) -> None:
    stream = rtc.VideoStream(track, format=rtc.VideoBufferType.I420)
    try:
        async for event in stream:
            frame = event.frame
            w, h = frame.width, frame.height
            luma = np.frombuffer(frame.data, dtype=np.uint8)[: w * h].reshape(h, w)
            rec.size = (w, h)
            dark = float(np.mean(luma[MOUTH] < DARK)) if (w, h) == (512, 512) else 0.0
            rec.video.append((time.monotonic(), dark))
    finally:
        await stream.aclose()


def _summary(rec: Recording, t0: float, t1: float) -> dict[str, Any]:
    """What was heard and seen of the avatar between t0 and t1."""
    mouth = rec.mouth(t0, t1)
    return {"heard_s": round(rec.loud_seconds(t0, t1), 2), "pitch": rec.pitch(t0, t1),
            "frames": len(mouth), "mouth_max": max(mouth, default=0.0),
            "mouth_min": min(mouth, default=0.0),
            "mouth_changes": sum(abs(a - b) > 0.02 for a, b in itertools.pairwise(mouth))}


async def _say(room: rtc.Room, agent: str, **args: Any) -> tuple[dict[str, Any], float, float]:
    """RPC `test.say`: the agent's report once its SpeechHandle is done, with start and end."""
    started = time.monotonic()
    answer = await room.local_participant.perform_rpc(
        destination_identity=agent, method="test.say", payload=json.dumps(args),
        response_timeout=SAY_TIMEOUT)
    return dict(json.loads(answer)), started, time.monotonic()


async def simli_avatar(srv: dict[str, str], room_name: str, mode: str,
                       realtime: bool = False) -> dict[str, Any]:
    """Meet the agent and its avatar in `room_name`, then run `mode` (`speak`, `interrupt`);
    `realtime`: the long tone is made at real time, so it is interrupted while it streams."""
    rooms = Rooms(srv)
    out: dict[str, Any] = {"mode": mode}
    tasks: list[asyncio.Task[None]] = []
    try:
        room = rooms.new()
        events = EventLog(room, "participant_disconnected", label="listener")
        left: dict[str, tuple[float, int]] = {}

        def on_left(participant: rtc.RemoteParticipant) -> None:
            reason = int(participant.disconnect_reason or 0)
            left[participant.identity] = (time.monotonic(), reason)

        room.on("participant_disconnected", on_left)
        await rooms.join("listener", room_name, room=room)

        def agent() -> rtc.RemoteParticipant | None:
            return next((p for p in room.remote_participants.values()
                         if p.kind == AGENT and p.identity != AVATAR), None)

        await wait_until(lambda: agent() is not None, 60, "the agent in the room")
        found = agent()
        assert found is not None
        identity = found.identity
        await wait_until(lambda: found.attributes.get("simli.avatar"), 60,
                         "the agent's simli.avatar attribute")
        out["agent"] = {"identity": identity, "attributes": dict(found.attributes)}
        if found.attributes["simli.avatar"] != "joined":
            out["present"] = sorted(room.remote_participants)
            return out
        await wait_until(lambda: AVATAR in room.remote_participants, 10, "the avatar")
        avatar = room.remote_participants[AVATAR]

        def subscribed() -> dict[int, rtc.Track]:
            return {pub.track.kind: pub.track for pub in avatar.track_publications.values()
                    if pub.track is not None}

        await wait_until(lambda: len(subscribed()) == 2, 20, "the avatar's audio and video")
        out["avatar"] = {
            "kind": int(avatar.kind), "name": avatar.name, "attributes": dict(avatar.attributes),
            "tracks": sorted((rtc.TrackKind.Name(pub.kind), rtc.TrackSource.Name(pub.source),
                              pub.name) for pub in avatar.track_publications.values())}
        rec = Recording()
        tracks = subscribed()
        tasks = [asyncio.create_task(_record_audio(tracks[rtc.TrackKind.KIND_AUDIO], rec)),
                 asyncio.create_task(_record_video(tracks[rtc.TrackKind.KIND_VIDEO], rec))]
        await wait_until(lambda: len(rec.video) >= 10 and len(rec.audio) >= 50, 15,
                         "the avatar's first frames")
        out["size"] = rec.size
        if mode == "speak":
            windows = await _speak(room, identity, rec, out)
        else:
            windows = await _interrupt(room, identity, rec, out, realtime)
        out["said_attribute"] = found.attributes.get("simli.said")
        # the end: the job shuts down, or the agent closes its AvatarSession
        method = "test.shutdown" if mode == "speak" else "test.remove_avatar"
        out["end_answer"] = await room.local_participant.perform_rpc(
            destination_identity=identity, method=method, payload="", response_timeout=15)
        await events.wait("participant_disconnected", lambda p: p.identity == AVATAR,
                          timeout=15)
        if mode == "speak":
            await events.wait("participant_disconnected", lambda p: p.identity == identity,
                              timeout=15)
        out["left"] = {who: {"at": at, "reason": reason} for who, (at, reason) in left.items()}
        out["still_here"] = sorted(room.remote_participants)
        # measured now that the avatar is gone: the open windows end with its last frames
        for name, t0, t1 in windows:
            out[name] = _summary(rec, t0, t1)
        return out
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await rooms.close()


Windows = list[tuple[str, float, float]]  # (name, from, to): what to summarise at the end


async def _speak(room: rtc.Room, agent: str, rec: Recording, out: dict[str, Any]) -> Windows:
    idle_from = rec.video[0][0]
    result, t0, _ = await _say(room, agent, id="s1", seconds=2.0)
    out["say"] = result
    agent_participant = room.remote_participants[agent]
    await wait_until(lambda: agent_participant.attributes.get("simli.said") == "1", 10,
                     "simli.said = 1 on the agent")
    return [("idle", idle_from, t0), ("speaking", t0, float("inf"))]


async def _interrupt(room: rtc.Room, agent: str, rec: Recording, out: dict[str, Any],
                     realtime: bool) -> Windows:
    say = asyncio.create_task(_say(room, agent, id="long", seconds=8.0, interruptible=True,
                                   realtime=realtime))
    t0 = time.monotonic()
    await wait_until(lambda: rec.loud_seconds(t0) >= 1.0 or say.done(), 15,
                     "a second of the long tone")
    t_interrupt = time.monotonic()
    out["interrupt_answer"] = await room.local_participant.perform_rpc(
        destination_identity=agent, method="test.interrupt", payload=json.dumps({"id": "long"}))
    result, _, t_done = await say
    out["long"] = {**result, "interrupt_after_s": round(t_interrupt - t0, 3),
                   "done_after_interrupt_s": round(t_done - t_interrupt, 3)}
    # a short say after it: had the avatar kept the rest of the long tone queued, this one would
    # be heard only after it
    short, t2, t3 = await _say(room, agent, id="short", seconds=1.0)
    out["short"] = {**short, "took_s": round(t3 - t2, 3)}
    out["gap_s"] = round(t2 - t_interrupt, 3)
    return [("long_heard", t0, t2), ("short_heard", t2, float("inf"))]

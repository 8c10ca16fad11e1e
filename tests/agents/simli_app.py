"""A model-free livekit-agents worker that speaks through `livekit-plugins-simli` (run by the
agents venv's python, like agent_app.py).

Each job starts an `AgentSession` with no STT, LLM, TTS, VAD or turn detector, and sends
`simli.AvatarSession` to the server that dispatched it (`api_url` = LIVEKIT_URL, roost's own
HTTP port). Speech is a tone handed to `session.say(text, audio=...)`, so nothing but the
plugin's `DataStreamAudioOutput` stands between the session and the avatar.

Environment: LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET, HEALTH_PORT, WORKER_TAG,
SIMLI_API_KEY (default `simli-dev-key`), SIMLI_FACE (default `ada`), SIMLI_MAX_IDLE (the
plugin's `max_idle_time`, default 30 s), SIMLI_JOIN_TIMEOUT (for `wait_for_join`, default 30 s).

What the test sees, on the agent participant:
- attribute `simli.avatar`: `joined` once `wait_for_join` returned (the avatar participant and
  its video are in the room), `failed: ...` otherwise;
- RPC `test.say` `{"id", "seconds", "interruptible", "realtime"}`: says a 440 Hz tone of
  `seconds` (made as fast as the session takes it, or at real time); answers
  once the SpeechHandle is done with `{"id", "interrupted", "elapsed", "playback_position",
  "playback_interrupted"}` (the last two from the audio output's `playback_finished` event, that
  is what the avatar reported over `lk.playback_finished`); the attribute `simli.said` counts
  the finished says;
- RPC `test.interrupt` `{"id"}`: `handle.interrupt()` on that say; answers `ok`;
- RPC `test.remove_avatar`: the plugin's `AvatarSession.aclose()` while the job goes on (it
  asks RoomService.RemoveParticipant to take the avatar out); answers `ok`;
- RPC `test.shutdown`: ends the job (`ctx.shutdown`). livekit-agents 1.8.9 leaves the room
  before it runs the shutdown callbacks, so the plugin's `aclose` (one of them) finds the
  room disconnected and removes nothing: the avatar has to notice the agent left.
Each step also logs a `simli_app:` line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobRequest, cli
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.io import PlaybackFinishedEvent
from livekit.plugins import simli

log = logging.getLogger("simli_app")

TAG = os.environ.get("WORKER_TAG", "w")
RATE = 16_000  # what the plugin's DataStreamAudioOutput sends at
FRAME = RATE // 50  # 20 ms
TONE_HZ = 440.0
WOBBLE_HZ = 2.5  # the tone's loudness swings at this rate, so the mouth has to move

server = AgentServer(
    port=int(os.environ.get("HEALTH_PORT") or 0),
    load_threshold=float("inf"),
    initialize_process_timeout=60,
    num_idle_processes=0,
)


async def on_request(req: JobRequest) -> None:
    await req.accept(attributes={"worker": TAG})


async def tone(seconds: float, realtime: bool = False) -> AsyncIterator[rtc.AudioFrame]:
    """`seconds` of a 440 Hz sine whose loudness swings from silence to -4 dBFS and back; as
    fast as it is taken, or (`realtime`) one 20 ms frame per 20 ms, as a slow TTS would."""
    started = time.monotonic()
    total = int(seconds * RATE)
    for start in range(0, total, FRAME):
        n = min(FRAME, total - start)
        frame = rtc.AudioFrame.create(RATE, 1, n)
        data = frame.data
        for i in range(n):
            t = (start + i) / RATE
            level = 0.5 - 0.5 * math.cos(2 * math.pi * WOBBLE_HZ * t)
            data[i] = int(20_000 * level * math.sin(2 * math.pi * TONE_HZ * t))
        yield frame
        if realtime:
            await asyncio.sleep(max(0.0, started + (start + n) / RATE - time.monotonic()))
        else:
            await asyncio.sleep(0)


class Job:
    """One job's session, avatar and the says the test asked for."""

    def __init__(self, ctx: JobContext, session: AgentSession,
                 avatar: simli.AvatarSession) -> None:
        self.ctx = ctx
        self.session = session
        self.avatar = avatar
        self.handles: dict[str, SpeechHandle] = {}
        self.finished: list[PlaybackFinishedEvent] = []
        self.said = 0
        audio = session.output.audio
        assert audio is not None, "the session has no audio output"
        audio.on("playback_finished", self._playback_finished)

    def _playback_finished(self, ev: PlaybackFinishedEvent) -> None:
        log.info("simli_app: playback finished position=%.2f interrupted=%s",
                 ev.playback_position, ev.interrupted)
        self.finished.append(ev)

    async def say(self, data: rtc.RpcInvocationData) -> str:
        args: dict[str, Any] = json.loads(data.payload or "{}")
        say_id = str(args.get("id", "say"))
        seconds = float(args.get("seconds", 2.0))
        finished_before = len(self.finished)
        started = time.monotonic()
        audio = tone(seconds, realtime=bool(args.get("realtime", False)))
        handle = self.session.say(f"tone {say_id}", audio=audio,
                                  allow_interruptions=bool(args.get("interruptible", False)))
        self.handles[say_id] = handle
        log.info("simli_app: say %s started (%.1f s)", say_id, seconds)
        await handle
        elapsed = time.monotonic() - started
        # the handle completes on the segment's playback_finished; let its event land first
        for _ in range(50):
            if len(self.finished) > finished_before:
                break
            await asyncio.sleep(0.02)
        event = self.finished[-1] if len(self.finished) > finished_before else None
        self.said += 1
        await self.ctx.room.local_participant.set_attributes({"simli.said": str(self.said)})
        result = {"id": say_id, "interrupted": handle.interrupted, "elapsed": round(elapsed, 3),
                  "playback_position": None if event is None else event.playback_position,
                  "playback_interrupted": None if event is None else event.interrupted}
        log.info("simli_app: say %s done %s", say_id, json.dumps(result))
        return json.dumps(result)

    def interrupt(self, data: rtc.RpcInvocationData) -> str:
        say_id = str(json.loads(data.payload or "{}").get("id", "say"))
        handle = self.handles.get(say_id)
        if handle is None:
            return f"unknown say {say_id}"
        log.info("simli_app: interrupting say %s", say_id)
        handle.interrupt()
        return "ok"

    async def remove_avatar(self, data: rtc.RpcInvocationData) -> str:
        log.info("simli_app: closing the avatar session")
        await self.avatar.aclose()
        return "ok"

    def shutdown(self, data: rtc.RpcInvocationData) -> str:
        log.info("simli_app: shutting the job down")
        self.ctx.shutdown(reason="test.shutdown")
        return "ok"


@server.rtc_session(on_request=on_request)
async def entry(ctx: JobContext) -> None:
    await ctx.connect(auto_subscribe="audio_only")  # type: ignore[arg-type]
    session: AgentSession = AgentSession(vad=None, turn_handling={"turn_detection": "manual"})
    await session.start(agent=Agent(instructions="say tones"), room=ctx.room, record=False)
    avatar = simli.AvatarSession(
        simli_config=simli.SimliConfig(api_key=os.environ.get("SIMLI_API_KEY", "simli-dev-key"),
                                       face_id=os.environ.get("SIMLI_FACE", "ada"),
                                       max_idle_time=int(os.environ.get("SIMLI_MAX_IDLE", 30))),
        api_url=os.environ["LIVEKIT_URL"].rstrip("/"))
    job = Job(ctx, session, avatar)
    local = ctx.room.local_participant
    local.register_rpc_method("test.say", job.say)
    local.register_rpc_method("test.interrupt", job.interrupt)
    local.register_rpc_method("test.remove_avatar", job.remove_avatar)
    local.register_rpc_method("test.shutdown", job.shutdown)
    await avatar.start(session, room=ctx.room)
    try:
        await avatar.wait_for_join(timeout=float(os.environ.get("SIMLI_JOIN_TIMEOUT", 30)))
    except Exception as exc:  # the test reads why from the attribute
        log.error("simli_app: the avatar did not join: %r", exc)
        await local.set_attributes({"simli.avatar": f"failed: {exc!r}"})
        return
    log.info("simli_app: the avatar joined")
    await local.set_attributes({"simli.avatar": "joined"})


if __name__ == "__main__":
    cli.run_app(server)

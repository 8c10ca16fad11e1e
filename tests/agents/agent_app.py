"""A model-free livekit-agents worker for the tests (run by the agents venv's python).

Environment: LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET (the worker's own), and
AGENT_NAME, WORKER_TAG, HEALTH_PORT, THRESH (load threshold), JOB_LOAD (load per job),
JOB_TYPE (room|publisher), IDLE_PROCESSES (warm job processes kept ready, default 0) and
TONE (0: publish nothing). Each job joins, publishes a 440 Hz tone, answers RPC `test.echo`
and tags itself with attributes: worker, job_metadata, dispatch_id, job_type.
"""

from __future__ import annotations

import math
import os

from livekit import rtc
from livekit.agents import AgentServer, JobContext, JobRequest, WorkerType, cli

TAG = os.environ.get("WORKER_TAG", "w")
THRESH = float(os.environ.get("THRESH") or "inf")
JOB_LOAD = float(os.environ.get("JOB_LOAD") or "0")
IDLE_PROCESSES = int(os.environ.get("IDLE_PROCESSES") or "0")
TONE = os.environ.get("TONE", "1") != "0"
RATE = 48000

server = AgentServer(
    port=int(os.environ.get("HEALTH_PORT") or 0),
    load_threshold=THRESH,
    load_fnc=lambda s: min(1.0, len(s.active_jobs) * JOB_LOAD),  # type: ignore[attr-defined]
    initialize_process_timeout=60,
    num_idle_processes=IDLE_PROCESSES,
)


async def on_request(req: JobRequest) -> None:
    await req.accept(attributes={"worker": TAG, "job_metadata": req.job.metadata,
                                 "dispatch_id": req.job.dispatch_id,
                                 "job_type": str(req.job.type)})


async def tone(source: rtc.AudioSource) -> None:
    phase = 0.0
    step = 2 * math.pi * 440 / RATE
    samples = RATE // 100
    while True:
        frame = rtc.AudioFrame.create(RATE, 1, samples)
        data = frame.data
        for i in range(samples):
            data[i] = int(8000 * math.sin(phase))
            phase += step
        await source.capture_frame(frame)


@server.rtc_session(agent_name=os.environ.get("AGENT_NAME", ""), on_request=on_request,
                    type=WorkerType.PUBLISHER if os.environ.get("JOB_TYPE") == "publisher"
                    else WorkerType.ROOM)
async def entry(ctx: JobContext) -> None:
    await ctx.connect(auto_subscribe="audio_only")  # type: ignore[arg-type]
    local = ctx.room.local_participant
    local.register_rpc_method("test.echo", lambda data: f"echo:{data.payload}")
    if not TONE:
        return  # the job lives on until the room ends or roost ends it
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await local.publish_track(track, options)
    await tone(source)


if __name__ == "__main__":
    cli.run_app(server)

"""Avatar service bench: reaction times, audio/video offset and CPU per session.

Phases:
  latency   (official SDK in a child process, `--runs` times) a compose session with an SDK
            client in the room; 0.24 s vowel bursts every 0.61 s sent at real time. Reported:
            first audio chunk sent → SPEAK on the WebSocket, → first open-mouth frame and first
            loud audio at the client; per burst, mouth onset minus audio onset at the client
            (the A/V offset a viewer sees; video frames are 40 ms apart, so one onset is ±20 ms).
  cpu       server process CPU while 1 and then `--sessions` sessions speak continuously
            (no client joined: the avatar's own cost plus the SFU receiving it), minus the
            idle server's CPU; and the avatar pipeline alone in this process (render, mouth
            features, 48 kHz upsampling, VP8 + Opus encoding) per second of speech.

Targets (issue 5): first mouth-open frame < 300 ms, offset within ±45 ms, a session < 25 % of
one core. The machine's load average is printed: other processes sharing the cores inflate
every real-time figure here.

    python bench/avatar.py                       # starts roost itself on a free port
    python bench/avatar.py --runs 5 --sessions 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.avatar import signals  # noqa: E402
from tests.avatar.compose_client import ComposeSocket, request_token  # noqa: E402
from tests.helpers.scenario import run_scenario  # noqa: E402
from tests.helpers.server import RoostServer, start_server  # noqa: E402

TARGET_FIRST_FRAME_MS = 300
TARGET_OFFSET_MS = 45
TARGET_CORE_SHARE = 0.25


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} cores"


def stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"median {statistics.median(values):6.0f}   min {min(values):6.0f}   "
            f"max {max(values):6.0f}   (n={len(values)})")


# --- latency ------------------------------------------------------------------------------


def latency_phase(server: RoostServer, runs: int, log_dir: Path) -> dict[str, Any]:
    speak: list[float] = []
    mouth: list[float] = []
    audio: list[float] = []
    offsets: list[float] = []
    for i in range(runs):
        r = run_scenario("tests.avatar.scenarios:measure_latency", server.info, timeout=90,
                         log_dir=log_dir)
        print(f"  run {i + 1}: SPEAK {r['speak_ms']} ms, first mouth {r['first_mouth_ms']} ms,"
              f" first audio {r['first_audio_ms']} ms, A/V offsets {r['av_offsets_ms']} ms")
        speak.append(r["speak_ms"])
        if r["first_mouth_ms"] is not None:
            mouth.append(r["first_mouth_ms"])
        if r["first_audio_ms"] is not None:
            audio.append(r["first_audio_ms"])
        offsets += r["av_offsets_ms"]
    print(f"  first chunk → SPEAK            {stats(speak)} ms")
    print(f"  first chunk → open mouth seen  {stats(mouth)} ms   (target < "
          f"{TARGET_FIRST_FRAME_MS})")
    print(f"  first chunk → audio heard      {stats(audio)} ms")
    print(f"  A/V offset (mouth - audio)     {stats(offsets)} ms   mean "
          f"{np.mean(offsets) if offsets else float('nan'):+.0f} ms (target ±{TARGET_OFFSET_MS})")
    return {"speak_ms": speak, "first_mouth_ms": mouth, "first_audio_ms": audio,
            "av_offsets_ms": offsets}


# --- CPU -----------------------------------------------------------------------------------


async def _speaking_sessions(server: RoostServer, count: int, seconds: float) -> float:
    """Server CPU share (of one core) while `count` sessions speak for `seconds`."""
    async with aiohttp.ClientSession() as http:
        socks = []
        for _ in range(count):
            status, body = await request_token(http, server.http_url, faceId="ada")
            assert status == 200, body
            socks.append(await ComposeSocket.open(http, server.http_url, body["session_token"]))
        for sock in socks:
            await sock.wait_text("START", 20)
        await asyncio.sleep(1.0)
        pcm = signals.speech(seconds + 2, seed=11)
        before, t0 = server.cpu_seconds(), time.monotonic()
        senders = [asyncio.create_task(sock.send_paced(pcm)) for sock in socks]
        await asyncio.sleep(seconds)
        share = (server.cpu_seconds() - before) / (time.monotonic() - t0)
        await asyncio.gather(*senders)
        for sock in socks:
            await sock.ws.send_str("DONE")
        for sock in socks:
            await sock.wait_closed(15)
        return share


def _idle_share(server: RoostServer, seconds: float) -> float:
    before, t0 = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (server.cpu_seconds() - before) / (time.monotonic() - t0)


def pipeline_cpu(seconds: float = 10.0) -> dict[str, float]:
    """CPU seconds per second of speech of the avatar's own work, measured in this process."""
    import av
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from roost.avatar.animation import Animator
    from roost.avatar.audio import Upsampler, mouth_features
    from roost.avatar.faces import FACES
    from roost.avatar.renderer import Renderer

    renderer, animator, upsampler = Renderer(FACES["ada"]), Animator(seed=1), Upsampler()
    vp8 = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000))
    opus = get_encoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000,
                                             channels=2))
    pcm = signals.speech(seconds, seed=4)
    frames = int(seconds * 25)
    parts = {"render": 0.0, "audio": 0.0, "vp8": 0.0, "opus": 0.0}
    for i in range(frames):
        t = time.process_time()
        chunk = pcm[i * 640:(i + 1) * 640]
        opening, wide = mouth_features(chunk)
        up = upsampler.process(chunk)
        t1 = time.process_time()
        frame = renderer.render(animator.next(opening, wide))
        picture = av.VideoFrame.from_ndarray(frame.reshape(768, 512), format="yuv420p")
        picture.pts, picture.time_base = i * 3600, Fraction(1, 90000)
        t2 = time.process_time()
        vp8.encode(picture, force_keyframe=i == 0)
        t3 = time.process_time()
        for half in (up[:960], up[960:]):
            sound = av.AudioFrame.from_ndarray(half.reshape(1, -1), format="s16", layout="mono")
            sound.sample_rate, sound.pts = 48000, i * 1920
            sound.time_base = Fraction(1, 48000)
            opus.encode(sound)
        t4 = time.process_time()
        parts["audio"] += t1 - t
        parts["render"] += t2 - t1
        parts["vp8"] += t3 - t2
        parts["opus"] += t4 - t3
    return {name: value / seconds for name, value in parts.items()}


def cpu_phase(server: RoostServer, sessions: int, seconds: float) -> dict[str, Any]:
    idle = _idle_share(server, 3.0)
    one = asyncio.run(_speaking_sessions(server, 1, seconds))
    many = asyncio.run(_speaking_sessions(server, sessions, seconds)) if sessions > 1 else one
    pipeline = pipeline_cpu()
    own = sum(pipeline.values())
    print(f"  idle server                    {idle * 100:5.1f} % of a core")
    print(f"  1 speaking session             {(one - idle) * 100:5.1f} % of a core "
          f"(server total {one * 100:.1f} %; target < {TARGET_CORE_SHARE * 100:.0f} %)")
    if sessions > 1:
        print(f"  {sessions} speaking sessions            {(many - idle) * 100:5.1f} % "
              f"→ {(many - idle) / sessions * 100:.1f} % per session")
    print(f"  avatar pipeline alone          {own * 100:5.1f} % of a core: " + ", ".join(
        f"{name} {value * 100:.1f} %" for name, value in pipeline.items()))
    return {"idle": idle, "one_session": one - idle,
            "per_session_of_many": (many - idle) / sessions, "pipeline": pipeline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="latency runs (default 3)")
    parser.add_argument("--sessions", type=int, default=3, help="concurrent sessions for CPU")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU window (default 10)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="roost-bench-avatar-"))
    print(f"avatar bench ({load()}); logs in {log_dir}")
    server = start_server(log_dir=log_dir)
    try:
        print("latency (official SDK client in the room):")
        latency = latency_phase(server, args.runs, log_dir)
        print("cpu:")
        cpu = cpu_phase(server, args.sessions, args.seconds)
    finally:
        server.stop()
    print(f"done ({load()})")
    if args.json:
        Path(args.json).write_text(json.dumps({"latency": latency, "cpu": cpu}, indent=1))


if __name__ == "__main__":
    main()

"""roost.client vs the official `livekit` SDK against one roost: connect time and audio CPU.

    python bench/client.py [--joins 20] [--streams 4] [--seconds 10]

Each measurement runs in its own child process (so CPU time is that client's alone, and the
official SDK's Rust threads are counted): connect time p50/p95 over sequential joins, and
process CPU per published and per received 48 kHz mono opus stream (a tone, 10 ms frames).
The receiving side is fed by a roost.client publisher process in the same room.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATE = 48_000
CHILD_TIMEOUT = 180.0


def _cpu() -> float:
    """User + system CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _token(srv: dict[str, str], identity: str, room: str) -> str:
    from tests.helpers.server import make_token

    return make_token(srv["api_key"], srv["api_secret"], identity, room)


def _sdk(name: str) -> Any:
    import importlib

    return importlib.import_module("roost.client" if name == "roost" else "livekit.rtc")


async def _tone(sdk: Any, source: Any, hz: float) -> None:
    import numpy as np

    n, t = RATE // 100, 0
    while True:
        x = np.arange(t, t + n) / RATE
        samples = (np.sin(2 * np.pi * hz * x) * 0.3 * 32767).astype(np.int16)
        await source.capture_frame(sdk.AudioFrame(samples.tobytes(), RATE, 1, n))
        t += n


# ---- child roles --------------------------------------------------------------------


async def role_connect(sdk_name: str, srv: dict[str, str], joins: int) -> dict[str, Any]:
    """Sequential joins of a fresh room object; seconds per `connect`."""
    sdk = _sdk(sdk_name)
    times = []
    for i in range(joins):
        room = sdk.Room()
        token = _token(srv, f"{sdk_name}-joiner-{i}", "bench-connect")
        started = time.perf_counter()
        await asyncio.wait_for(room.connect(srv["url"], token), 30)
        times.append(time.perf_counter() - started)
        await room.disconnect()
    return {"times": times}


async def role_publish(sdk_name: str, srv: dict[str, str], streams: int, seconds: float,
                       room_name: str, identity: str) -> dict[str, Any]:
    """Publish `streams` tone tracks; CPU over `seconds` once all are flowing."""
    sdk = _sdk(sdk_name)
    room = sdk.Room()
    await asyncio.wait_for(room.connect(srv["url"], _token(srv, identity, room_name)), 30)
    feeders = []
    try:
        for i in range(streams):
            source = sdk.AudioSource(RATE, 1)
            track = sdk.LocalAudioTrack.create_audio_track(f"tone-{i}", source)
            opts = sdk.TrackPublishOptions(source=sdk.TrackSource.SOURCE_MICROPHONE)
            await asyncio.wait_for(room.local_participant.publish_track(track, opts), 20)
            feeders.append(asyncio.ensure_future(_tone(sdk, source, 300 + 50 * i)))
        await asyncio.sleep(2.0)  # settle: encoders and pacing running
        cpu0, t0 = _cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        return {"cpu": _cpu() - cpu0, "wall": time.monotonic() - t0, "streams": streams}
    finally:
        for f in feeders:
            f.cancel()
        await room.disconnect()


async def role_idle(sdk_name: str, srv: dict[str, str], seconds: float) -> dict[str, Any]:
    """A connected participant doing nothing: the baseline CPU."""
    sdk = _sdk(sdk_name)
    room = sdk.Room()
    await asyncio.wait_for(room.connect(srv["url"], _token(srv, f"{sdk_name}-idle", "bench-idle")),
                           30)
    try:
        await asyncio.sleep(1.0)
        cpu0, t0 = _cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        return {"cpu": _cpu() - cpu0, "wall": time.monotonic() - t0}
    finally:
        await room.disconnect()


async def role_receive(sdk_name: str, srv: dict[str, str], streams: int, seconds: float,
                       room_name: str) -> dict[str, Any]:
    """Subscribe to `streams` tracks and read them through AudioStream; CPU over `seconds`."""
    sdk = _sdk(sdk_name)
    room = sdk.Room()
    tracks: list[Any] = []
    enough = asyncio.Event()

    def on_track(track: Any, *_: Any) -> None:
        tracks.append(track)
        if len(tracks) >= streams:
            enough.set()

    room.on("track_subscribed", on_track)
    await asyncio.wait_for(room.connect(srv["url"], _token(srv, f"{sdk_name}-rx", room_name)), 30)
    frames = 0
    readers = []

    async def read(track: Any) -> None:
        nonlocal frames
        stream = sdk.AudioStream(track, sample_rate=RATE, num_channels=1)
        async for _ in stream:
            frames += 1

    try:
        try:
            await asyncio.wait_for(enough.wait(), 30)
        except TimeoutError:
            raise RuntimeError(f"only {len(tracks)} of {streams} tracks arrived") from None
        readers = [asyncio.ensure_future(read(t)) for t in tracks[:streams]]
        await asyncio.sleep(2.0)
        cpu0, t0, f0 = _cpu(), time.monotonic(), frames
        await asyncio.sleep(seconds)
        return {"cpu": _cpu() - cpu0, "wall": time.monotonic() - t0, "streams": streams,
                "frames_per_s": (frames - f0) / (time.monotonic() - t0)}
    finally:
        for r in readers:
            r.cancel()
        await room.disconnect()


# ---- parent -------------------------------------------------------------------------


def _child(role: str, sdk_name: str, srv: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
    spec = json.dumps({"role": role, "sdk": sdk_name, "srv": srv, **kw})
    env = dict(os.environ, PYTHONPATH=str(ROOT), RUST_LOG="warn")
    return subprocess.Popen([sys.executable, __file__, "--child", spec], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError("a benchmark child did not finish in time") from None
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {out[-2000:]}")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(joins: int, streams: int, seconds: float) -> dict[str, dict[str, float]]:
    """Start roost, measure both SDKs, stop roost; results keyed by SDK name."""
    from tests.helpers.server import start_server

    server = start_server()
    srv = server.info
    results: dict[str, dict[str, float]] = {}
    try:
        for name in ("roost", "official"):
            row: dict[str, float] = {}
            times = _result(_child("connect", name, srv, joins=joins))["times"]
            row["connect_p50_ms"] = statistics.median(times) * 1000
            row["connect_p95_ms"] = _pct(times, 0.95) * 1000
            idle = _result(_child("idle", name, srv, seconds=seconds))
            idle_pct = idle["cpu"] / idle["wall"] * 100
            row["idle_cpu_pct"] = idle_pct
            pub = _result(_child("publish", name, srv, streams=streams, seconds=seconds,
                                 room_name=f"bench-pub-{name}", identity=f"{name}-pub"))
            row["cpu_pct_per_published_stream"] = (
                (pub["cpu"] / pub["wall"] * 100 - idle_pct) / streams)
            room_name = f"bench-rx-{name}"
            feeder = _child("publish", "roost", srv, streams=streams, seconds=seconds + 40,
                            room_name=room_name, identity="feeder")
            try:
                rx = _result(_child("receive", name, srv, streams=streams, seconds=seconds,
                                    room_name=room_name))
            finally:
                feeder.kill()
                feeder.communicate()
            row["cpu_pct_per_received_stream"] = (rx["cpu"] / rx["wall"] * 100 - idle_pct) / streams
            row["received_frames_per_s"] = rx["frames_per_s"]
            results[name] = row
    finally:
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        role, sdk_name, srv = spec.pop("role"), spec.pop("sdk"), spec.pop("srv")
        fn = globals()[f"role_{role}"]
        result = asyncio.run(asyncio.wait_for(fn(sdk_name, srv, **spec), CHILD_TIMEOUT - 10))
        print(json.dumps(result), flush=True)
        os._exit(0)  # the official SDK's FFI teardown can block at interpreter exit
    results = run(args.joins, args.streams, args.seconds)
    keys = list(next(iter(results.values())).keys())
    print(f"{'metric':34} " + " ".join(f"{name:>10}" for name in results))
    for key in keys:
        print(f"{key:34} " + " ".join(f"{results[name][key]:10.1f}" for name in results))
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""The SDK side of the congestion tests and bench/network.py: a simulcast camera with a tone,
and a subscriber that records what it gets. Both run as scenario children (one per namespace,
tests.helpers.netlab.start_scenario_in) and write a JSON-lines timeline that the test (or the
bench) reads while they run: tests/net/timeline.py parses it.

Every line has `k` (kind) and `t` (time.monotonic(), the same clock in every namespace):

* publisher `p`: every 0.5 s, per simulcast rid its outbound-rtp `bytes`, `w`/`h`, `fps`,
  `target` (targetBitrate), `qlr` (quality limitation reason), `active`; plus `aob`, the
  candidate pair's availableOutgoingBitrate (the publisher's own estimate).
* subscriber `v`: one per decoded video frame, `w`/`h`.
* subscriber `a`: every 0.5 s, `n` audio frames (10 ms) delivered and `loud` of them with
  the tone's energy.
* subscriber `s`: every 0.5 s, inbound-rtp counters of the video (`bytes`, `packets`, `lost`,
  `nack`, `pli`, `rtx`, `freezes`, `w`/`h`) and audio (`lost`, `concealed`, `samples`), the
  participant `sid` and the connection state.
* both `e`: events (`published`, `subscribed` with kind, `reconnecting`, `reconnected`,
  `disconnected`, `sid`).

A child stops when the test writes a line to its stdin (`ScenarioRun.send_line`, as the
held scenarios of tests/net/scenarios.py are released) or after `seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from livekit import rtc
from tests.helpers.sdk import Rooms

WIDTH, HEIGHT, FPS = 1280, 720, 30
SAMPLE_RATE = 48_000
AUDIO_FRAME = SAMPLE_RATE // 100  # 10 ms
TONE_HZ = 440.0
LOUD_RMS = 1000.0  # the tone plays at 0.3 full scale (rms ~7000); silence/concealment is < 100
SAMPLE_EVERY = 0.5


class Writer:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._file: TextIO = open(self.path, "a", buffering=1)

    def write(self, line_kind: str, **fields: Any) -> None:
        self._file.write(json.dumps({"k": line_kind, "t": round(time.monotonic(), 4), **fields},
                                    separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


async def _run_until_stopped(seconds: float) -> None:
    """Until the test's line arrives on stdin (or EOF), at most `seconds`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        await asyncio.wait_for(reader.readline(), seconds)
    except TimeoutError:
        pass
    finally:
        transport.close()


def _texture(rng: np.random.Generator) -> np.ndarray:
    """A luma picture larger than the frame: smooth blobs (32-pixel noise, box-blurred) with
    some detail, so that a panning window costs the encoder real bits at every layer while
    the small layers still hold their frame rate at their target bitrate."""
    h, w = HEIGHT + 256, WIDTH + 512
    blocks = rng.integers(20, 235, size=(h // 32 + 1, w // 32 + 1)).astype(np.float32)
    plane = np.kron(blocks, np.ones((32, 32), dtype=np.float32))[:h, :w]
    for axis in (0, 1):  # a 31-pixel box blur each way: gradients instead of edges
        c = np.cumsum(np.pad(plane, [(16, 15) if a == axis else (0, 0) for a in (0, 1)],
                             mode="edge"), axis=axis)
        plane = (np.take(c, range(31, c.shape[axis]), axis=axis)
                 - np.take(c, range(c.shape[axis] - 31), axis=axis)) / 31
    plane += rng.normal(0, 6, size=plane.shape).astype(np.float32)  # a little grain
    texture: np.ndarray = np.clip(plane, 0, 255).astype(np.uint8)
    return texture


async def _camera(source: rtc.VideoSource, fps: int) -> None:
    """1280x720 I420 at `fps`: a panning textured picture with a moving white bar."""
    texture = _texture(np.random.default_rng(12))
    chroma = np.full((HEIGHT // 2) * (WIDTH // 2), 128, dtype=np.uint8).tobytes()
    n = 0
    start = time.monotonic()
    while True:
        x = (n * 7) % 512
        y = int(128 + 120 * np.sin(n / 45))
        luma = np.ascontiguousarray(texture[y:y + HEIGHT, x:x + WIDTH])
        bar = (n * 24) % WIDTH
        luma[:, bar:bar + 40] = 250
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.I420,
                                            luma.tobytes() + chroma + chroma))
        n += 1
        await asyncio.sleep(max(0.0, start + n / fps - time.monotonic()))


async def _tone(source: rtc.AudioSource) -> None:
    """A continuous TONE_HZ sine: every delivered frame should be loud."""
    t = 0
    while True:
        x = np.arange(t, t + AUDIO_FRAME) / SAMPLE_RATE
        samples = (np.sin(2 * np.pi * TONE_HZ * x) * 0.3 * 32767).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1,
                                                  AUDIO_FRAME))
        t += AUDIO_FRAME


def _stats_of(stats: list[Any], which: str) -> list[Any]:
    return [getattr(s, which) for s in stats if s.WhichOneof("stats") == which]


def _pair_bitrate(stats: list[Any], field: str) -> float:
    pairs = [p.candidate_pair for p in _stats_of(stats, "candidate_pair")
             if p.candidate_pair.nominated]
    return max((getattr(p, field) for p in pairs), default=0.0)


def _cancel(*tasks: asyncio.Task[Any] | None) -> None:
    for task in tasks:
        if task is not None:
            task.cancel()


async def publisher(srv: dict[str, str], room_name: str, timeline: str,
                    seconds: float = 60.0, fps: int = FPS) -> dict[str, Any]:
    """Publish a simulcast VP8 1280x720 camera and a tone until stopped; sample outbound
    stats (per rid) every SAMPLE_EVERY s."""
    out = Writer(timeline)
    rooms = Rooms(srv)
    tasks: list[asyncio.Task[Any]] = []
    try:
        room = await rooms.join("pub", room_name, timeout=20)
        out.write("e", what="sid", sid=room.local_participant.sid)
        video = rtc.VideoSource(WIDTH, HEIGHT)
        audio = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=200)
        tasks += [asyncio.ensure_future(_camera(video, fps)),
                  asyncio.ensure_future(_tone(audio))]
        camera = rtc.LocalVideoTrack.create_video_track("camera", video)
        mic = rtc.LocalAudioTrack.create_audio_track("tone", audio)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=True,
                                          video_codec=rtc.VideoCodec.VP8)
        await asyncio.wait_for(room.local_participant.publish_track(camera, options), 15)
        await asyncio.wait_for(room.local_participant.publish_track(
            mic, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)), 15)
        out.write("e", what="published")

        async def sample() -> None:
            while True:
                stats = (await room.get_rtc_stats()).publisher_stats
                layers = {}
                for s in _stats_of(stats, "outbound_rtp"):
                    if s.stream.kind != "video":
                        continue
                    o = s.outbound
                    layers[o.rid or "-"] = {
                        "bytes": s.sent.bytes_sent, "w": o.frame_width, "h": o.frame_height,
                        "fps": round(o.frames_per_second, 1), "target": o.target_bitrate,
                        "qlr": o.quality_limitation_reason, "active": o.active,
                        "rtx": o.retransmitted_packets_sent, "nack": o.nack_count}
                out.write("p", layers=layers,
                          aob=_pair_bitrate(stats, "available_outgoing_bitrate"))
                await asyncio.sleep(SAMPLE_EVERY)

        tasks.append(asyncio.ensure_future(sample()))
        await _run_until_stopped(seconds)
        return {"sid": room.local_participant.sid}
    finally:
        _cancel(*tasks)
        await rooms.close()
        out.close()


class _Watch:
    """The subscriber's decoded video frames and audio energy, written as they come."""

    def __init__(self, out: Writer) -> None:
        self.out = out
        self.video: rtc.RemoteVideoTrack | None = None
        self.audio: rtc.RemoteAudioTrack | None = None
        self.tasks: list[asyncio.Task[Any]] = []

    def attach(self, track: rtc.Track) -> None:
        self.out.write("e", what="subscribed", kind=track.kind, track=track.sid)
        if isinstance(track, rtc.RemoteVideoTrack):
            self.video = track
            self.tasks.append(asyncio.ensure_future(self._frames(rtc.VideoStream(track))))
        elif isinstance(track, rtc.RemoteAudioTrack):
            self.audio = track
            stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1,
                                     frame_size_ms=10)
            self.tasks.append(asyncio.ensure_future(self._sound(stream)))

    async def _frames(self, stream: rtc.VideoStream) -> None:
        try:
            async for event in stream:
                self.out.write("v", w=event.frame.width, h=event.frame.height)
        finally:
            await stream.aclose()

    async def _sound(self, stream: rtc.AudioStream) -> None:
        n = loud = 0
        last = time.monotonic()
        try:
            async for event in stream:
                data = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
                n += 1
                if data.size and np.sqrt(np.mean(data**2)) > LOUD_RMS:
                    loud += 1
                if time.monotonic() - last >= SAMPLE_EVERY:
                    self.out.write("a", n=n, loud=loud)
                    n = loud = 0
                    last = time.monotonic()
        finally:
            await stream.aclose()

    async def stats(self, room: rtc.Room) -> None:
        while True:
            line: dict[str, Any] = {"sid": room.local_participant.sid,
                                    "state": int(room.connection_state)}
            if self.video is not None:
                for s in _stats_of(await self.video.get_stats(), "inbound_rtp"):
                    i = s.inbound
                    line["video"] = {
                        "bytes": i.bytes_received, "packets": s.received.packets_received,
                        "lost": s.received.packets_lost, "nack": i.nack_count,
                        "pli": i.pli_count, "rtx": i.retransmitted_packets_received,
                        "freezes": i.freeze_count, "freeze_s": i.total_freeze_duration,
                        "w": i.frame_width, "h": i.frame_height, "decoded": i.frames_decoded}
            if self.audio is not None:
                for s in _stats_of(await self.audio.get_stats(), "inbound_rtp"):
                    i = s.inbound
                    line["audio"] = {"lost": s.received.packets_lost,
                                     "packets": s.received.packets_received,
                                     "concealed": i.concealed_samples,
                                     "samples": i.total_samples_received}
            self.out.write("s", **line)
            await asyncio.sleep(SAMPLE_EVERY)


async def subscriber(srv: dict[str, str], room_name: str, timeline: str,
                     seconds: float = 60.0) -> dict[str, Any]:
    """Join, subscribe to the publisher's camera and tone, record frames/energy/stats."""
    out = Writer(timeline)
    rooms = Rooms(srv)
    watch = _Watch(out)
    room = rooms.new()
    room.on("track_subscribed", lambda track, *_: watch.attach(track))
    for event in ("reconnecting", "reconnected", "disconnected"):
        room.on(event, lambda *_, what=event: out.write("e", what=what))
    stats: asyncio.Task[Any] | None = None
    try:
        await rooms.join("sub", room_name, room=room, timeout=20)
        first_sid = room.local_participant.sid
        out.write("e", what="sid", sid=first_sid)
        stats = asyncio.ensure_future(watch.stats(room))
        await _run_until_stopped(seconds)
        return {"sid": first_sid, "last_sid": room.local_participant.sid}
    finally:
        _cancel(stats, *watch.tasks)
        for task in watch.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await rooms.close()
        out.close()

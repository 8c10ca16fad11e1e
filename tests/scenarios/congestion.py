"""Congestion control seen from the publisher: what its own bandwidth estimate and encoder do."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from livekit import rtc
from tests.helpers.sdk import Rooms

ROOM = "congestion"
WIDTH, HEIGHT, FPS = 640, 360, 30


async def _noise(source: rtc.VideoSource) -> None:
    """Random pictures: the encoder wants as many bits as it is allowed."""
    rng = np.random.default_rng(1)
    while True:
        rgba = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA,
                                            rgba.tobytes()))
        await asyncio.sleep(1 / FPS)


def _stats_of(stats: list[Any], kind: str) -> list[Any]:
    return [s for s in stats if s.WhichOneof("stats") == kind]


async def publisher_estimate(srv: dict[str, str], seconds: float = 8.0) -> dict[str, Any]:
    """Publish a noisy 640x360 camera (no simulcast) for `seconds`; every second, the
    publisher's available outgoing bitrate and the video bitrate it sent."""
    rooms = Rooms(srv)
    task: asyncio.Task[None] | None = None
    try:
        room = await rooms.join("pub", ROOM, timeout=20)
        source = rtc.VideoSource(WIDTH, HEIGHT)
        task = asyncio.ensure_future(_noise(source))
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=False,
                                          video_codec=rtc.VideoCodec.VP8)
        await asyncio.wait_for(room.local_participant.publish_track(track, options), 15)
        samples: list[dict[str, float]] = []
        last_bytes, last_at = 0, time.monotonic()
        for _ in range(int(seconds)):
            await asyncio.sleep(1.0)
            stats = (await room.get_rtc_stats()).publisher_stats
            sent = sum(s.outbound_rtp.sent.bytes_sent for s in _stats_of(stats, "outbound_rtp")
                       if s.outbound_rtp.stream.kind == "video")
            pairs = [s.candidate_pair.candidate_pair for s in _stats_of(stats, "candidate_pair")
                     if s.candidate_pair.candidate_pair.nominated]
            now = time.monotonic()
            samples.append({
                "available_bps": max((p.available_outgoing_bitrate for p in pairs), default=0.0),
                "sent_bps": 8 * (sent - last_bytes) / (now - last_at),
            })
            last_bytes, last_at = sent, now
        return {"samples": samples}
    finally:
        if task is not None:
            task.cancel()
        await rooms.close()

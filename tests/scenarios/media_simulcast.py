"""Simulcast through roost with the official SDK: the subscriber's chosen quality picks the layer.

Alice publishes a 1280x720 camera with simulcast (rids q/h/f); Bob watches it, asks for
LOW quality and gets the 320x180 layer, then asks for HIGH and gets 1280x720 back. The
frames Bob decodes show which layer roost forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import numpy as np
from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms
from tests.helpers.wait import until

WIDTH, HEIGHT = 1280, 720


async def _camera(source: rtc.VideoSource) -> None:
    """A moving pattern (so every layer keeps producing real frames) at 15 fps."""
    base = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    base[..., 3] = 255
    n = 0
    while True:
        frame = base.copy()
        x = (n * 16) % WIDTH
        frame[:, x : x + 64, 0] = 255
        frame[:, :, 2] = (n * 4) % 256
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA,
                                            frame.tobytes()))
        n += 1
        await asyncio.sleep(1 / 15)


class Screen:
    """Bob's decoded frames of one remote video track: the latest size."""

    def __init__(self, track: rtc.Track) -> None:
        self.stream = rtc.VideoStream(track)
        self.sizes: list[tuple[float, int, int]] = []
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        async for event in self.stream:
            self.sizes.append((time.monotonic(), event.frame.width, event.frame.height))

    async def wait_size(self, width: int, timeout: float) -> tuple[int, int]:
        """Until three or more of the last five frames came since the call, all `width` wide."""
        since = time.monotonic()

        def steady() -> tuple[int, int] | None:
            recent = [(w, h) for t, w, h in self.sizes[-5:] if t >= since]
            if len(recent) >= 3 and all(w == width for w, _ in recent):
                return recent[-1]
            return None

        def seen() -> str:
            sizes = sorted({(w, h) for _, w, h in self.sizes[-30:]})
            return f"{width}-wide frames; recent sizes {sizes}"

        return await until(steady, timeout, seen, interval=0.05)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self.stream.aclose()


async def quality_selects_the_layer(srv: dict[str, str]) -> dict[str, Any]:
    rooms = Rooms(srv)
    screen: Screen | None = None
    try:
        alice = await rooms.join("alice", "simulcast")
        bob = rooms.new()
        events = EventLog(bob, "track_subscribed", label="bob")
        await rooms.join("bob", "simulcast", room=bob)
        source = rtc.VideoSource(WIDTH, HEIGHT)
        feeding = asyncio.ensure_future(_camera(source))
        try:
            track = rtc.LocalVideoTrack.create_video_track("camera", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA,
                                              simulcast=True)
            await asyncio.wait_for(alice.local_participant.publish_track(track, options), 15)
            remote, publication, _ = await events.wait("track_subscribed", timeout=15)
            assert publication.simulcasted
            screen = Screen(remote)
            high = await screen.wait_size(WIDTH, timeout=25)
            publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_LOW)
            low = await screen.wait_size(WIDTH // 4, timeout=15)
            publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_HIGH)
            back = await screen.wait_size(WIDTH, timeout=15)
        finally:
            feeding.cancel()
        return {"high": list(high), "low": list(low), "back": list(back)}
    finally:
        if screen is not None:
            await screen.close()
        await rooms.close()

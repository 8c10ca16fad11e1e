"""Audio and video tracks: published by one participant, subscribed, heard and seen by another."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms
from tests.helpers.signals import dominant_hz, first_frames, mean_rgb

ROOM = "media"
TRACK_EVENTS = (
    "participant_connected",
    "track_published",
    "track_subscribed",
    "track_muted",
    "track_unmuted",
    "track_unpublished",
    "track_unsubscribed",
)
SAMPLE_RATE = 48_000
TONE_HZ = 440.0


@contextlib.asynccontextmanager
async def _background(coro: Any) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _tone(source: rtc.AudioSource) -> None:
    """Feed a 440 Hz tone in 10 ms frames; capture_frame paces it to real time."""
    n = SAMPLE_RATE // 100
    t = 0
    while True:
        x = np.arange(t, t + n) / SAMPLE_RATE
        samples = (np.sin(2 * np.pi * TONE_HZ * x) * 0.5 * 32767).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, n))
        t += n


async def _colour(source: rtc.VideoSource, width: int, height: int) -> None:
    """A solid red picture at 15 frames per second (a frame clock, not synchronisation)."""
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., 0] = 230
    rgba[..., 3] = 255
    frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, rgba.tobytes())
    while True:
        source.capture_frame(frame)
        await asyncio.sleep(1 / 15)


async def heard_pitch(remote: rtc.Track, timeout: float = 15) -> float:
    """Dominant frequency of the first half second of loud audio on `remote`."""
    stream = rtc.AudioStream(remote, sample_rate=SAMPLE_RATE, num_channels=1)
    heard: list[np.ndarray] = []

    async def listen() -> None:
        loud = 0
        async for event in stream:
            data = np.frombuffer(event.frame.data, dtype=np.int16)
            if np.sqrt(np.mean(data.astype(np.float64) ** 2)) > 1000:
                heard.append(data.copy())
                loud += len(data)
                if loud >= SAMPLE_RATE // 2:
                    return

    try:
        await asyncio.wait_for(listen(), timeout)
    finally:
        await stream.aclose()
    return dominant_hz(np.concatenate(heard), SAMPLE_RATE)


async def audio_track_is_heard(srv: dict[str, str]) -> dict[str, Any]:
    """Alice publishes a microphone playing 440 Hz; Bob subscribes and hears 440 Hz."""
    rooms = Rooms(srv)
    try:
        alice = await rooms.join("alice", ROOM)
        bob = rooms.new()
        bob_events = EventLog(bob, *TRACK_EVENTS, label="bob")
        await rooms.join("bob", ROOM, room=bob)

        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await asyncio.wait_for(
            alice.local_participant.publish_track(track, options), 15
        )
        assert publication.sid.startswith("TR_"), publication.sid

        async with _background(_tone(source)):
            remote, remote_pub, publisher = await bob_events.wait("track_subscribed", timeout=15)
            assert publisher.identity == "alice"
            assert remote_pub.sid == publication.sid
            assert remote.kind == rtc.TrackKind.KIND_AUDIO
            assert remote_pub.source == rtc.TrackSource.SOURCE_MICROPHONE

            pitch = await heard_pitch(remote)
            assert abs(pitch - TONE_HZ) < 15, f"heard {pitch:.0f} Hz instead of {TONE_HZ:.0f} Hz"

            track.mute()
            await bob_events.wait("track_muted", timeout=10)
            track.unmute()
            await bob_events.wait("track_unmuted", timeout=10)

        await asyncio.wait_for(alice.local_participant.unpublish_track(publication.sid), 10)
        await bob_events.wait("track_unpublished", timeout=10)
        assert remote_pub.sid not in bob.remote_participants["alice"].track_publications
        return {"pitch_hz": round(pitch, 1)}
    finally:
        await rooms.close()


async def video_track_is_seen(srv: dict[str, str]) -> dict[str, Any]:
    """Alice publishes a red 320x240 camera; Bob subscribes and sees red 320x240 frames."""
    width, height = 320, 240
    rooms = Rooms(srv)
    try:
        alice = await rooms.join("alice", ROOM)
        bob = rooms.new()
        bob_events = EventLog(bob, *TRACK_EVENTS, label="bob")
        await rooms.join("bob", ROOM, room=bob)

        source = rtc.VideoSource(width, height)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        async with _background(_colour(source, width, height)):
            publication = await asyncio.wait_for(
                alice.local_participant.publish_track(track, options), 15
            )
            remote, remote_pub, publisher = await bob_events.wait("track_subscribed", timeout=15)
            assert (publisher.identity, remote_pub.sid) == ("alice", publication.sid)
            assert remote.kind == rtc.TrackKind.KIND_VIDEO

            stream = rtc.VideoStream(remote, format=rtc.VideoBufferType.RGBA)
            frames = await first_frames(stream, 10, timeout=20)
        last = frames[-1]
        assert (last.width, last.height) == (width, height), (last.width, last.height)
        r, g, b = mean_rgb(last)
        assert r > 150 and g < 80 and b < 80, f"expected red, mean RGB = {r:.0f},{g:.0f},{b:.0f}"
        return {"frames": len(frames), "rgb": [round(r), round(g), round(b)]}
    finally:
        await rooms.close()

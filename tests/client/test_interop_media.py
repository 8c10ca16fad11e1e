"""roost.client ↔ official SDK media through roost: a tone is heard and a colour is seen,
in both directions, and between two roost.client participants."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from tests.client.helpers import Recorder, joined, wait_until, with_official
from tests.helpers.server import RoostServer
from tests.helpers.signals import dominant_hz, first_frames, mean_rgb

from roost import client as rc

pytestmark = pytest.mark.timeout(120)
RATE = 48_000


async def _tone(source: rc.AudioSource, hz: float) -> None:
    n, t = RATE // 100, 0
    while True:
        x = np.arange(t, t + n) / RATE
        samples = (np.sin(2 * np.pi * hz * x) * 0.5 * 32767).astype(np.int16)
        await source.capture_frame(rc.AudioFrame(samples.tobytes(), RATE, 1, n))
        t += n


async def _colour(source: rc.VideoSource, rgb: tuple[int, int, int]) -> None:
    rgba = np.zeros((source.height, source.width, 4), dtype=np.uint8)
    rgba[..., :3], rgba[..., 3] = rgb, 255
    frame = rc.VideoFrame(source.width, source.height, rc.VideoBufferType.RGBA, rgba.tobytes())
    while True:
        source.capture_frame(frame)
        await asyncio.sleep(1 / 15)


async def _pitch(track: rc.Track, seconds: float = 0.5) -> float:
    stream = rc.AudioStream(track, sample_rate=RATE, num_channels=1)
    heard: list[np.ndarray] = []
    try:
        async for event in stream:
            data = np.frombuffer(event.frame.data, dtype=np.int16)
            if np.sqrt(np.mean(data.astype(np.float64) ** 2)) > 1000:
                heard.append(data.copy())
                if sum(len(h) for h in heard) >= RATE * seconds:
                    break
    finally:
        await stream.aclose()
    return dominant_hz(np.concatenate(heard), RATE)


async def _picture(track: rc.Track, frames: int = 10) -> tuple[int, int, tuple[float, ...]]:
    """Size and mean RGB of the last of the first `frames` frames of `track` (within 20 s)."""
    stream = rc.VideoStream(track, format=rc.VideoBufferType.RGBA)
    last = (await first_frames(stream, frames, timeout=20))[-1]
    return last.width, last.height, mean_rgb(last)


async def _publish(room: rc.Room, kind: str) -> tuple[rc.LocalTrackPublication,
                                                       asyncio.Task[None]]:
    if kind == "audio":
        source = rc.AudioSource(RATE, 1)
        track: rc.LocalTrack = rc.LocalAudioTrack.create_audio_track("tone", source)
        feeder = asyncio.ensure_future(_tone(source, 440))
        opts = rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_MICROPHONE)
    else:
        vsource = rc.VideoSource(320, 240)
        track = rc.LocalVideoTrack.create_video_track("camera", vsource)
        feeder = asyncio.ensure_future(_colour(vsource, (230, 0, 0)))
        opts = rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_CAMERA)
    publication = await asyncio.wait_for(room.local_participant.publish_track(track, opts), 15)
    return publication, feeder


async def test_audio_both_ways_with_the_official_sdk(server: RoostServer, tmp_path: Path) -> None:
    async with with_official(server, "interop-audio", tmp_path) as (room, peer):
        events = Recorder(room, "track_subscribed")
        sent = await peer.call("publish_tone", hz=660.0)
        (track, publication, participant) = await events.wait("track_subscribed", timeout=20)
        assert (participant.identity, publication.sid) == ("official", sent["sid"])
        assert publication.source == rc.TrackSource.SOURCE_MICROPHONE
        assert track.kind == rc.TrackKind.KIND_AUDIO
        assert abs(await asyncio.wait_for(_pitch(track), 20) - 660) < 15

        publication, feeder = await _publish(room, "audio")
        try:
            heard = await peer.call("hear")
        finally:
            feeder.cancel()
        assert abs(heard["pitch_hz"] - 440) < 15, heard


async def test_video_both_ways_with_the_official_sdk(server: RoostServer, tmp_path: Path) -> None:
    async with with_official(server, "interop-video", tmp_path) as (room, peer):
        events = Recorder(room, "track_subscribed")
        await peer.call("publish_colour", width=320, height=240, rgb=[0, 0, 230])
        (track, _pub, _) = await events.wait("track_subscribed", timeout=20)
        assert track.kind == rc.TrackKind.KIND_VIDEO
        width, height, (r, g, b) = await _picture(track)
        assert (width, height) == (320, 240)
        assert b > 150 and r < 80 and g < 80, (r, g, b)

        _publication, feeder = await _publish(room, "video")
        try:
            seen = await peer.call("see")
        finally:
            feeder.cancel()
        assert (seen["width"], seen["height"]) == (320, 240)
        r, g, b = seen["rgb"]
        assert r > 150 and g < 80 and b < 80, seen


async def test_media_between_two_roost_clients(server: RoostServer) -> None:
    async with joined(server, "alice", "media-rr") as alice, \
            joined(server, "bob", "media-rr") as bob:
        events = Recorder(bob, "track_subscribed", "track_muted", "track_unmuted",
                          "track_unpublished")
        await wait_until(lambda: "alice" in bob.remote_participants, what="alice")
        audio, tone = await _publish(alice, "audio")
        video, colour = await _publish(alice, "video")
        try:
            tracks = {}
            for _ in range(2):
                (track, publication, _) = await events.wait(
                    "track_subscribed", lambda t, p, _p: p.sid not in tracks, timeout=20)
                tracks[publication.sid] = track
            assert abs(await asyncio.wait_for(_pitch(tracks[audio.sid]), 20) - 440) < 15
            width, height, (r, g, b) = await _picture(tracks[video.sid])
            assert (width, height) == (320, 240) and r > 150 and g < 80 and b < 80
            audio.track.mute()
            await events.wait("track_muted", lambda p, pub: pub.sid == audio.sid)
            audio.track.unmute()
            await events.wait("track_unmuted", lambda p, pub: pub.sid == audio.sid)
            await alice.local_participant.unpublish_track(video.sid)
            await events.wait("track_unpublished", lambda pub, p: pub.sid == video.sid)
        finally:
            tone.cancel()
            colour.cancel()


async def test_h264_video_between_two_roost_clients(server: RoostServer) -> None:
    async with joined(server, "alice", "media-h264") as alice, \
            joined(server, "bob", "media-h264") as bob:
        events = Recorder(bob, "track_subscribed")
        source = rc.VideoSource(320, 240)
        track = rc.LocalVideoTrack.create_video_track("camera", source)
        feeder = asyncio.ensure_future(_colour(source, (0, 200, 0)))
        try:
            await alice.local_participant.publish_track(track, rc.TrackPublishOptions(
                source=rc.TrackSource.SOURCE_CAMERA, video_codec=rc.VideoCodec.H264))
            (remote, publication, _) = await events.wait("track_subscribed", timeout=20)
            assert publication.mime_type.lower() == "video/h264"
            width, height, (r, g, b) = await _picture(remote, 5)
            assert (width, height) == (320, 240) and g > 150 and r < 80 and b < 80
        finally:
            feeder.cancel()

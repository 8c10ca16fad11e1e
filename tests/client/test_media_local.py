"""roost.client media without a server: frames, sources, and a direct aiortc peer pair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from tests.helpers.signals import dominant_hz, first_frames, mean_rgb

from roost import client as rc
from roost.client.track import RemoteAudioTrack, RemoteVideoTrack
from roost.client.types import TrackKind

pytestmark = pytest.mark.timeout(60)


def _solid(width: int, height: int, rgb: tuple[int, int, int]) -> rc.VideoFrame:
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = 255
    return rc.VideoFrame(width, height, rc.VideoBufferType.RGBA, rgba.tobytes())


def test_video_frames_convert_between_layouts() -> None:
    frame = _solid(64, 48, (230, 20, 40))
    i420 = frame.convert(rc.VideoBufferType.I420)
    assert len(i420.data) == 64 * 48 * 3 // 2
    assert len(i420.get_plane(0) or b"") == 64 * 48 and len(i420.get_plane(2) or b"") == 32 * 24
    back = np.frombuffer(i420.convert(rc.VideoBufferType.RGBA).data, dtype=np.uint8)
    r, g, b = (float(back.reshape(48, 64, 4)[..., i].mean()) for i in range(3))
    assert abs(r - 230) < 8 and abs(g - 20) < 8 and abs(b - 40) < 8
    bgra = np.frombuffer(frame.convert(rc.VideoBufferType.BGRA).data, dtype=np.uint8)
    assert tuple(bgra[:4]) == (40, 20, 230, 255)
    odd = _solid(33, 17, (0, 255, 0)).convert(rc.VideoBufferType.I420)
    assert (odd.width, odd.height, len(odd.data)) == (33, 17, 33 * 17 + 2 * 17 * 9)


def test_audio_frames_resample_and_combine() -> None:
    n = 480
    tone = (np.sin(2 * np.pi * 440 * np.arange(n) / 48_000) * 10_000).astype(np.int16)
    frame = rc.AudioFrame(tone.tobytes(), 48_000, 1, n)
    assert frame.duration == pytest.approx(0.01)
    resampler = rc.AudioResampler(48_000, 16_000, num_channels=1)
    out = [f for _ in range(10) for f in resampler.push(frame)] + resampler.flush()
    combined = rc.combine_audio_frames(out)
    assert combined.sample_rate == 16_000
    assert abs(combined.samples_per_channel - 1600) <= 64
    stereo = frame.remix_and_resample(48_000, 2)
    assert stereo.num_channels == 2
    assert frame.to_wav_bytes()[:4] == b"RIFF"


async def test_audio_source_queues_and_clears() -> None:
    source = rc.AudioSource(48_000, 1, queue_size_ms=100)
    await source.capture_frame(rc.AudioFrame.create(48_000, 1, 2_400))  # 50 ms
    assert source.queued_duration == pytest.approx(0.05)
    blocked = asyncio.ensure_future(source.capture_frame(rc.AudioFrame.create(48_000, 1, 4_800)))
    await asyncio.sleep(0.05)  # a wait for nothing: the capture must stay blocked
    assert not blocked.done()  # 150 ms queued > 100 ms: waits for room
    source.clear_queue()
    await asyncio.wait_for(blocked, 1)
    assert source.queued_duration == 0
    await asyncio.wait_for(source.wait_for_playout(), 1)


@contextlib.asynccontextmanager
async def _pair(track: rc.LocalTrack) -> AsyncIterator[RemoteAudioTrack | RemoteVideoTrack]:
    """Send `track` from one aiortc peer connection to another; yield the remote track."""
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    arrived: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    receiver.on("track", lambda t: arrived.set_result(t) if not arrived.done() else None)
    sender.addTrack(track.rtc_track)
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    remote_rtc = await asyncio.wait_for(arrived, 10)
    from livekit.protocol import models

    info = models.TrackInfo(sid="TR_test", name="t", type=(
        models.TrackType.VIDEO if track.kind == TrackKind.KIND_VIDEO else models.TrackType.AUDIO))
    cls = RemoteVideoTrack if track.kind == TrackKind.KIND_VIDEO else RemoteAudioTrack
    remote = cls(info, remote_rtc)  # type: ignore[arg-type]
    remote._start()
    try:
        yield remote
    finally:
        remote._stop()
        await sender.close()
        await receiver.close()


async def test_a_tone_survives_opus_through_aiortc() -> None:
    source = rc.AudioSource(48_000, 1)
    track = rc.LocalAudioTrack.create_audio_track("mic", source)

    async def tone() -> None:
        n, t = 480, 0
        while True:
            x = np.arange(t, t + n) / 48_000
            samples = (np.sin(2 * np.pi * 440 * x) * 0.5 * 32767).astype(np.int16)
            await source.capture_frame(rc.AudioFrame(samples.tobytes(), 48_000, 1, n))
            t += n

    feeder = asyncio.ensure_future(tone())
    try:
        async with _pair(track) as remote:
            stream = rc.AudioStream(remote, sample_rate=24_000, num_channels=1,
                                    frame_size_ms=20)
            heard: list[np.ndarray] = []
            async for event in stream:
                assert event.frame.samples_per_channel == 480
                data = np.frombuffer(event.frame.data, dtype=np.int16)
                if np.sqrt(np.mean(data.astype(np.float64) ** 2)) > 1000:
                    heard.append(data.copy())
                if len(heard) >= 25:
                    break
            await stream.aclose()
    finally:
        feeder.cancel()
    assert abs(dominant_hz(np.concatenate(heard), 24_000) - 440) < 15


async def test_a_red_picture_survives_vp8_through_aiortc() -> None:
    source = rc.VideoSource(320, 240)
    track = rc.LocalVideoTrack.create_video_track("camera", source)
    red = _solid(320, 240, (230, 0, 0))

    async def frames() -> None:
        while True:
            source.capture_frame(red)
            await asyncio.sleep(1 / 15)

    feeder = asyncio.ensure_future(frames())
    try:
        async with _pair(track) as remote:
            stream = rc.VideoStream(remote, format=rc.VideoBufferType.RGBA)
            seen = await first_frames(stream, 5, timeout=20)
    finally:
        feeder.cancel()
    last = seen[-1]
    assert (last.width, last.height) == (320, 240)
    r, g, b = mean_rgb(last)
    assert r > 150 and g < 80 and b < 80, (r, g, b)

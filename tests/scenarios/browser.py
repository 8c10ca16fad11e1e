"""The Python SDK's side of the browser tests: a participant that meets the JS SDK in a room.

Each scenario runs in a child process (`run_scenario`) while tests/test_browser.py drives
headless Chromium; the two sides meet through room events, and data packets serve as barriers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms
from tests.scenarios.media import SAMPLE_RATE, _background, _colour, _tone

IDENTITY = "python"
EVENTS = ("participant_connected", "data_received", "track_subscribed")


async def _join(
    srv: dict[str, str], room_name: str, browser: str
) -> tuple[Rooms, rtc.Room, EventLog]:
    rooms = Rooms(srv)
    room = rooms.new()
    events = EventLog(room, *EVENTS, label=IDENTITY)
    await rooms.join(IDENTITY, room_name, room=room)
    if browser not in room.remote_participants:
        await events.wait("participant_connected", lambda p: p.identity == browser, timeout=20)
    return rooms, room, events


async def data_with_browser(srv: dict[str, str], room_name: str, browser: str) -> dict[str, Any]:
    """Wait for the browser's greeting, check who sent it, answer, wait for its ack."""
    rooms, room, events = await _join(srv, room_name, browser)
    try:
        (packet,) = await events.wait("data_received", lambda p: p.topic == "greeting", timeout=20)
        greeting = {
            "text": packet.data.decode(),
            "topic": packet.topic,
            "reliable": packet.kind == rtc.DataPacketKind.KIND_RELIABLE,
            "identity": packet.participant.identity if packet.participant else None,
            "sid": packet.participant.sid if packet.participant else None,
            "browser_sid": room.remote_participants[browser].sid,
        }
        await room.local_participant.publish_data(
            b"hello from python", reliable=True, topic="reply", destination_identities=[browser]
        )
        await events.wait(
            "data_received", lambda p: p.topic == "ack" and p.data == b"got it", timeout=15
        )
        return greeting
    finally:
        await rooms.close()


async def receive_browser_media(
    srv: dict[str, str], room_name: str, browser: str
) -> dict[str, Any]:
    """Subscribe to the browser's camera and microphone; count decoded frames of each."""
    rooms, _room, events = await _join(srv, room_name, browser)
    try:
        got: dict[int, rtc.Track] = {}
        for _ in range(2):
            track, _pub, _who = await events.wait(
                "track_subscribed",
                lambda t, _p, who: who.identity == browser and t.kind not in got,
                timeout=20,
            )
            got[track.kind] = track

        video_stream = rtc.VideoStream(got[rtc.TrackKind.KIND_VIDEO])
        audio_stream = rtc.AudioStream(
            got[rtc.TrackKind.KIND_AUDIO], sample_rate=SAMPLE_RATE, num_channels=1
        )
        sizes: list[tuple[int, int]] = []
        peak = 0.0
        audio_frames = 0

        async def watch() -> None:
            async for event in video_stream:
                sizes.append((event.frame.width, event.frame.height))
                if len(sizes) >= 10:
                    return

        async def listen() -> None:
            nonlocal peak, audio_frames
            async for event in audio_stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
                peak = max(peak, float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0)
                audio_frames += 1
                if audio_frames >= 150:  # 1.5 s: Chromium's fake microphone beeps once a second
                    return

        try:
            await asyncio.wait_for(asyncio.gather(watch(), listen()), 15)
        finally:
            await video_stream.aclose()
            await audio_stream.aclose()
        return {
            "video_frames": len(sizes),
            "video_size": list(sizes[-1]),
            "audio_frames": audio_frames,
            "audio_peak_rms": round(peak),
        }
    finally:
        await rooms.close()


async def publish_media_to_browser(
    srv: dict[str, str], room_name: str, browser: str
) -> dict[str, Any]:
    """Publish a 440 Hz microphone and a red camera until the browser says it saw both."""
    width, height = 320, 240
    rooms, room, events = await _join(srv, room_name, browser)
    try:
        audio_source = rtc.AudioSource(SAMPLE_RATE, 1)
        video_source = rtc.VideoSource(width, height)
        mic = rtc.LocalAudioTrack.create_audio_track("mic", audio_source)
        camera = rtc.LocalVideoTrack.create_video_track("camera", video_source)
        async with (
            _background(_tone(audio_source)),
            _background(_colour(video_source, width, height)),
        ):
            sids = {}
            for name, track, source in (
                ("microphone", mic, rtc.TrackSource.SOURCE_MICROPHONE),
                ("camera", camera, rtc.TrackSource.SOURCE_CAMERA),
            ):
                options = rtc.TrackPublishOptions(source=source)
                publication = await asyncio.wait_for(
                    room.local_participant.publish_track(track, options), 15
                )
                sids[name] = publication.sid
            await events.wait("data_received", lambda p: p.topic == "seen", timeout=25)
        return {"sids": sids}
    finally:
        await rooms.close()

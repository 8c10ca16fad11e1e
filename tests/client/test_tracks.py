"""Track control with roost.client on both ends: manual subscription and active speakers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tests.client.helpers import Recorder, joined, wait_until
from tests.helpers.server import RoostServer

from roost import client as rc

pytestmark = pytest.mark.timeout(90)
RATE = 48_000


async def _tone(source: rc.AudioSource) -> None:
    n, t = 480, 0
    while True:
        x = np.arange(t, t + n) / RATE
        samples = (np.sin(2 * np.pi * 440 * x) * 0.5 * 32767).astype(np.int16)
        await source.capture_frame(rc.AudioFrame(samples.tobytes(), RATE, 1, n))
        t += n


async def _loud_frames(track: rc.Track, count: int) -> int:
    stream = rc.AudioStream(track, sample_rate=RATE)
    loud = 0
    try:
        async for event in stream:
            data = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
            loud += np.sqrt(np.mean(data**2)) > 1000
            if loud >= count:
                break
    finally:
        await stream.aclose()
    return loud


async def test_manual_subscription_and_active_speakers(server: RoostServer) -> None:
    manual = rc.RoomOptions(auto_subscribe=False)
    async with joined(server, "alice", "tracks") as alice, \
            joined(server, "bob", "tracks", options=manual) as bob:
        events = Recorder(bob, "track_published", "track_subscribed", "track_unsubscribed",
                          "active_speakers_changed")
        source = rc.AudioSource(RATE, 1)
        track = rc.LocalAudioTrack.create_audio_track("mic", source)
        publication = await alice.local_participant.publish_track(
            track, rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_MICROPHONE))
        # silence flows until the tone starts: speaker changes are deltas sent to subscribers
        # only, so bob must be subscribed before alice starts to speak
        feeder: asyncio.Future[None] | None = None
        try:
            (remote_pub, who) = await events.wait("track_published", timeout=15)
            assert (remote_pub.sid, who.identity) == (publication.sid, "alice")
            assert remote_pub.kind == rc.TrackKind.KIND_AUDIO and not remote_pub.subscribed
            await asyncio.sleep(1.0)  # a wait for nothing: no subscription may come
            assert events.all("track_subscribed") == []  # auto_subscribe is off

            remote_pub.set_subscribed(True)
            (remote, pub, _) = await events.wait("track_subscribed", timeout=15)
            assert pub is remote_pub and remote_pub.subscribed
            feeder = asyncio.ensure_future(_tone(source))
            assert await asyncio.wait_for(_loud_frames(remote, 10), 15) == 10
            await events.wait(
                "active_speakers_changed", lambda s: any(p.identity == "alice" for p in s),
                timeout=15)
            assert bob.remote_participants["alice"].is_speaking

            remote_pub.set_subscribed(False)
            (gone, pub, _) = await events.wait("track_unsubscribed", timeout=15)
            assert gone is remote and not remote_pub.subscribed and remote_pub.track is None
        finally:
            if feeder is not None:
                feeder.cancel()


async def test_audio_stream_from_participant_binds_to_the_next_track(server: RoostServer) -> None:
    async with joined(server, "alice", "tracks-p") as alice, \
            joined(server, "bob", "tracks-p") as bob:
        await wait_until(lambda: "alice" in bob.remote_participants, what="alice")
        stream = rc.AudioStream.from_participant(
            participant=bob.remote_participants["alice"],
            track_source=rc.TrackSource.SOURCE_MICROPHONE, sample_rate=16_000)
        source = rc.AudioSource(RATE, 1)
        track = rc.LocalAudioTrack.create_audio_track("mic", source)
        await alice.local_participant.publish_track(
            track, rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_MICROPHONE))
        feeder = asyncio.ensure_future(_tone(source))
        try:
            event = await asyncio.wait_for(anext(stream), 20)
            assert event.frame.sample_rate == 16_000 and event.frame.num_channels == 1
        finally:
            feeder.cancel()
            await stream.aclose()

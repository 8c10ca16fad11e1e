"""Media through roost with the official SDK: tones heard whole and on the right tracks,
selective subscription, subscription permissions, a six-way audio call, H.264 video.

Every publisher plays a known frequency; every listener keeps the decoded PCM of one
remote track and reports its dominant frequency and how much of the tone it heard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms
from tests.helpers.signals import dominant_hz, first_frames, mean_rgb
from tests.helpers.wait import until, until_async

SAMPLE_RATE = 48_000
FRAME = SAMPLE_RATE // 100  # 10 ms
LOUD_RMS = 1000.0
EVENTS = (
    "track_published",
    "track_subscribed",
    "track_unsubscribed",
    "track_unpublished",
    "track_subscription_permission_changed",
)


def robust_hz(samples: np.ndarray, chunk: int = SAMPLE_RATE // 10) -> float:
    """Median of the dominant frequency of 100 ms chunks: a few glitches do not move it."""
    starts = range(0, len(samples) - chunk + 1, chunk)
    pitches = [dominant_hz(samples[i : i + chunk], SAMPLE_RATE) for i in starts]
    return float(np.median(pitches)) if pitches else 0.0


class Tone:
    """A microphone track that plays silence, or `hz` for the length of a burst."""

    def __init__(self, hz: float, frame_ms: int = 10) -> None:
        self.hz = hz
        self.frame = SAMPLE_RATE * frame_ms // 1000
        self.source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=200)
        self.track = rtc.LocalAudioTrack.create_audio_track(f"tone-{int(hz)}", self.source)
        self._left = 0  # tone frames still to play
        self._t = 0
        self._task: asyncio.Task[None] | None = None

    async def publish(self, room: rtc.Room) -> rtc.LocalTrackPublication:
        self._task = asyncio.ensure_future(self._feed())
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        return await asyncio.wait_for(room.local_participant.publish_track(self.track, options),
                                      15)

    def burst(self, seconds: float) -> None:
        self._left = round(seconds * SAMPLE_RATE / self.frame)

    @property
    def playing(self) -> bool:
        """Whether frames of the current burst are still to be captured."""
        return self._left > 0

    async def _feed(self) -> None:
        n = self.frame
        silence = rtc.AudioFrame(bytes(2 * n), SAMPLE_RATE, 1, n)
        while True:
            if self._left > 0:
                x = np.arange(self._t, self._t + n) / SAMPLE_RATE
                samples = (np.sin(2 * np.pi * self.hz * x) * 0.5 * 32767).astype(np.int16)
                frame = rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, n)
                self._left -= 1
            else:
                frame = silence
            self._t += n
            await self.source.capture_frame(frame)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class Ear:
    """Decoded audio of one remote track; counts 10 ms frames that carry the tone."""

    def __init__(self, track: rtc.Track, label: str = "", frame_ms: int = 10) -> None:
        self.label = label
        self.track = track
        self.stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1,
                                      frame_size_ms=frame_ms)
        self.loud: list[np.ndarray] = []
        self.frames = 0
        self._task = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        async for event in self.stream:
            data = np.frombuffer(event.frame.data, dtype=np.int16)
            self.frames += 1
            blocks = data[: len(data) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
            rms = np.sqrt(np.mean(blocks**2, axis=1))
            for block, level in zip(blocks, rms, strict=True):
                if level > LOUD_RMS:
                    self.loud.append(block.astype(np.int16))

    @property
    def loud_seconds(self) -> float:
        return sum(len(f) for f in self.loud) / SAMPLE_RATE

    @property
    def pitch(self) -> float:
        if not self.loud:
            return 0.0
        return robust_hz(np.concatenate(self.loud[-200:]))

    def reset(self) -> None:
        self.loud = []

    async def packets(self) -> int:
        """RTP packets the SDK has received on the track (its inbound-rtp stats)."""
        return sum(s.inbound_rtp.received.packets_received for s in await self.track.get_stats()
                   if s.WhichOneof("stats") == "inbound_rtp")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self.stream.aclose()


async def _wait_heard(ears: list[Ear], seconds: float, timeout: float) -> None:
    """Until each ear heard `seconds` of tone, or `timeout` (then `_check` tells what it heard)."""
    with contextlib.suppress(TimeoutError):
        await until(lambda: all(e.loud_seconds >= seconds for e in ears), timeout, interval=0.05)


async def _settled(ears: list[Ear], packets: int = 25, timeout: float = 10) -> None:
    """Until each ear's track has received `packets` RTP packets (half a second of Opus): the
    subscription is settled and silence flows, so a burst that starts now is heard whole."""
    async def received() -> bool:
        return all([await e.packets() >= packets for e in ears])

    await until_async(received, timeout, f"{packets} packets on every subscription",
                      interval=0.1)


def _check(ear: Ear, hz: float) -> None:
    assert abs(ear.pitch - hz) < 15, f"{ear.label}: heard {ear.pitch:.0f} Hz, expected {hz:.0f}"


async def tone_is_heard_whole(srv: dict[str, str]) -> dict[str, Any]:
    """A 3 s 440 Hz burst from Alice reaches Bob at 440 Hz for at least 90 % of its length.

    Bob also sees Alice become the active speaker while it plays (roost reads the audio
    level header extension), and stop being one after it.
    """
    rooms = Rooms(srv)
    ears: list[Ear] = []
    tone = Tone(440)
    try:
        alice = await rooms.join("alice", "tone")
        bob = rooms.new()
        events = EventLog(bob, *EVENTS, "active_speakers_changed", label="bob")
        await rooms.join("bob", "tone", room=bob)
        await tone.publish(alice)
        track, _, _ = await events.wait("track_subscribed", timeout=15)
        ear = Ear(track, "bob<-alice")
        ears.append(ear)
        await _settled([ear])
        ear.reset()
        burst = 3.0
        tone.burst(burst)
        await events.wait("active_speakers_changed",
                          lambda speakers: [p.identity for p in speakers] == ["alice"],
                          timeout=burst)

        def over() -> bool:  # heard, and the speaker update after the tone has come
            speakers = events.all("active_speakers_changed")[-1][0]
            return ear.loud_seconds >= 0.9 * burst and speakers == []

        with contextlib.suppress(TimeoutError):  # the assertions below say what was missing
            await until(over, burst + 3)
        heard = ear.loud_seconds / burst
        assert heard >= 0.9, f"heard {ear.loud_seconds:.2f} s of a {burst:.1f} s tone"
        _check(ear, 440)
        last_speakers = events.all("active_speakers_changed")[-1][0]
        assert last_speakers == [], f"still speaking after the tone: {last_speakers}"
        return {"pitch_hz": round(ear.pitch, 1), "heard_fraction": round(heard, 3)}
    finally:
        for e in ears:
            await e.close()
        await tone.close()
        await rooms.close()


async def publishers_reach_one_listener(
    srv: dict[str, str], room: str, listener: str, pitches: dict[str, float], *,
    subscribe_timeout: float, heard_timeout: float,
    observe: Callable[[rtc.Room], Awaitable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Each publisher sends its tone; `listener` hears each one on that publisher's track.

    The result maps each publisher to the pitch heard; `observe(listener's room)`, if given,
    adds what it reports once every tone was heard."""
    rooms = Rooms(srv)
    tones = {who: Tone(hz) for who, hz in pitches.items()}
    ears: dict[str, Ear] = {}
    try:
        listening = rooms.new()
        events = EventLog(listening, *EVENTS, label=listener)
        await rooms.join(listener, room, room=listening)
        for identity, tone in tones.items():
            await tone.publish(await rooms.join(identity, room))
        for identity in tones:
            track, _, _ = await events.wait(
                "track_subscribed", lambda t, p, who, i=identity: who.identity == i,
                timeout=subscribe_timeout)
            ears[identity] = Ear(track, f"{listener}<-{identity}")
        for tone in tones.values():
            tone.burst(2.0)
        await _wait_heard(list(ears.values()), 1.5, timeout=heard_timeout)
        for identity, ear in ears.items():
            _check(ear, tones[identity].hz)
        result: dict[str, Any] = {who: round(e.pitch, 1) for who, e in ears.items()}
        if observe is not None:
            result.update(await observe(listening))
        return result
    finally:
        for e in ears.values():
            await e.close()
        for tone in tones.values():
            await tone.close()
        await rooms.close()


async def two_publishers_reach_a_third(srv: dict[str, str]) -> dict[str, Any]:
    """Alice (440 Hz) and Bob (660 Hz) publish; Carol hears each on the right track."""
    return await publishers_reach_one_listener(
        srv, "pair", "carol", {"alice": 440, "bob": 660},
        subscribe_timeout=15, heard_timeout=10)


async def selective_subscription(srv: dict[str, str]) -> dict[str, Any]:
    """Carol (auto_subscribe off) gets a track only after set_subscribed(True).

    She takes Alice's track, drops it, then takes Bob's: roost puts Bob's track on the
    m-line Alice's left inactive, and Carol hears Bob's pitch on it.
    """
    rooms = Rooms(srv)
    tones = {"alice": Tone(440), "bob": Tone(660)}
    ears: list[Ear] = []
    try:
        carol = rooms.new()
        events = EventLog(carol, *EVENTS, label="carol")
        await rooms.join("carol", "pick", room=carol, options=rtc.RoomOptions(auto_subscribe=False))
        published = {who: await tone.publish(await rooms.join(who, "pick"))
                     for who, tone in tones.items()}
        for tone in tones.values():
            tone.burst(60)
        await events.wait("track_published", lambda p, who: who.identity == "bob", timeout=15)
        await asyncio.sleep(1.5)  # a wait for nothing: no subscription may come
        assert events.count("track_subscribed") == 0, "subscribed although auto_subscribe=False"

        def remote(who: str) -> rtc.RemoteTrackPublication:
            return carol.remote_participants[who].track_publications[published[who].sid]

        remote("alice").set_subscribed(True)
        track, _, _ = await events.wait("track_subscribed", timeout=10)
        ears.append(Ear(track, "carol<-alice"))
        await _wait_heard(ears, 1.0, timeout=8)
        _check(ears[0], 440)
        first_pitch = ears[0].pitch
        remote("alice").set_subscribed(False)
        await events.wait("track_unsubscribed", timeout=10)
        await asyncio.sleep(1.0)  # the section goes inactive and Carol answers that
        remote("bob").set_subscribed(True)
        track, _, _ = await events.wait(
            "track_subscribed", lambda t, p, who: who.identity == "bob", timeout=10)
        ears.append(Ear(track, "carol<-bob"))
        await _wait_heard(ears[1:], 1.0, timeout=8)
        _check(ears[1], 660)
        return {"pitch_hz": round(first_pitch, 1), "second_pitch_hz": round(ears[1].pitch, 1)}
    finally:
        for e in ears:
            await e.close()
        for tone in tones.values():
            await tone.close()
        await rooms.close()


async def permission_revoke_and_restore(srv: dict[str, str]) -> dict[str, Any]:
    """Alice revokes Bob's permission (his subscription ends), then grants it back to him.

    The Rust SDK ignores SubscriptionPermissionUpdate and raises no event when a subscriber
    m-line goes inactive, so "ended" is observed as silence: a tone Alice plays while Bob is
    not allowed never reaches him. Restoring gives Bob a new subscription (a second
    track_subscribed) on which he hears the tone again.
    """
    rooms = Rooms(srv)
    tone = Tone(440)
    ears: list[Ear] = []
    try:
        alice = await rooms.join("alice", "perm")
        bob = rooms.new()
        events = EventLog(bob, *EVENTS, label="bob")
        await rooms.join("bob", "perm", room=bob)
        await tone.publish(alice)
        track, _, _ = await events.wait("track_subscribed", timeout=15)
        before = Ear(track, "bob<-alice (allowed)")
        ears.append(before)
        tone.burst(1.5)
        await _wait_heard(ears, 1.0, timeout=8)
        _check(before, 440)
        await until(lambda: not tone.playing, 5, "the first burst to end")

        alice.local_participant.set_track_subscription_permissions(
            allow_all_participants=False, participant_permissions=[])
        await asyncio.sleep(1.0)  # the revocation and the subscriber renegotiation land
        before.reset()
        tone.burst(1.5)
        await asyncio.sleep(2.5)  # a wait for nothing: the tone must not reach Bob
        assert before.loud_seconds < 0.1, f"revoked, yet heard {before.loud_seconds:.2f} s"
        assert events.count("track_subscribed") == 1

        alice.local_participant.set_track_subscription_permissions(
            allow_all_participants=False,
            participant_permissions=[
                rtc.ParticipantTrackPermission(participant_identity="bob", allow_all=True)])
        await events.wait_count("track_subscribed", 2, timeout=10)
        track = events.all("track_subscribed")[-1][0]
        after = Ear(track, "bob<-alice (allowed again)")
        ears.append(after)
        tone.burst(1.5)
        await _wait_heard([after], 1.0, timeout=8)
        _check(after, 440)
        return {"subscriptions": events.count("track_subscribed"),
                "unsubscribed_events": events.count("track_unsubscribed"),
                "pitch_hz": round(after.pitch, 1)}
    finally:
        for e in ears:
            await e.close()
        await tone.close()
        await rooms.close()


async def six_way_call(srv: dict[str, str]) -> dict[str, Any]:
    """Six participants each publish a tone; everyone hears the other five, each right."""
    rooms = Rooms(srv)
    names = [f"p{i}" for i in range(6)]
    tones = {n: Tone(300 + 110 * i, frame_ms=20) for i, n in enumerate(names)}
    logs: dict[str, EventLog] = {}
    ears: dict[tuple[str, str], Ear] = {}
    try:
        joined: dict[str, rtc.Room] = {}
        for n in names:
            room = rooms.new()
            logs[n] = EventLog(room, *EVENTS, label=n)
            joined[n] = await rooms.join(n, "six", room=room)
        for n in names:
            await tones[n].publish(joined[n])

        def subscribed() -> dict[str, int]:
            return {n: log.count("track_subscribed") for n, log in logs.items()}

        await until(lambda: min(subscribed().values()) >= 5, 30,
                    lambda: f"five subscriptions each; got {subscribed()}", interval=0.1)
        for n, log in logs.items():
            for track, _, who in log.all("track_subscribed"):
                ears[(n, who.identity)] = Ear(track, f"{n}<-{who.identity}", frame_ms=50)
        await _settled(list(ears.values()))
        for tone in tones.values():
            tone.burst(3.0)
        await _wait_heard(list(ears.values()), 1.5, timeout=15)
        bad = [f"{e.label}: {e.pitch:.0f} Hz (want {tones[src].hz:.0f}, "
               f"{e.loud_seconds:.2f} s heard)"
               for (_, src), e in ears.items() if abs(e.pitch - tones[src].hz) >= 15]
        assert not bad, "wrong or missing audio: " + "; ".join(bad)
        return {"pairs": len(ears),
                "min_heard_s": round(min(e.loud_seconds for e in ears.values()), 2)}
    finally:
        for e in ears.values():
            await e.close()
        for tone in tones.values():
            await tone.close()
        await rooms.close()


async def h264_camera_is_seen(srv: dict[str, str]) -> dict[str, Any]:
    """Alice publishes a green 320x180 camera in H.264; Bob sees green 320x180 frames."""
    width, height = 320, 180
    rooms = Rooms(srv)
    try:
        alice = await rooms.join("alice", "h264")
        bob = rooms.new()
        events = EventLog(bob, *EVENTS, label="bob")
        await rooms.join("bob", "h264", room=bob)
        source = rtc.VideoSource(width, height)
        rgba = np.zeros((height, width, 4), dtype=np.uint8)
        rgba[..., 1] = 220
        rgba[..., 3] = 255
        frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, rgba.tobytes())

        async def camera() -> None:
            while True:
                source.capture_frame(frame)
                await asyncio.sleep(1 / 15)

        feeding = asyncio.ensure_future(camera())
        try:
            track = rtc.LocalVideoTrack.create_video_track("camera", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA,
                                              video_codec=rtc.VideoCodec.H264)
            await asyncio.wait_for(alice.local_participant.publish_track(track, options), 15)
            remote, pub, _ = await events.wait("track_subscribed", timeout=15)
            stream = rtc.VideoStream(remote, format=rtc.VideoBufferType.RGBA)
            frames = await first_frames(stream, 10, timeout=20)
        finally:
            feeding.cancel()
        last = frames[-1]
        assert (last.width, last.height) == (width, height), (last.width, last.height)
        r, g, b = mean_rgb(last)
        assert g > 150 and r < 80 and b < 80, f"expected green, mean RGB = {r:.0f},{g:.0f},{b:.0f}"
        return {"mime": pub.mime_type, "frames": len(frames), "rgb": [round(r), round(g),
                                                                      round(b)]}
    finally:
        await rooms.close()

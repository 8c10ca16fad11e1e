"""Avatar scenarios run in a child process with the official SDK (`livekit.rtc`).

`compose_end_to_end`: token → WebSocket → join info → the SDK joins with the returned token →
speech is sent → the avatar's audio and video are received and compared with what was sent →
SKIP → DONE. `agents_path`: the SDK acts as a LiveKit agent that sends the avatar into its room
(`/integrations/livekit/agents`) and drives it with `lk.audio_stream` and `lk.clear_buffer`.
`measure_latency` is the bench's: bursts with sharp onsets, timings of the first reactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from livekit import api, rtc
from tests.avatar import signals
from tests.avatar.compose_client import ComposeSocket, http_url, request_token
from tests.helpers.wait import until

AVATAR_IDENTITY = "roost-avatar"
# Where the mouth of face "ada" is in the 512x512 picture, with room for head motion.
MOUTH = (slice(292, 380), slice(192, 320))
DARK = 50  # luma below this inside MOUTH is the open mouth's cavity
SILENT_RMS = 150.0  # received audio quieter than this (int16 RMS) counts as silence
LOUD_RMS = 400.0


@dataclass
class Reception:
    """What a subscriber got from the avatar: per-frame arrival times and measures."""

    video_t: list[float] = field(default_factory=list)
    video_ts: list[float] = field(default_factory=list)  # the frames' own timestamps (s)
    mouth: list[float] = field(default_factory=list)
    audio_t: list[float] = field(default_factory=list)
    audio_pos: list[float] = field(default_factory=list)  # stream time of each audio frame (s)
    rms: list[float] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)
    widest: float = 0.0

    def audio_after(self, t0: float) -> list[tuple[float, float]]:
        return [(t, r) for t, r in zip(self.audio_t, self.rms, strict=True) if t >= t0]

    def video_after(self, t0: float) -> list[tuple[float, float]]:
        return [(t, m) for t, m in zip(self.video_t, self.mouth, strict=True) if t >= t0]


async def _watch_video(track: rtc.Track, rec: Reception) -> None:
    stream = rtc.VideoStream(track, format=rtc.VideoBufferType.I420)
    try:
        async for event in stream:
            frame = event.frame
            w, h = frame.width, frame.height
            luma = np.frombuffer(frame.data, dtype=np.uint8)[: w * h].reshape(h, w)
            rec.size = (w, h)
            dark = float(np.mean(luma[MOUTH] < DARK)) if (w, h) == (512, 512) else 0.0
            rec.video_t.append(time.monotonic())
            rec.video_ts.append(event.timestamp_us / 1e6)
            rec.mouth.append(dark)
            rec.widest = max(rec.widest, dark)
    finally:
        await stream.aclose()


async def _listen_audio(track: rtc.Track, rec: Reception) -> None:
    stream = rtc.AudioStream(track, sample_rate=48_000, num_channels=1)
    position = 0.0
    try:
        async for event in stream:
            data = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
            rec.audio_t.append(time.monotonic())
            rec.audio_pos.append(position)
            position += data.size / 48_000
            rec.rms.append(float(np.sqrt(np.mean(data * data))) if data.size else 0.0)
    finally:
        await stream.aclose()


@contextlib.asynccontextmanager
async def _receiving(room: rtc.Room, identity: str, timeout: float = 15.0
                     ) -> AsyncIterator[Reception]:
    """Subscribe to `identity`'s audio and video and record them until the block ends."""
    rec = Reception()
    tracks: dict[int, rtc.Track] = {}
    got = asyncio.Event()

    def on_subscribed(track: rtc.Track, pub: rtc.RemoteTrackPublication,
                      participant: rtc.RemoteParticipant) -> None:
        if participant.identity == identity:
            tracks[track.kind] = track
            if len(tracks) == 2:
                got.set()

    room.on("track_subscribed", on_subscribed)
    for participant in room.remote_participants.values():
        if participant.identity == identity:
            for pub in participant.track_publications.values():
                if pub.track is not None:
                    on_subscribed(pub.track, pub, participant)
    await asyncio.wait_for(got.wait(), timeout)
    tasks = [asyncio.create_task(_watch_video(tracks[rtc.TrackKind.KIND_VIDEO], rec)),
             asyncio.create_task(_listen_audio(tracks[rtc.TrackKind.KIND_AUDIO], rec))]
    try:
        yield rec
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _silence_after(rec: Reception, t0: float, hold: float = 0.4) -> float | None:
    """Seconds from `t0` until received audio goes silent and stays so for `hold`."""
    frames = rec.audio_after(t0)
    for i, (t, _) in enumerate(frames):
        window = [r for tt, r in frames[i:] if tt < t + hold]
        if window and max(window) < SILENT_RMS and frames[-1][0] >= t + hold:
            return t - t0
    return None


def _timeline(arrivals: list[float], stamps: list[float], t0: float) -> float:
    """The stamp of the first item arriving at or after `t0` (maps arrival time to stamps)."""
    for t, stamp in zip(arrivals, stamps, strict=True):
        if t >= t0:
            return stamp
    return stamps[-1] if stamps else 0.0


def _compare(rec: Reception, sent: np.ndarray, t_sent: float) -> dict[str, float]:
    """How well the received audio and mouth follow the sent speech (40 ms envelopes).

    `audio_r` and `mouth_r` compare content on the media's own timelines (audio stream time,
    video frame timestamps), so scheduling delays in this process do not blur them; the lags
    and the A/V offset use arrival times (what a viewer experiences).
    """
    pad = 25
    sent_env = signals.envelope(sent)
    count = sent_env.size + 2 * pad
    reference = np.concatenate([np.zeros(pad), sent_env, np.zeros(pad)])
    audio_start = _timeline(rec.audio_t, rec.audio_pos, t_sent) - pad * signals.BIN
    audio_stream = signals.on_grid(rec.audio_pos, rec.rms, audio_start, count)
    video_start = _timeline(rec.video_t, rec.video_ts, t_sent) - pad * signals.BIN
    mouth_stream = signals.on_grid(rec.video_ts, rec.mouth, video_start, count)
    smooth = signals.smooth
    _, audio_r = signals.best_lag(smooth(reference), smooth(audio_stream), pad)
    _, mouth_r = signals.best_lag(smooth(reference), smooth(mouth_stream), pad)
    arrival_audio = signals.on_grid(rec.audio_t, rec.rms, t_sent, count)
    arrival_mouth = signals.on_grid(rec.video_t, rec.mouth, t_sent, count)
    audio_lag, _ = signals.best_lag(reference[pad:], arrival_audio, pad)
    av_lag, _ = signals.best_lag(arrival_audio, arrival_mouth, 8)
    _, av_r = signals.best_lag(smooth(arrival_audio), smooth(arrival_mouth), 8)
    return {"audio_r": round(audio_r, 3), "mouth_r": round(mouth_r, 3),
            "audio_latency_ms": audio_lag * 40, "av_offset_ms": av_lag * 40,
            "av_r": round(av_r, 3)}


async def compose_end_to_end(srv: dict[str, str]) -> dict[str, Any]:
    """The whole compose flow with an official-SDK client in the room."""
    base = http_url(srv["url"])
    result: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        status, body = await request_token(http, base, faceId="ada", maxIdleTime=60)
        assert status == 200, body
        sock = await ComposeSocket.open(http, base, body["session_token"])
        room = rtc.Room()
        try:
            info = await sock.join_info()
            result["first_message"] = sock.messages()[0][:40]
            await asyncio.wait_for(room.connect(info["livekit_url"], info["livekit_token"]), 15)
            async with _receiving(room, AVATAR_IDENTITY) as rec:
                avatar = room.remote_participants[AVATAR_IDENTITY]
                result["avatar_kind"] = int(avatar.kind)
                await sock.wait_text("START", 15)
                await asyncio.sleep(1.0)  # idle: blinking, head motion, mouth shut
                result["idle_mouth_max"] = max(m for _, m in rec.video_after(0))

                speech = signals.speech(2.0)
                t_sent = await sock.send_paced(speech)
                result["speak_after_ms"] = round(
                    (await sock.wait_text("SPEAK", 5, after=t_sent) - t_sent) * 1000)
                await sock.wait_text("SILENT", 6, after=t_sent)
                await asyncio.sleep(0.6)
                result.update(_compare(rec, speech, t_sent))
                result["mouth_max"] = rec.widest
                result["video_size"] = list(rec.size)

                # SKIP: a long sustained vowel sent at once, interrupted after a second
                sustained = (signals.syllable(4.0, 0, 150, np.random.default_rng(3))
                             * 0.5 * 32767).astype(np.int16)
                t_long = time.monotonic()
                await sock.ws.send_bytes(sustained.tobytes())
                await sock.wait_text("SPEAK", 5, after=t_long)
                await asyncio.sleep(1.0)
                loud = [r for t, r in rec.audio_after(time.monotonic() - 0.3)]
                result["loud_before_skip"] = round(float(np.median(loud)) if loud else 0.0)
                t_skip = time.monotonic()
                await sock.ws.send_str("SKIP")
                silent_at = await sock.wait_text("SILENT", 5, after=t_skip)
                result["silent_event_after_skip_ms"] = round((silent_at - t_skip) * 1000)
                await asyncio.sleep(1.0)  # a window in which nothing more may be heard
                gone = _silence_after(rec, t_skip)
                result["skip_silence_ms"] = None if gone is None else round(gone * 1000)
                late = rec.video_after(t_skip + 0.5)
                result["mouth_after_skip_max"] = max((m for _, m in late), default=1.0)

                # DONE: play out a short tail, then STOP and close
                tail = signals.speech(0.6, seed=3)
                await sock.ws.send_bytes(tail.tobytes())
                t_done = time.monotonic()
                await sock.ws.send_str("DONE")
                closed_at = await sock.wait_closed(10)
                result["done_to_close_ms"] = round((closed_at - t_done) * 1000)
                after_done = [text for t, text in sock.texts if t >= t_done]
                result["after_done"] = after_done
                result["events"] = sock.events()
                heard_tail = [r for t, r in rec.audio_after(t_done) if r > LOUD_RMS]
                result["tail_heard_ms"] = len(heard_tail) * 10
        finally:
            await sock.close()
            await room.disconnect()
    return result


def _agent_token(srv: dict[str, str], identity: str, room: str, *,
                 attributes: dict[str, str] | None = None, kind: str = "agent") -> str:
    token = (api.AccessToken(srv["api_key"], srv["api_secret"]).with_identity(identity)
             .with_kind(kind).with_grants(api.VideoGrants(room_join=True, room=room)))
    if attributes:
        token = token.with_attributes(attributes)
    return token.to_jwt()


async def agents_path(srv: dict[str, str]) -> dict[str, Any]:
    """An agent sends the avatar into its room and drives it like `DataStreamAudioOutput`."""
    base = http_url(srv["url"])
    room_name = "agents-avatar"
    agent_identity = "agent-1"
    avatar_identity = "simli-avatar-agent"
    result: dict[str, Any] = {}
    finished: list[tuple[float, dict[str, Any]]] = []
    room = rtc.Room()

    def on_finished(data: rtc.RpcInvocationData) -> str:
        finished.append((time.monotonic(), json.loads(data.payload)))
        return "ok"

    try:
        await room.connect(srv["url"], _agent_token(srv, agent_identity, room_name))
        room.local_participant.register_rpc_method("lk.playback_finished", on_finished)
        async with aiohttp.ClientSession() as http:
            status, body = await request_token(http, base, faceId="ben/happy", maxIdleTime=60)
            assert status == 200, body
            avatar_token = _agent_token(srv, avatar_identity, room_name,
                                        attributes={"lk.publish_on_behalf": agent_identity})
            async with http.post(f"{base}/integrations/livekit/agents", json={
                "session_token": body["session_token"], "livekit_url": srv["url"],
                "livekit_token": avatar_token}) as resp:
                result["start_status"] = resp.status
                result["start_body"] = await resp.json()
        async with _receiving(room, avatar_identity) as rec:
            result["avatar_attributes"] = dict(
                room.remote_participants[avatar_identity].attributes)
            # segment 1: one second at 24 kHz, pushed faster than real time, then closed
            rate = 24_000
            one = _resample(signals.speech(1.0, seed=5), rate)
            t1 = time.monotonic()
            await _stream(room, avatar_identity, one, rate)
            await until(lambda: len(finished) >= 1, 6, "playback_finished of segment 1")
            result["segment1"] = finished[0][1]
            result["segment1_after_ms"] = round((finished[0][0] - t1) * 1000)
            heard = [r for _, r in rec.audio_after(t1) if r > LOUD_RMS]
            result["segment1_heard_ms"] = len(heard) * 10
            result["segment1_frames"] = len(rec.video_after(t1))

            # segment 2: three seconds, interrupted with lk.clear_buffer after 0.8 s
            three = (signals.syllable(3.0, 1, 150, np.random.default_rng(2))
                     * 0.5 * 32767).astype(np.int16)
            writer_task = asyncio.create_task(
                _stream(room, avatar_identity, _resample(three, rate), rate, pace=0.5))
            t2 = time.monotonic()
            await asyncio.sleep(0.8)
            t_clear = time.monotonic()
            answer = await room.local_participant.perform_rpc(
                destination_identity=avatar_identity, method="lk.clear_buffer", payload="")
            result["clear_answer"] = answer
            await until(lambda: len(finished) >= 2, 3, "playback_finished after clear_buffer")
            result["segment2"] = finished[1][1]
            result["segment2_after_clear_ms"] = round((finished[1][0] - t_clear) * 1000)
            await writer_task
            await asyncio.sleep(1.0)  # a window in which nothing more may be heard
            gone = _silence_after(rec, t_clear)
            result["clear_silence_ms"] = None if gone is None else round(gone * 1000)
            result["segment2_started_ms"] = round((t_clear - t2) * 1000)
            result["finished_count"] = len(finished)
    finally:
        await room.disconnect()
    return result


def _resample(pcm16k: np.ndarray, rate: int) -> np.ndarray:
    x = np.arange(int(pcm16k.size * rate / 16_000)) * 16_000 / rate
    return np.interp(x, np.arange(pcm16k.size), pcm16k.astype(np.float64)).astype(np.int16)


async def _stream(room: rtc.Room, to: str, pcm: np.ndarray, rate: int, pace: float = 0.0
                  ) -> None:
    """Send `pcm` as one `lk.audio_stream` segment in 20 ms frames (`pace` x real time)."""
    writer = await room.local_participant.stream_bytes(
        "AUDIO_test", topic="lk.audio_stream", destination_identities=[to],
        attributes={"sample_rate": str(rate), "num_channels": "1"})
    size = rate // 50
    for offset in range(0, pcm.size, size):
        await writer.write(pcm[offset:offset + size].tobytes())
        if pace:
            await asyncio.sleep(0.02 * pace)
    await writer.aclose()


async def measure_latency(srv: dict[str, str], seconds: float = 6.0) -> dict[str, Any]:
    """Bench: bursts with sharp onsets; first chunk → SPEAK and → first open mouth; A/V offset."""
    base = http_url(srv["url"])
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        status, body = await request_token(http, base, faceId="ada", maxIdleTime=60)
        assert status == 200, body
        sock = await ComposeSocket.open(http, base, body["session_token"])
        room = rtc.Room()
        try:
            info = await sock.join_info()
            await asyncio.wait_for(room.connect(info["livekit_url"], info["livekit_token"]), 15)
            async with _receiving(room, AVATAR_IDENTITY) as rec:
                await sock.wait_text("START", 15)
                await asyncio.sleep(1.5)
                pcm = signals.bursts(seconds, on=0.24, off=0.37)
                t0 = await sock.send_paced(pcm)
                out["speak_ms"] = round((await sock.wait_text("SPEAK", 5, after=t0) - t0) * 1000)
                await asyncio.sleep(0.8)
                onsets = [t0 + i * 0.61 for i in range(int(seconds / 0.61))]
                audio = [_first(rec.audio_after(t), lambda r: r > LOUD_RMS, t + 0.5)
                         for t in onsets]
                video = [_first(rec.video_after(t), lambda m: m > 0.01, t + 0.5)
                         for t in onsets]
                out["first_audio_ms"] = _ms(audio[0], t0)
                out["first_mouth_ms"] = _ms(video[0], t0)
                offsets = [v - a for a, v in zip(audio, video, strict=True)
                           if a is not None and v is not None]
                out["av_offsets_ms"] = [round(x * 1000) for x in offsets]
                mean = float(np.mean(offsets)) if offsets else None
                out["av_offset_mean_ms"] = None if mean is None else round(mean * 1000)
                out["bursts"] = len(onsets)
                await sock.ws.send_str("DONE")
                await sock.wait_closed(10)
        finally:
            await sock.close()
            await room.disconnect()
    return out


def _first(items: list[tuple[float, float]], test: Any, until: float) -> float | None:
    for t, value in items:
        if t > until:
            return None
        if test(value):
            return t
    return None


def _ms(t: float | None, t0: float) -> int | None:
    return None if t is None else round((t - t0) * 1000)

"""The examples run as written: publish a WAV, record it back, and talk to the echo bot."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from livekit import api
from tests.client.helpers import Recorder, joined, wait_until
from tests.helpers.server import REPO_ROOT, RoostServer, tail
from tests.helpers.signals import dominant_hz
from tests.helpers.wait import until_async

from roost import client as rc

pytestmark = pytest.mark.timeout(120)
EXAMPLES = REPO_ROOT / "examples"
RATE = 48_000


def _tone_wav(path: Path, hz: float, seconds: float) -> None:
    x = np.arange(int(RATE * seconds)) / RATE
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes((np.sin(2 * np.pi * hz * x) * 0.5 * 32767).astype(np.int16).tobytes())


async def _until_in_room(server: RoostServer, room: str, identity: str) -> None:
    """Until the server lists `identity` in `room` (RoomService)."""
    async with api.LiveKitAPI(server.http_url, server.api_key, server.api_secret) as lk:
        async def present() -> bool:
            listed = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            return any(p.identity == identity for p in listed.participants)

        await until_async(present, 30, f"{identity} in {room}", interval=0.1)


def _output(log: Path) -> str:
    return tail(log, max_lines=60)


async def _run(server: RoostServer, script: str, *args: str, log: Path
               ) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / script), "--url", server.url, *args,
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


async def _finish(proc: asyncio.subprocess.Process, log: Path, timeout: float = 60) -> None:
    try:
        code = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        raise AssertionError(f"example did not finish:\n{_output(log)}") from None
    assert code == 0, f"example exited with {code}:\n{_output(log)}"


async def test_publish_wav_is_recorded_by_record_wav(server: RoostServer, tmp_path: Path) -> None:
    source, recorded = tmp_path / "tone.wav", tmp_path / "recorded.wav"
    _tone_wav(source, 440, 4.0)
    recorder = await _run(server, "record_wav.py", str(recorded), "--room", "wav",
                          "--from", "player", "--seconds", "2", log=tmp_path / "record.log")
    await _until_in_room(server, "wav", "wav-recorder")
    player = await _run(server, "publish_wav.py", str(source), "--room", "wav", "--identity",
                        "player", log=tmp_path / "publish.log")
    await _finish(recorder, tmp_path / "record.log")
    await _finish(player, tmp_path / "publish.log")
    with wave.open(str(recorded), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (RATE, 1)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert len(samples) == 2 * RATE
    loud = samples[np.abs(samples) > 0]
    assert abs(dominant_hz(loud[-RATE:], RATE) - 440) < 15


async def test_echo_bot_echoes_audio_data_rpc_and_chat(server: RoostServer,
                                                       tmp_path: Path) -> None:
    bot = await _run(server, "echo_bot.py", "--room", "echo", "--delay", "0.2", "--seconds", "40",
                     log=tmp_path / "bot.log")
    try:
        async with joined(server, "caller", "echo") as room:
            events = Recorder(room, "data_received", "track_subscribed")
            await wait_until(lambda: "echo-bot" in room.remote_participants, 20, what="the bot")
            await room.local_participant.publish_data(b"ping", topic="t")
            (packet,) = await events.wait("data_received")
            assert (packet.data, packet.participant.identity) == (b"ping", "echo-bot")
            assert await room.local_participant.perform_rpc(
                destination_identity="echo-bot", method="echo", payload="hi") == "hi"
            answers: asyncio.Queue[str] = asyncio.Queue()

            def on_chat(reader: rc.TextStreamReader, sender: str) -> None:
                asyncio.ensure_future(reader.read_all()).add_done_callback(
                    lambda t: answers.put_nowait(t.result()))

            room.register_text_stream_handler("chat", on_chat)
            await room.local_participant.send_text("hello bot", topic="chat")
            assert await asyncio.wait_for(answers.get(), 10) == "hello bot"

            source = rc.AudioSource(RATE, 1)
            track = rc.LocalAudioTrack.create_audio_track("mic", source)
            await room.local_participant.publish_track(
                track, rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_MICROPHONE))

            async def tone() -> None:
                n, t = 480, 0
                while True:
                    x = np.arange(t, t + n) / RATE
                    samples = (np.sin(2 * np.pi * 523 * x) * 16_000).astype(np.int16)
                    await source.capture_frame(rc.AudioFrame(samples.tobytes(), RATE, 1, n))
                    t += n

            feeder = asyncio.ensure_future(tone())
            try:
                (echo, _, who) = await events.wait("track_subscribed", timeout=20)
                assert who.identity == "echo-bot"
                stream = rc.AudioStream(echo, sample_rate=RATE)
                heard: list[np.ndarray] = []
                async for event in stream:
                    data = np.frombuffer(event.frame.data, dtype=np.int16)
                    if np.sqrt(np.mean(data.astype(np.float64) ** 2)) > 1000:
                        heard.append(data.copy())
                        if len(heard) >= 50:
                            break
                await stream.aclose()
            finally:
                feeder.cancel()
            assert abs(dominant_hz(np.concatenate(heard), RATE) - 523) < 15
    finally:
        bot.terminate()
        await asyncio.wait_for(bot.wait(), 15)

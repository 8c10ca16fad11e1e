"""The playout clock against fake outputs and a virtual clock: events when audio is *played*,
frames that show the audio being played, segments, SKIP, DONE's drain, handleSilence."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from roost.avatar.animation import Animator
from roost.avatar.faces import FACES
from roost.avatar.playout import FRAME, VIDEO_DELAY, Playout
from roost.avatar.renderer import FaceState, Renderer
from roost.avatar.speech import SpeechQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeAudio:
    """Plays what it is given in real (virtual) time, like the AudioSource's track."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.buffered = 0.0
        self.last = clock.now
        self.written: list[np.ndarray] = []

    def _drain(self) -> None:
        self.buffered = max(0.0, self.buffered - (self.clock.now - self.last))
        self.last = self.clock.now

    async def write(self, pcm: np.ndarray) -> None:
        self._drain()
        self.written.append(pcm)
        self.buffered += pcm.size / 48_000

    def queued(self) -> float:
        self._drain()
        return self.buffered

    def clear(self) -> None:
        self.buffered = 0.0


class FakeVideo:
    def __init__(self) -> None:
        self.frames = 0

    def write(self, i420: np.ndarray) -> None:
        self.frames += 1


class Rig:
    """A playout on fakes that records events with the tick they happened on."""

    def __init__(self, handle_silence: bool = True, video_delay: float = 0.0) -> None:
        self.clock = Clock()
        self.audio = FakeAudio(self.clock)
        self.video = FakeVideo()
        self.playout = Playout(Renderer(FACES["ada"]), Animator(seed=3), self.audio, self.video,
                               handle_silence=handle_silence, video_delay=video_delay,
                               clock=self.clock)
        self.ticks = 0
        self.events: list[tuple[int, str]] = []
        self.segments: list[tuple[int, int, float, bool]] = []
        self.states: list[FaceState] = []
        self.playout.on_speaking = lambda s: self.events.append(
            (self.ticks, "SPEAK" if s else "SILENT"))
        self.playout.on_segment_done = lambda seg, pos, intr: self.segments.append(
            (self.ticks, seg, pos, intr))
        self.playout.on_frame = self.states.append

    async def run(self, seconds: float) -> None:
        for _ in range(round(seconds / FRAME)):
            await self.playout.tick()
            self.ticks += 1
            self.clock.now += FRAME


def tone(seconds: float, level: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (np.sin(2 * np.pi * 200 * t) * level * 32767).astype(np.int16)


@pytest.mark.parametrize("video_delay", [0.0, VIDEO_DELAY])
async def test_speak_and_silent_follow_the_played_audio_and_so_does_the_mouth(
        video_delay: float) -> None:
    """Events when the audio plays; the mouth shows the audio played `video_delay` ago."""
    rig = Rig(video_delay=video_delay)
    await rig.run(0.4)
    assert rig.events == [] and all(s.mouth_open == 0 for s in rig.states)
    rig.playout.push(tone(1.0))
    start = rig.ticks
    await rig.run(1.6)
    (speak_tick, speak), (silent_tick, silent) = rig.events
    assert (speak, silent) == ("SPEAK", "SILENT")
    assert speak_tick - start <= 3  # the lead: 60 ms of audio queued ahead
    assert abs((silent_tick - speak_tick) * FRAME - 1.0) <= FRAME
    opened = [i for i, s in enumerate(rig.states) if s.mouth_open > 0.3]
    late = math.ceil(video_delay / FRAME)
    assert opened[0] == speak_tick + late and opened[-1] <= silent_tick + late + 1
    assert rig.states[-1].mouth_open == 0.0
    assert sum(p.size for p in rig.audio.written) == rig.ticks * 1920 + 1920  # lead included


async def test_segments_end_when_played_and_skip_interrupts() -> None:
    rig = Rig()
    rig.playout.push(tone(0.5), segment=1)
    rig.playout.end_segment(1)
    rig.playout.push(tone(2.0), segment=2)
    await rig.run(0.9)
    assert [(seg, round(pos, 2), intr) for _, seg, pos, intr in rig.segments] == [
        (1, 0.5, False)]
    rig.playout.skip()
    assert rig.events[-1][1] == "SILENT"
    _, seg, pos, intr = rig.segments[-1]
    assert (seg, intr) == (2, True) and 0.3 < pos < 0.45
    assert rig.playout.queued_seconds == 0
    await rig.run(0.5)
    assert len(rig.segments) == 2 and all(s.mouth_open < 0.05 for s in rig.states[-5:])


async def test_drained_after_the_last_speech_is_played() -> None:
    rig = Rig()
    rig.playout.push(tone(0.4))
    drained = asyncio.ensure_future(rig.playout.wait_drained())
    await rig.run(0.3)
    assert not drained.done()
    await rig.run(0.3)
    await asyncio.sleep(0)
    assert drained.done()


@pytest.mark.parametrize("handle_silence", [True, False])
async def test_handle_silence_decides_whether_idle_frames_are_sent(handle_silence: bool) -> None:
    rig = Rig(handle_silence=handle_silence)
    await rig.run(1.0)
    idle_frames = rig.video.frames
    rig.playout.push(tone(0.4))
    await rig.run(0.6)
    assert idle_frames == (25 if handle_silence else 1)
    assert rig.video.frames - idle_frames >= 9


def test_speech_queue_takes_chunks_and_reports_segment_ends() -> None:
    queue = SpeechQueue()
    queue.push(np.ones(500, dtype=np.int16), segment=1)
    queue.end_segment(1)
    queue.push(np.ones(300, dtype=np.int16), segment=2)
    first = queue.take(640)
    assert first.pcm.size == 640 and first.parts == ((1, 500), (2, 140)) and first.ended == (1,)
    second = queue.take(640)
    assert second.pcm.size == 160 and second.parts == ((2, 160),) and second.ended == ()
    assert queue.samples == 0

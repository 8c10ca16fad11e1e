"""The playout clock: every 40 ms it feeds speech (48 kHz) to the audio output, keeping a small
lead, and shows the frame for the audio that is being played *now*, so picture and sound match.

"Now" is `pushed - queued`: everything written to the audio output minus what it still holds.
Speaking/silent changes and segment ends are reported when the audio concerned is played, not
when it is queued; the frame drawn is that of the audio played `video_delay` ago, which makes
up for the extra delay receivers give audio. The outputs are small protocols, so this runs
against fakes in tests.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from roost.avatar.animation import FPS, Animator
from roost.avatar.audio import INPUT_RATE, Upsampler, mouth_features
from roost.avatar.renderer import FaceState, Renderer
from roost.avatar.speech import SpeechQueue

log = logging.getLogger("roost.avatar")

FRAME = 1.0 / FPS
CHUNK = INPUT_RATE // FPS  # 640 samples of 16 kHz speech per video frame
LEAD = 0.06  # seconds of audio kept queued ahead of the audio track
# Frames show the audio played this long ago: receivers add more delay to audio (Opus framing,
# the jitter buffer) than to video; measured with bench/avatar.py on loopback.
VIDEO_DELAY = 0.03
RESYNC = 0.25  # a tick this late restarts the clock instead of bursting


class AudioOut(Protocol):
    """Where 48 kHz mono int16 audio goes (an `AudioSource` in the avatar)."""

    async def write(self, pcm: np.ndarray) -> None: ...

    def queued(self) -> float: ...

    def clear(self) -> None: ...


class VideoOut(Protocol):
    """Where 512x512 I420 frames go (a `VideoSource` in the avatar)."""

    def write(self, i420: np.ndarray) -> None: ...


@dataclass(frozen=True)
class _Chunk:
    start: float
    speech: bool
    opening: float
    wide: float
    parts: tuple[tuple[int, int], ...]
    ended: tuple[int, ...]


class Playout:
    """One avatar's timeline: speech in, synchronised audio and frames out."""

    def __init__(self, renderer: Renderer, animator: Animator, audio: AudioOut, video: VideoOut,
                 *, handle_silence: bool = True, lead: float = LEAD,
                 video_delay: float = VIDEO_DELAY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.renderer = renderer
        self.animator = animator
        self.audio = audio
        self.video = video
        self.handle_silence = handle_silence
        self.lead = lead
        self.video_delay = video_delay
        self.clock = clock
        self.speech = SpeechQueue()
        self.on_speaking: Callable[[bool], None] = lambda speaking: None
        self.on_segment_done: Callable[[int, float, bool], None] = lambda seg, pos, intr: None
        self.on_frame: Callable[[FaceState], None] = lambda state: None
        self._upsampler = Upsampler()
        self._pending: collections.deque[_Chunk] = collections.deque()  # not yet played
        self._unseen: collections.deque[_Chunk] = collections.deque()  # not yet shown
        self._current: _Chunk | None = None  # the chunk whose frame is shown
        self._ending: tuple[int, ...] = ()
        self._played: dict[int, int] = {}  # samples of each unfinished segment played so far
        self._pushed = 0.0
        self._speaking = False
        self._frames = 0
        self._stopped = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()

    # ---- input ----------------------------------------------------------------

    def push(self, pcm: np.ndarray, segment: int = 0) -> None:
        """Queue 16 kHz mono speech."""
        if pcm.size:
            self._played.setdefault(segment, 0)
            self.speech.push(pcm, segment)
            self._drained.clear()

    def end_segment(self, segment: int) -> None:
        """The speech of `segment` is complete; report it once it has been played."""
        self._played.setdefault(segment, 0)
        self.speech.end_segment(segment)

    def skip(self) -> None:
        """Stop speaking now: drop queued speech and audio not yet played."""
        self.speech.clear()
        self.audio.clear()
        self._upsampler.reset()
        self._pending.clear()
        self._unseen.clear()
        self._pushed = 0.0  # everything written is played or gone: restart the timeline
        self._current = None
        for segment in list(self._played):
            self.on_segment_done(segment, self._played.pop(segment) / INPUT_RATE, True)
        self._ending = ()
        self._set_speaking(False)
        self._drained.set()

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def queued_seconds(self) -> float:
        """Speech received but not yet handed to the audio output."""
        return self.speech.seconds

    async def wait_drained(self) -> None:
        """Return once all queued speech has been played."""
        await self._drained.wait()

    # ---- the clock ------------------------------------------------------------

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        """Tick every frame until `stop()`; a late tick resynchronises instead of bursting."""
        due = self.clock()
        while not self._stopped.is_set():
            await self.tick()
            due += FRAME
            delay = due - self.clock()
            if delay < -RESYNC:
                log.debug("avatar playout fell %.0f ms behind; resynchronising", -delay * 1000)
                due = self.clock()
                delay = 0.0
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stopped.wait(), delay)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)

    async def tick(self) -> None:
        """Feed audio up to the lead, advance to what is playing now, draw that frame."""
        for _ in range(4):
            if self.audio.queued() >= self.lead:
                break
            await self._feed()
        now = self._pushed - self.audio.queued()
        while self._pending and self._pending[0].start <= now + 1e-6:
            self._emit(self._pending.popleft())
        shown = now - self.video_delay
        while self._unseen and self._unseen[0].start <= shown + 1e-6:
            self._current = self._unseen.popleft()
        current = self._current
        opening, wide = (current.opening, current.wide) if current else (0.0, 0.5)
        state = self.animator.next(opening, wide)
        if self.handle_silence or self._speaking or self._frames == 0:
            self.video.write(self.renderer.render(state))
            self._frames += 1
            self.on_frame(state)

    async def _feed(self) -> None:
        taken = self.speech.take(CHUNK)
        pcm = taken.pcm
        speech = pcm.size > 0
        opening, wide = mouth_features(pcm) if speech else (0.0, 0.5)
        if pcm.size < CHUNK:
            pcm = np.concatenate([pcm, np.zeros(CHUNK - pcm.size, dtype=np.int16)])
        await self.audio.write(self._upsampler.process(pcm))
        chunk = _Chunk(self._pushed, speech, opening, wide, taken.parts, taken.ended)
        self._pending.append(chunk)
        self._unseen.append(chunk)
        self._pushed += FRAME

    def _emit(self, chunk: _Chunk) -> None:
        """`chunk` starts playing: the previous one has finished."""
        for segment in self._ending:
            played = self._played.pop(segment, 0)
            self.on_segment_done(segment, played / INPUT_RATE, False)
        self._ending = chunk.ended
        for segment, samples in chunk.parts:
            if segment in self._played:
                self._played[segment] += samples
        self._set_speaking(chunk.speech)
        if not chunk.speech and not self.speech and not any(c.speech for c in self._pending):
            self._drained.set()

    def _set_speaking(self, speaking: bool) -> None:
        if speaking != self._speaking:
            self._speaking = speaking
            self.on_speaking(speaking)

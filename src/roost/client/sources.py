"""Local media: `AudioSource`/`VideoSource` feed aiortc tracks that the publisher PC encodes.

`AudioSource.capture_frame` queues PCM (waiting while more than `queue_size_ms` is queued);
the track takes 20 ms per packet in real time and plays silence when the queue runs dry.
`VideoSource.capture_frame` hands the newest picture to the track, which sends it once.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from .frames import AudioFrame, VideoFrame

AUDIO_PTIME = 0.020
VIDEO_CLOCK = 90_000


class AudioSource:
    """A real-time audio source with a bounded queue, like `livekit.rtc.AudioSource`."""

    def __init__(self, sample_rate: int, num_channels: int, queue_size_ms: int = 1000,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._queue_size = max(queue_size_ms, 20) / 1000
        self._buffer = bytearray()
        self._space = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self._consumers = 0

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        return self._num_channels

    @property
    def queued_duration(self) -> float:
        """Seconds of audio waiting to be sent."""
        return len(self._buffer) / (2 * self._num_channels * self._sample_rate)

    def clear_queue(self) -> None:
        """Drop everything queued (e.g. when the user interrupts playback)."""
        self._buffer.clear()
        self._space.set()
        self._drained.set()

    async def capture_frame(self, frame: AudioFrame) -> None:
        """Queue one frame; waits while the queue holds more than `queue_size_ms`."""
        if self._closed:
            raise RuntimeError("AudioSource is closed")
        if (frame.sample_rate, frame.num_channels) != (self._sample_rate, self._num_channels):
            frame = frame.remix_and_resample(self._sample_rate, self._num_channels)
        self._buffer += frame.data.cast("B")
        self._drained.clear()
        while self.queued_duration > self._queue_size and not self._closed:
            self._space.clear()
            await self._space.wait()

    async def wait_for_playout(self) -> None:
        """Return once everything queued has been sent."""
        await self._drained.wait()

    async def aclose(self) -> None:
        """Stop the source; queued audio is dropped."""
        self._closed = True
        self.clear_queue()

    def _take(self, samples: int) -> bytes:
        """Up to `samples` per channel from the queue, padded with silence."""
        size = samples * 2 * self._num_channels
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self.queued_duration <= self._queue_size:
            self._space.set()
        if not self._buffer:
            self._drained.set()
        return chunk + bytes(size - len(chunk))


class AudioSourceTrack(MediaStreamTrack):
    """The aiortc track that plays an `AudioSource` in real time (20 ms frames)."""

    kind = "audio"

    def __init__(self, source: AudioSource) -> None:
        super().__init__()
        self.source = source
        self.muted = False
        self._samples = int(source.sample_rate * AUDIO_PTIME)
        self._pts = 0
        self._start: float | None = None
        self._layout = "mono" if source.num_channels == 1 else "stereo"

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / self.source.sample_rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.2:  # we fell behind (e.g. a stalled loop): skip ahead, don't burst
                self._start = time.monotonic() - self._pts / self.source.sample_rate
        data = self.source._take(self._samples)
        if self.muted:
            data = bytes(len(data))
        frame = AudioFrame(data, self.source.sample_rate, self.source.num_channels,
                           self._samples).to_av(self._pts)
        self._pts += self._samples
        return frame


class VideoSource:
    """A video source: `capture_frame` hands the newest picture to the published track."""

    def __init__(self, width: int, height: int, *, is_screencast: bool = False) -> None:
        self._width = width
        self._height = height
        self.is_screencast = is_screencast
        self._frame: av.VideoFrame | None = None
        self._fresh = asyncio.Event()

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    def capture_frame(self, frame: VideoFrame, *, timestamp_us: int = 0, rotation: int = 0
                      ) -> None:
        """Replace the picture the track will send next."""
        self._frame = frame.to_av().reformat(format="yuv420p")
        self._width, self._height = frame.width, frame.height
        self._fresh.set()

    async def aclose(self) -> None:
        """Stop the source."""
        self._frame = None
        self._fresh.set()


class VideoSourceTrack(MediaStreamTrack):
    """The aiortc track that sends each new picture of a `VideoSource` once."""

    kind = "video"

    def __init__(self, source: VideoSource) -> None:
        super().__init__()
        self.source = source
        self.muted = False
        self._start = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        source = self.source
        while source._frame is None or not source._fresh.is_set():
            source._fresh.clear()
            await source._fresh.wait()
        source._fresh.clear()
        frame = source._frame
        if self.muted:
            black = av.VideoFrame(frame.width, frame.height, "yuv420p")
            for plane, value in zip(black.planes, (16, 128, 128), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
            frame = black
        out = frame.reformat()  # a copy: the encoder owns pts and time_base
        out.pts = int((time.monotonic() - self._start) * VIDEO_CLOCK)
        out.time_base = Fraction(1, VIDEO_CLOCK)
        return out


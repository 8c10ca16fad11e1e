"""`AudioStream` and `VideoStream`: async iterators over the decoded frames of a remote track."""

from __future__ import annotations

import abc
import asyncio
import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import av

from .frames import AudioFrame, VideoBufferType, VideoFrame, audio_frame_from_av
from .track import Track
from .types import TrackSource

if TYPE_CHECKING:
    from .participant import Participant


@dataclass
class AudioFrameEvent:
    """One chunk of received audio."""

    frame: AudioFrame


@dataclass
class VideoFrameEvent:
    """One received picture."""

    frame: VideoFrame
    timestamp_us: int
    rotation: int = 0


class _FrameQueue:
    """A queue that drops the oldest item when `capacity` (>0) is reached; None ends it."""

    def __init__(self, capacity: int) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._capacity = capacity
        self._ready = asyncio.Event()

    def put(self, item: Any) -> None:
        if self._capacity > 0 and len(self._items) >= self._capacity:
            self._items.popleft()
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Any:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class _Stream(abc.ABC):
    """Binds to a remote track now, or to the participant's next track of a source."""

    def __init__(self, track: Track | None, capacity: int,
                 participant: Participant | None = None,
                 track_source: int = TrackSource.SOURCE_UNKNOWN) -> None:
        self._queue = _FrameQueue(capacity)
        self._track: Track | None = None
        self._closed = False
        if track is not None:
            self._bind(track)
        elif participant is not None:
            waiter = getattr(participant, "_wait_for_track", None)
            if waiter is None:
                raise ValueError("streams from a participant need a remote participant")
            waiter(track_source, self._bind)
        else:
            raise ValueError("a track, or a participant and a track_source, is required")

    def _bind(self, track: Track) -> None:
        from .track import RemoteTrack

        if self._closed or not isinstance(track, RemoteTrack):
            return
        self._track = track
        track._add_sink(self._on_frame, self._on_end)
        track._start()

    @abc.abstractmethod
    def _on_frame(self, frame: Any) -> None:
        """Turn one decoded frame of the track into this stream's event (per kind)."""

    def _on_end(self) -> None:
        self._queue.put(None)

    async def _next(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._closed = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop receiving; a pending iteration ends."""
        from .track import RemoteTrack

        if isinstance(self._track, RemoteTrack):
            self._track._remove_sink(self._on_frame, self._on_end)
        self._queue.put(None)


class AudioStream(_Stream):
    """Decoded audio of a remote track, resampled to `sample_rate`/`num_channels`."""

    def __init__(self, track: Track | None = None, loop: asyncio.AbstractEventLoop | None = None,
                 capacity: int = 0, sample_rate: int = 48000, num_channels: int = 1,
                 frame_size_ms: int | None = None, **kwargs: Any) -> None:
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        layout = "mono" if num_channels == 1 else "stereo"
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=sample_rate)
        self._chunk = (sample_rate * frame_size_ms // 1000) if frame_size_ms else 0
        self._pending = bytearray()
        super().__init__(track, capacity, kwargs.get("participant"),
                         kwargs.get("track_source", TrackSource.SOURCE_UNKNOWN))

    @classmethod
    def from_track(cls, *, track: Track, loop: asyncio.AbstractEventLoop | None = None,
                   capacity: int = 0, sample_rate: int = 48000, num_channels: int = 1,
                   frame_size_ms: int | None = None, **kwargs: Any) -> AudioStream:
        """A stream over `track`."""
        return cls(track, loop, capacity, sample_rate, num_channels, frame_size_ms)

    @classmethod
    def from_participant(cls, *, participant: Participant, track_source: int,
                         loop: asyncio.AbstractEventLoop | None = None, capacity: int = 0,
                         sample_rate: int = 48000, num_channels: int = 1,
                         frame_size_ms: int | None = None, **kwargs: Any) -> AudioStream:
        """A stream over the participant's (current or next) track of `track_source`."""
        return cls(None, loop, capacity, sample_rate, num_channels, frame_size_ms,
                   participant=participant, track_source=track_source)

    def _on_frame(self, frame: av.AudioFrame) -> None:
        for out in self._resampler.resample(frame):
            if not out.samples:
                continue
            converted = audio_frame_from_av(out)
            if not self._chunk:
                self._queue.put(AudioFrameEvent(converted))
                continue
            self._pending += converted.data.cast("B")
            size = self._chunk * 2 * self._num_channels
            while len(self._pending) >= size:
                data = bytes(self._pending[:size])
                del self._pending[:size]
                self._queue.put(AudioFrameEvent(AudioFrame(
                    data, self._sample_rate, self._num_channels, self._chunk)))

    def __aiter__(self) -> AudioStream:
        return self

    async def __anext__(self) -> AudioFrameEvent:
        return await self._next()  # type: ignore[no-any-return]


class VideoStream(_Stream):
    """Decoded pictures of a remote track, converted to `format` (I420 by default)."""

    def __init__(self, track: Track | None = None, loop: asyncio.AbstractEventLoop | None = None,
                 capacity: int = 0, format: int | None = None, **kwargs: Any) -> None:
        self._format = VideoBufferType(format if format is not None else VideoBufferType.I420)
        super().__init__(track, capacity, kwargs.get("participant"),
                         kwargs.get("track_source", TrackSource.SOURCE_UNKNOWN))

    @classmethod
    def from_track(cls, *, track: Track, loop: asyncio.AbstractEventLoop | None = None,
                   format: int | None = None, capacity: int = 0, **kwargs: Any) -> VideoStream:
        """A stream over `track`."""
        return cls(track, loop, capacity, format)

    @classmethod
    def from_participant(cls, *, participant: Participant, track_source: int,
                         loop: asyncio.AbstractEventLoop | None = None,
                         format: int | None = None, capacity: int = 0,
                         **kwargs: Any) -> VideoStream:
        """A stream over the participant's (current or next) track of `track_source`."""
        return cls(None, loop, capacity, format, participant=participant,
                   track_source=track_source)

    def _on_frame(self, frame: av.VideoFrame) -> None:
        timestamp_us = int(frame.time * 1_000_000) if frame.time is not None else 0
        self._queue.put(VideoFrameEvent(VideoFrame.from_av(frame, self._format), timestamp_us))

    def __aiter__(self) -> VideoStream:
        return self

    async def __anext__(self) -> VideoFrameEvent:
        return await self._next()  # type: ignore[no-any-return]

"""Raw media frames: `AudioFrame` (int16 interleaved PCM) and `VideoFrame` (I420, RGBA, ...).

Conversions go through PyAV (and numpy), which the client needs for media anyway.
"""

from __future__ import annotations

import io
import wave
from enum import IntEnum
from fractions import Fraction
from typing import Any

import av
import numpy as np


class VideoBufferType(IntEnum):
    """Pixel layout of a `VideoFrame` (numbers as in `livekit.rtc`)."""

    RGBA = 0
    ABGR = 1
    ARGB = 2
    BGRA = 3
    RGB24 = 4
    I420 = 5
    I420A = 6
    I422 = 7
    I444 = 8
    I010 = 9
    NV12 = 10


_AV_FORMAT = {
    VideoBufferType.RGBA: "rgba",
    VideoBufferType.ABGR: "abgr",
    VideoBufferType.ARGB: "argb",
    VideoBufferType.BGRA: "bgra",
    VideoBufferType.RGB24: "rgb24",
    VideoBufferType.I420: "yuv420p",
    VideoBufferType.I420A: "yuva420p",
    VideoBufferType.I422: "yuv422p",
    VideoBufferType.I444: "yuv444p",
    VideoBufferType.NV12: "nv12",
}
_PACKED = {
    VideoBufferType.RGBA: 4,
    VideoBufferType.ABGR: 4,
    VideoBufferType.ARGB: 4,
    VideoBufferType.BGRA: 4,
    VideoBufferType.RGB24: 3,
}


def _plane_sizes(kind: VideoBufferType, width: int, height: int) -> list[int]:
    cw, ch = (width + 1) // 2, (height + 1) // 2
    if kind in _PACKED:
        return [width * height * _PACKED[kind]]
    if kind == VideoBufferType.I420:
        return [width * height, cw * ch, cw * ch]
    if kind == VideoBufferType.I420A:
        return [width * height, cw * ch, cw * ch, width * height]
    if kind == VideoBufferType.I422:
        return [width * height, cw * height, cw * height]
    if kind == VideoBufferType.I444:
        return [width * height] * 3
    if kind == VideoBufferType.NV12:
        return [width * height, cw * ch * 2]
    if kind == VideoBufferType.I010:
        return [width * height * 2, cw * ch * 2, cw * ch * 2]
    raise ValueError(f"unsupported buffer type {kind}")


class VideoFrame:
    """A picture: `width` x `height` pixels of `type`, tightly packed in `data`."""

    def __init__(self, width: int, height: int, type: int, data: bytes | bytearray | memoryview
                 ) -> None:
        self._width = width
        self._height = height
        self._type = VideoBufferType(type)
        self._data = bytearray(data)
        need = sum(_plane_sizes(self._type, width, height))
        if len(self._data) < need:
            raise ValueError(f"{self._type.name} {width}x{height} needs {need} bytes, "
                             f"got {len(self._data)}")

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def type(self) -> VideoBufferType:
        return self._type

    @property
    def data(self) -> memoryview:
        return memoryview(self._data)

    def get_plane(self, plane_nth: int) -> memoryview | None:
        """The bytes of one plane (Y, U, V, ...), or None past the last plane."""
        sizes = _plane_sizes(self._type, self._width, self._height)
        if plane_nth >= len(sizes):
            return None
        start = sum(sizes[:plane_nth])
        return memoryview(self._data)[start : start + sizes[plane_nth]]

    def convert(self, type: int, *, flip_y: bool = False) -> VideoFrame:
        """This picture in another pixel layout."""
        target = VideoBufferType(type)
        if target == self._type and not flip_y:
            return VideoFrame(self._width, self._height, target, bytes(self._data))
        frame = self.to_av()
        if flip_y:
            frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgba")[::-1].copy(),
                                               format="rgba")
        return VideoFrame.from_av(frame, target)

    def to_av(self) -> av.VideoFrame:
        """A PyAV frame (for encoders) with the same picture."""
        fmt = _AV_FORMAT.get(self._type)
        if fmt is None:
            raise ValueError(f"cannot convert {self._type.name}")
        w, h = self._width, self._height
        arr = np.frombuffer(self._data, dtype=np.uint8)
        if self._type in _PACKED:
            shaped = arr[: w * h * _PACKED[self._type]].reshape(h, w, _PACKED[self._type])
            return av.VideoFrame.from_ndarray(shaped, format=fmt)
        if self._type in (VideoBufferType.I420, VideoBufferType.NV12) and w % 2 == 0 and h % 2 == 0:
            return av.VideoFrame.from_ndarray(arr[: w * h * 3 // 2].reshape(h * 3 // 2, w),
                                              format=fmt)
        frame = av.VideoFrame(w, h, fmt)
        offset = 0
        for plane, size in zip(frame.planes, _plane_sizes(self._type, w, h), strict=False):
            rows = plane.height
            row_bytes = size // rows
            src = arr[offset : offset + size].reshape(rows, row_bytes)
            dst = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(rows, plane.line_size)
            dst[:, :row_bytes] = src
            offset += size
        return frame

    @staticmethod
    def from_av(frame: av.VideoFrame, type: int = VideoBufferType.I420) -> VideoFrame:
        """Copy a PyAV frame into a tightly packed `VideoFrame` of `type`."""
        target = VideoBufferType(type)
        fmt = _AV_FORMAT[target]
        w, h = frame.width, frame.height
        if target in _PACKED:
            arr = frame.to_ndarray(format=fmt)
            return VideoFrame(w, h, target, arr.tobytes())
        src = frame if frame.format.name == fmt else frame.reformat(format=fmt)
        parts = []
        for plane, size in zip(src.planes, _plane_sizes(target, w, h), strict=False):
            rows = plane.height
            row_bytes = size // rows
            view = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(rows, plane.line_size)
            parts.append(view[:, :row_bytes].tobytes())
        return VideoFrame(w, h, target, b"".join(parts))

    def __repr__(self) -> str:
        return f"VideoFrame(width={self._width}, height={self._height}, type={self._type.name})"


class AudioFrame:
    """PCM audio: `samples_per_channel` int16 samples per channel, interleaved."""

    def __init__(self, data: bytes | bytearray | memoryview, sample_rate: int, num_channels: int,
                 samples_per_channel: int, *, userdata: dict[str, Any] | None = None) -> None:
        if isinstance(data, memoryview):
            data = data.cast("B")
        need = num_channels * samples_per_channel * 2
        if len(data) < need:
            raise ValueError(
                "data length must be >= num_channels * samples_per_channel * sizeof(int16)")
        if len(data) % 2:
            raise ValueError("data length must be a multiple of sizeof(int16)")
        self._data = bytearray(data[:need])
        self._sample_rate = sample_rate
        self._num_channels = num_channels
        self._samples_per_channel = samples_per_channel
        self._userdata = {} if userdata is None else userdata

    @staticmethod
    def create(sample_rate: int, num_channels: int, samples_per_channel: int) -> AudioFrame:
        """A silent frame."""
        return AudioFrame(bytes(num_channels * samples_per_channel * 2), sample_rate,
                          num_channels, samples_per_channel)

    @property
    def userdata(self) -> dict[str, Any]:
        return self._userdata

    @property
    def data(self) -> memoryview:
        """The samples as an int16 memoryview."""
        return memoryview(self._data).cast("h")

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        return self._num_channels

    @property
    def samples_per_channel(self) -> int:
        return self._samples_per_channel

    @property
    def duration(self) -> float:
        return self._samples_per_channel / self._sample_rate

    def to_wav_bytes(self) -> bytes:
        """This frame as a complete WAV file."""
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(self._num_channels)
            wav.setsampwidth(2)
            wav.setframerate(self._sample_rate)
            wav.writeframes(bytes(self._data))
        return out.getvalue()

    def to_av(self, pts: int | None = None) -> av.AudioFrame:
        """A PyAV frame (for encoders) with the same samples."""
        arr = np.frombuffer(self._data, dtype=np.int16).reshape(1, -1)
        layout = "mono" if self._num_channels == 1 else "stereo"
        frame = av.AudioFrame.from_ndarray(arr, format="s16", layout=layout)
        frame.sample_rate = self._sample_rate
        frame.pts = pts
        frame.time_base = Fraction(1, self._sample_rate)
        return frame

    def remix_and_resample(self, sample_rate: int, num_channels: int) -> AudioFrame:
        """This audio at another rate and channel count (one-shot, no filter state kept)."""
        if sample_rate == self._sample_rate and num_channels == self._num_channels:
            return AudioFrame(bytes(self._data), sample_rate, num_channels,
                              self._samples_per_channel)
        resampler = AudioResampler(self._sample_rate, sample_rate, num_channels=num_channels)
        frames = resampler.push(self) + resampler.flush()
        return combine_audio_frames(frames) if frames else AudioFrame.create(
            sample_rate, num_channels, 0)

    def __repr__(self) -> str:
        return (f"AudioFrame(sample_rate={self._sample_rate}, num_channels={self._num_channels}, "
                f"samples_per_channel={self._samples_per_channel})")


def audio_frame_from_av(frame: av.AudioFrame) -> AudioFrame:
    """Copy a packed-s16 PyAV frame into an `AudioFrame`."""
    channels = len(frame.layout.channels)
    arr = frame.to_ndarray()
    return AudioFrame(arr.astype(np.int16, copy=False).tobytes(), frame.sample_rate,
                      channels, frame.samples)


class AudioResampler:
    """Streaming sample-rate (and channel-count) conversion, like `livekit.rtc.AudioResampler`."""

    def __init__(self, input_rate: int, output_rate: int, *, num_channels: int = 1,
                 quality: str = "medium") -> None:
        self._input_rate = input_rate
        self._output_rate = output_rate
        self._num_channels = num_channels
        layout = "mono" if num_channels == 1 else "stereo"
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=output_rate)

    def push(self, data: bytearray | AudioFrame) -> list[AudioFrame]:
        """Resample one input chunk; returns whatever output is ready."""
        if not isinstance(data, AudioFrame):
            samples = len(data) // (2 * self._num_channels)
            data = AudioFrame(data, self._input_rate, self._num_channels, samples)
        return self._convert(data.to_av())

    def flush(self) -> list[AudioFrame]:
        """The output still held back by the filter."""
        return self._convert(None)

    def _convert(self, frame: av.AudioFrame | None) -> list[AudioFrame]:
        out = []
        for item in self._resampler.resample(frame):
            if item.samples:
                out.append(audio_frame_from_av(item))
        return out


def combine_audio_frames(buffer: AudioFrame | list[AudioFrame]) -> AudioFrame:
    """Concatenate frames of one rate and channel count into one frame."""
    frames = [buffer] if isinstance(buffer, AudioFrame) else buffer
    if not frames:
        raise ValueError("no frames to combine")
    rate, channels = frames[0].sample_rate, frames[0].num_channels
    for f in frames:
        if (f.sample_rate, f.num_channels) != (rate, channels):
            raise ValueError("frames differ in sample rate or channel count")
    data = b"".join(bytes(f.data.cast("B")) for f in frames)
    return AudioFrame(data, rate, channels, sum(f.samples_per_channel for f in frames))

"""What a test hears and sees: the pitch of PCM samples, and the first frames of a video stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import numpy as np


def dominant_hz(samples: np.ndarray, rate: int = 48_000) -> float:
    """The frequency (Hz) of the strongest bin of `samples` (Hann-windowed), sampled at `rate`."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


class FrameStream(Protocol):
    """A livekit `rtc.VideoStream` or a `roost.client.VideoStream`: events with a `.frame`."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def aclose(self) -> None: ...


async def first_frames(stream: FrameStream, count: int, timeout: float = 20.0) -> list[Any]:
    """The first `count` frames `stream` yields (then it is closed); TimeoutError saying how
    many arrived if they do not within `timeout` seconds."""
    frames: list[Any] = []

    async def watch() -> None:
        async for event in stream:
            frames.append(event.frame)
            if len(frames) >= count:
                return

    try:
        await asyncio.wait_for(watch(), timeout)
    except TimeoutError:
        raise TimeoutError(f"{len(frames)} of {count} video frames within {timeout:g} s"
                           ) from None
    finally:
        await stream.aclose()
    return frames


def mean_rgb(frame: Any) -> tuple[float, float, float]:
    """Mean red, green and blue of an RGBA video frame (an SDK VideoFrame)."""
    pixels = np.frombuffer(frame.data, dtype=np.uint8).reshape(frame.height, frame.width, 4)
    r, g, b = (float(pixels[..., i].mean()) for i in range(3))
    return r, g, b

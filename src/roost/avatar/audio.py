"""Speech audio helpers: 16 kHz → 48 kHz upsampling, any-rate → 16 kHz mono, mouth features."""

from __future__ import annotations

import math

import av
import numpy as np

INPUT_RATE = 16_000
OUTPUT_RATE = 48_000
FACTOR = OUTPUT_RATE // INPUT_RATE
_TAPS_PER_PHASE = 16
SILENCE_DB = -52.0  # below this level the mouth stays shut
LOUD_DB = -14.0  # at and above this level the mouth is fully open


def _lowpass(taps: int, cutoff: float) -> np.ndarray:
    """Hann-windowed sinc low-pass; `cutoff` is a fraction of the (output) sample rate."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff * n) * np.hanning(taps)
    out: np.ndarray = h / h.sum()
    return out


class Upsampler:
    """Streaming 16 kHz → 48 kHz int16 upsampler (polyphase FIR; state carried across chunks)."""

    def __init__(self) -> None:
        taps = FACTOR * _TAPS_PER_PHASE
        h = _lowpass(taps, 0.45 / FACTOR) * FACTOR
        # phase p of the output uses taps h[p], h[p + 3], ... against the newest inputs first
        self._phases = [h[p::FACTOR].astype(np.float32) for p in range(FACTOR)]
        self._history = np.zeros(_TAPS_PER_PHASE - 1, dtype=np.float32)

    def reset(self) -> None:
        """Forget the filter's past (after an interruption)."""
        self._history[:] = 0

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Three output samples per input sample, as int16."""
        if pcm.size == 0:
            return np.zeros(0, dtype=np.int16)
        x = np.concatenate([self._history, pcm.astype(np.float32)])
        self._history = x[-(_TAPS_PER_PHASE - 1):]
        out = np.empty(pcm.size * FACTOR, dtype=np.float32)
        for p, taps in enumerate(self._phases):
            out[p::FACTOR] = np.convolve(x, taps, mode="valid")
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


class ToSpeechRate:
    """Streaming conversion of interleaved int16 PCM at any rate/channels to 16 kHz mono."""

    def __init__(self, sample_rate: int, num_channels: int) -> None:
        if not 8000 <= sample_rate <= 192_000 or num_channels not in (1, 2):
            raise ValueError(f"unsupported audio: {sample_rate} Hz, {num_channels} channels")
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        self._layout = "mono" if num_channels == 1 else "stereo"
        self._same = sample_rate == INPUT_RATE and num_channels == 1
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=INPUT_RATE)
        self._pending = b""
        self._pts = 0

    def push(self, data: bytes) -> np.ndarray:
        """Convert a chunk (any length; a split sample is kept for the next chunk)."""
        data = self._pending + data
        frame_bytes = 2 * self.num_channels
        usable = len(data) - len(data) % frame_bytes
        self._pending = data[usable:]
        if usable == 0:
            return np.zeros(0, dtype=np.int16)
        pcm = np.frombuffer(data[:usable], dtype=np.int16)
        if self._same:
            return pcm.copy()
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=self._layout)
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += pcm.size // self.num_channels
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """What the resampler still holds at the end of a stream."""
        if self._same:
            return np.zeros(0, dtype=np.int16)
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames if f.samples]
        if not parts:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(parts).astype(np.int16, copy=False)


_WINDOWS: dict[int, np.ndarray] = {}


def mouth_features(pcm: np.ndarray) -> tuple[float, float]:
    """How open (0..1, from loudness) and how wide (0..1, from spectral centroid) a chunk says.

    Low centroids (o, u) give a rounder mouth, high ones (e, i, s) a wider, flatter one.
    """
    if pcm.size == 0:
        return 0.0, 0.5
    x = pcm.astype(np.float32) * (1.0 / 32768.0)
    rms = float(np.sqrt(np.mean(x * x)))
    level = 20 * math.log10(rms + 1e-9)
    opening = min(1.0, max(0.0, (level - SILENCE_DB) / (LOUD_DB - SILENCE_DB)))
    if opening <= 0:
        return 0.0, 0.5
    window = _WINDOWS.get(x.size)
    if window is None:
        window = _WINDOWS.setdefault(x.size, np.hanning(x.size).astype(np.float32))
    power = np.abs(np.fft.rfft(x * window)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1.0 / INPUT_RATE)
    total = float(power.sum()) + 1e-12
    centroid = float((power * freqs).sum()) / total
    wide = min(1.0, max(0.0, (centroid - 500.0) / 2500.0))
    return opening ** 0.8, wide

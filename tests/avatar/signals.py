"""Speech-like test audio (16 kHz PCM16): voiced syllables with formants, pauses between them,
and helpers to turn audio and video into comparable 40 ms envelopes."""

from __future__ import annotations

import numpy as np

RATE = 16_000
BIN = 0.040  # seconds per envelope bin (one video frame)

# (F1, F2) of a, i, u, e, o
VOWELS = ((730, 1090), (300, 2300), (320, 800), (530, 1850), (570, 840))


def syllable(duration: float, vowel: int, pitch: float, rng: np.random.Generator) -> np.ndarray:
    """One voiced syllable: harmonics shaped by two formants, a consonant burst, an envelope."""
    n = int(duration * RATE)
    t = np.arange(n) / RATE
    f1, f2 = VOWELS[vowel % len(VOWELS)]
    glide = pitch * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(glide) / RATE
    voice = np.zeros(n)
    for k in range(1, int(3800 / pitch)):
        f = k * pitch
        gain = np.exp(-((f - f1) / 120) ** 2) + 0.6 * np.exp(-((f - f2) / 160) ** 2) + 0.02
        voice += gain * np.sin(k * phase)
    burst = int(0.03 * RATE)
    noise = rng.standard_normal(burst) * np.linspace(1, 0, burst) * 0.5
    voice[:burst] += np.diff(noise, prepend=0.0)
    ramp = min(int(0.025 * RATE), n // 2)
    env = np.ones(n)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[-ramp:] = np.linspace(1, 0, ramp)
    voice *= env
    return voice / (np.max(np.abs(voice)) + 1e-9)


def speech(duration: float, seed: int = 1, level: float = 0.5) -> np.ndarray:
    """`duration` seconds of syllables (120-300 ms) and pauses (60-220 ms), int16."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    total = 0
    want = int(duration * RATE)
    i = 0
    while total < want:
        syl = syllable(rng.uniform(0.12, 0.30), i, rng.uniform(110, 190), rng)
        syl *= rng.uniform(0.6, 1.0)
        gap = np.zeros(int(rng.uniform(0.06, 0.22) * RATE))
        out += [syl, gap]
        total += syl.size + gap.size
        i += 1
    x = np.concatenate(out)[:want]
    return (x * level * 32767).astype(np.int16)


def bursts(duration: float, on: float = 0.24, off: float = 0.36, level: float = 0.5
           ) -> np.ndarray:
    """Vowel bursts with sharp edges, for measuring onsets (audio and mouth) precisely."""
    rng = np.random.default_rng(7)
    period = int((on + off) * RATE)
    n = int(duration * RATE)
    out = np.zeros(n)
    for start in range(0, n - int(on * RATE), period):
        syl = syllable(on, 0, 140, rng)
        out[start:start + syl.size] = syl
    return (out * level * 32767).astype(np.int16)


def envelope(pcm: np.ndarray, rate: int = RATE, step: float = BIN) -> np.ndarray:
    """RMS per `step` seconds."""
    size = int(rate * step)
    n = pcm.size // size
    x = pcm[: n * size].astype(np.float64).reshape(n, size)
    return np.sqrt(np.mean(x * x, axis=1))


def on_grid(times: list[float], values: list[float], start: float, count: int,
            step: float = BIN) -> np.ndarray:
    """Values sampled at irregular arrival `times`, averaged into `count` bins from `start`."""
    out = np.full(count, np.nan)
    t = np.asarray(times)
    v = np.asarray(values, dtype=np.float64)
    idx = np.floor((t - start) / step).astype(int)
    for i in range(count):
        sel = v[idx == i]
        if sel.size:
            out[i] = sel.mean()
    # carry the last value over bins without samples (video frames can skip a bin)
    for i in range(1, count):
        if np.isnan(out[i]):
            out[i] = out[i - 1]
    return np.nan_to_num(out)


def smooth(x: np.ndarray, width: int = 3) -> np.ndarray:
    """Moving average over `width` bins (tolerates a bin or two of timing jitter)."""
    return np.convolve(x, np.ones(width) / width, mode="same")


def best_lag(reference: np.ndarray, other: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (bins, `other` later than `reference` when positive) of best Pearson correlation."""
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            a, b = reference[: reference.size - lag], other[lag:]
        else:
            a, b = reference[-lag:], other[: other.size + lag]
        n = min(a.size, b.size)
        a, b = a[:n], b[:n]
        if n < 5 or a.std() == 0 or b.std() == 0:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        if r > best[1]:
            best = (lag, r)
    return best

"""Face animation over time: mouth smoothing, blinks and small idle head motion, per frame."""

from __future__ import annotations

import math
import random

from roost.avatar.renderer import FaceState

FPS = 25
BLINK = (0.45, 1.0, 1.0, 0.7, 0.35, 0.1)  # eyelid per frame of one blink
BLINK_GAP = (55, 140)  # frames between blinks (2.2 to 5.6 s)
ATTACK = 0.8  # share of the way to a louder target covered in one frame
RELEASE = 0.55  # share of the way to a quieter target covered in one frame


class Animator:
    """Turns per-frame mouth features into `FaceState`s; deterministic for a given seed."""

    def __init__(self, seed: int = 0, start_frame: int = 0) -> None:
        self._rng = random.Random(seed)
        self._frame = start_frame
        self._open = 0.0
        self._wide = 0.5
        self._energy = 0.0
        self._blink_at = start_frame + self._rng.randint(*BLINK_GAP) // 2
        phases = [self._rng.uniform(0, 2 * math.pi) for _ in range(4)]
        self._phases = phases

    @property
    def frame(self) -> int:
        return self._frame

    def next(self, opening: float, wide: float) -> FaceState:
        """The state of the next frame, given how open/wide the current audio asks for."""
        rate = ATTACK if opening > self._open else RELEASE
        self._open += (opening - self._open) * rate
        if opening > 0.05:
            self._wide += (wide - self._wide) * 0.5
        self._energy += (opening - self._energy) * 0.12
        t = self._frame / FPS
        p = self._phases
        shift_x = 3.0 * math.sin(2 * math.pi * 0.11 * t + p[0]) + 1.2 * math.sin(
            2 * math.pi * 0.37 * t + p[1])
        shift_y = 1.6 * math.sin(2 * math.pi * 0.17 * t + p[2]) + 1.0 * math.sin(
            2 * math.pi * 0.29 * t + p[3]) + 2.0 * self._energy
        state = FaceState(
            mouth_open=self._open if self._open > 0.02 else 0.0,
            mouth_wide=self._wide,
            blink=self._blink(),
            shift_x=round(shift_x),
            shift_y=round(shift_y),
        )
        self._frame += 1
        return state

    def _blink(self) -> float:
        step = self._frame - self._blink_at
        if step < 0:
            return 0.0
        if step < len(BLINK):
            return BLINK[step]
        self._blink_at = self._frame + self._rng.randint(*BLINK_GAP)
        return 0.0

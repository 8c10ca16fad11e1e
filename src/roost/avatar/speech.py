"""The queue of speech waiting to be played: 16 kHz mono samples with segment-end markers."""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from roost.avatar.audio import INPUT_RATE


@dataclass(frozen=True)
class SegmentEnd:
    """Marks the end of one segment of speech (an agent's byte stream) in the queue."""

    segment: int


@dataclass(frozen=True)
class Taken:
    """Samples taken from the queue, per-segment sample counts, and segments that ended."""

    pcm: np.ndarray
    parts: tuple[tuple[int, int], ...]  # (segment, samples) in order
    ended: tuple[int, ...]


class SpeechQueue:
    """FIFO of (segment, int16 samples) and `SegmentEnd` markers; `take` reads it in chunks."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[int, np.ndarray] | SegmentEnd] = collections.deque()
        self._samples = 0

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def seconds(self) -> float:
        """Seconds of speech queued."""
        return self._samples / INPUT_RATE

    def __bool__(self) -> bool:
        return bool(self._items)

    def push(self, pcm: np.ndarray, segment: int = 0) -> None:
        if pcm.size:
            self._items.append((segment, pcm))
            self._samples += pcm.size

    def end_segment(self, segment: int) -> None:
        self._items.append(SegmentEnd(segment))

    def clear(self) -> int:
        """Drop everything; returns how many samples were dropped."""
        dropped = self._samples
        self._items.clear()
        self._samples = 0
        return dropped

    def take(self, count: int) -> Taken:
        """Up to `count` samples, plus the segment ends reached (those right after, too)."""
        pieces: list[np.ndarray] = []
        parts: list[tuple[int, int]] = []
        ended: list[int] = []
        need = count
        items = self._items
        while items:
            head = items[0]
            if isinstance(head, SegmentEnd):
                ended.append(head.segment)
                items.popleft()
                continue
            if need == 0:
                break
            segment, pcm = head
            if pcm.size <= need:
                items.popleft()
                piece = pcm
            else:
                piece, items[0] = pcm[:need], (segment, pcm[need:])
            pieces.append(piece)
            need -= piece.size
            if parts and parts[-1][0] == segment:
                parts[-1] = (segment, parts[-1][1] + piece.size)
            else:
                parts.append((segment, piece.size))
        got = count - need
        self._samples -= got
        pcm_out = np.concatenate(pieces) if len(pieces) > 1 else (
            pieces[0] if pieces else np.zeros(0, dtype=np.int16))
        return Taken(pcm=pcm_out, parts=tuple(parts), ended=tuple(ended))

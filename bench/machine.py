"""What the benchmarks read off the machine: load, CPU time of all cores, best-of timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def loadavg() -> str:
    """The 1-minute load average, as /proc/loadavg prints it."""
    return Path("/proc/loadavg").read_text().split()[0]


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def best_ns(fn: Callable[[], object], repeats: int, per: int) -> float:
    """Best-of-`repeats` nanoseconds of one call of `fn` (after a warm-up call), divided by
    the `per` items (packets) one call processes."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, time.perf_counter_ns() - t0)
    return best / per

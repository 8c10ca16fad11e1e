"""Bandwidth estimator on a simulated link: how fast it follows a 2 → 0.5 → 2 Mbit/s bottleneck.

    python bench/bwe.py                 # 30 s: 2 Mbit/s, 500 kbit/s from 10 s, 2 Mbit/s from 20 s
    python bench/bwe.py --no-plot

Pure simulation on a fake clock (tests/media/bwe_link.py: a sender paced at the estimate,
a FIFO bottleneck with 0.5 s of drop-tail queue, 20 ms each way, feedback every 100 ms),
run twice: GCC alone, and with a probe cluster (10 packets at 2x the estimate) every 2 s
feeding `on_probe_result`, as the stream allocator's prober will. Printed for each run:
  - time to adapt down: from the drop at 10 s until the estimate is first within 30 % of
    500 kbit/s, and until it is so for good (up to 20 s),
  - time to adapt up: from the lift at 20 s until the estimate first reaches 80 % of 2 Mbit/s,
  - the estimate's error against the capacity once settled (mean and worst |error|, 3 s after
    each change), and the share of time the estimate was above the capacity.
A PNG of estimate and capacity over time goes to bench/out/bwe.png (matplotlib, optional).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.media.bwe_link import Link, Sample, step  # noqa: E402

from roost.media.bwe import BandwidthEstimator  # noqa: E402

OUT = ROOT / "bench" / "out"
HIGH, LOW = 2_000_000.0, 500_000.0
DROP_AT, LIFT_AT, END = 10.0, 20.0, 30.0
SETTLE = 3.0  # seconds after a change before the error is counted


def run(probe_interval: float | None) -> Link:
    link = Link(BandwidthEstimator(), step((0, HIGH), (DROP_AT, LOW), (LIFT_AT, HIGH)),
                offered_bps=5_000_000, probe_interval=probe_interval)
    link.run_until(END)
    return link


def adapt_down(samples: list[Sample]) -> float | None:
    """Seconds from the drop until the estimate is within 30 % of LOW for good (to LIFT_AT)."""
    window = [s for s in samples if DROP_AT <= s.t < LIFT_AT]
    for i, s in enumerate(window):
        if all(abs(w.estimate_bps - LOW) <= 0.3 * LOW for w in window[i:]):
            return s.t - DROP_AT
    return None


def first_within(samples: list[Sample]) -> float | None:
    """Seconds from the drop until the estimate is first within 30 % of LOW."""
    for s in samples:
        if DROP_AT <= s.t < LIFT_AT and abs(s.estimate_bps - LOW) <= 0.3 * LOW:
            return s.t - DROP_AT
    return None


def adapt_up(samples: list[Sample]) -> float | None:
    for s in samples:
        if s.t >= LIFT_AT and s.estimate_bps >= 0.8 * HIGH:
            return s.t - LIFT_AT
    return None


def errors(samples: list[Sample]) -> tuple[float, float, float]:
    """Mean and worst relative |estimate - capacity| once settled; share of time above."""
    settled = [s for s in samples
               if any(c + SETTLE <= s.t < c + 10 for c in (0.0, DROP_AT, LIFT_AT))]
    rel = [abs(s.estimate_bps - s.capacity_bps) / s.capacity_bps for s in settled]
    above = sum(1 for s in samples if s.estimate_bps > s.capacity_bps) / len(samples)
    return sum(rel) / len(rel), max(rel), above


def fmt(seconds: float | None) -> str:
    return f"{seconds:5.1f} s" if seconds is not None else "  not reached"


def plot(runs: dict[str, Link]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  no plot: matplotlib is not installed in this venv (pip install matplotlib)")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 3.6 * len(runs)), sharex=True)
    for ax, (name, link) in zip(axes, runs.items(), strict=True):
        t = [s.t for s in link.samples]
        ax.step(t, [s.capacity_bps / 1e6 for s in link.samples], "k-", where="post",
                label="capacity", linewidth=1.5)
        ax.plot(t, [s.estimate_bps / 1e6 for s in link.samples], label="estimate")
        ax.plot(t, [s.stats["acked_bps"] / 1e6 for s in link.samples], alpha=0.6,
                label="acknowledged", linewidth=0.8)
        for pt, bps in link.probes:
            ax.plot(pt, bps / 1e6, "rx", markersize=5)
        decreases = [s.t for s in link.samples if s.state == "decrease"]
        ax.plot(decreases, [0.05] * len(decreases), "|", color="tab:red",
                label="decrease state")
        ax.set_ylabel("Mbit/s")
        ax.set_ylim(0, 2.8)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    path = OUT / "bwe.png"
    fig.savefig(path, dpi=100)
    print(f"  plot: {path.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    runs = {"GCC alone": run(None), "GCC + probe every 2 s (x markers)": run(2.0)}
    print(f"bandwidth estimator: {HIGH / 1e6:g} Mbit/s, {LOW / 1e6:g} Mbit/s at "
          f"{DROP_AT:g} s, {HIGH / 1e6:g} Mbit/s at {LIFT_AT:g} s, {END:g} s simulated")
    for name, link in runs.items():
        mean, worst, above = errors(link.samples)
        print(f"  {name}:")
        print(f"    adapt down (within 30 % of {LOW / 1e3:g} kbit/s): first "
              f"{fmt(first_within(link.samples))}, for good {fmt(adapt_down(link.samples))}")
        print(f"    adapt up (80 % of {HIGH / 1e6:g} Mbit/s):          "
              f"{fmt(adapt_up(link.samples))}")
        print(f"    error once settled: mean {mean:.0%}, worst {worst:.0%}; "
              f"above capacity {above:.0%} of the time")
    if not args.no_plot:
        plot(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

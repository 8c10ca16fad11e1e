"""Reading what tests/net/media_probe.py and the /metrics scraper record, and running a call
for the congestion tests and bench/network.py.

`Timeline` parses the JSON-lines files (re-read as they grow) and answers the questions the
tests ask: which layer arrived when, frame rate and longest gap in a window, audible audio,
counter deltas. `CongestionCall` builds the star network (tests/net/impair.py), starts roost
with congestion control, a /metrics scraper in the server namespace, the publisher and the
subscriber children, and waits until the subscriber shows the high layer. With
`python_subscriber=False` it starts no subscriber: another one (the JS SDK in Chromium,
tests/net/test_congestion_browser.py) joins room `ROOM` itself and feeds its frames into the
timeline from a `pollers` callback.

`python -m tests.net.timeline scrape URL OUT [INTERVAL]` is the scraper itself: it runs in
roost's namespace (the test process cannot reach the lab's addresses) and appends
`{"k": "m", "t": ..., "m": {series: value}}` lines with the roost_cc_*, roost_media_* and
roost_twcc_* series.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.netlab import Lab, NetnsRoostServer, ScenarioRun, start_scenario_in
from tests.helpers.wait import until_sync
from tests.net.impair import Star, star

HIGH, MID, LOW = 2, 1, 0
ROOM = "cc"  # the room of a CongestionCall
LAYER_NAMES = {HIGH: "high", MID: "mid", LOW: "low"}
CC_CONFIG: dict[str, Any] = {"rtc": {"congestion_control": {"enabled": True}}}
METRIC_PREFIXES = ("roost_cc_", "roost_media_nacks_total", "roost_media_packets_total",
                   "roost_media_bytes_total", "roost_twcc_feedback_total")


def layer_of(width: int) -> int:
    """Spatial layer of a 1280-wide simulcast picture from a decoded frame's width."""
    return HIGH if width > 640 else MID if width > 320 else LOW


def _get(data: dict[str, Any], path: str) -> float | None:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) else None


class Timeline:
    """Lines of one or more timeline files, by kind; `refresh()` reads what was appended."""

    def __init__(self, *paths: Path) -> None:
        self.paths = list(paths)
        self._offsets = [0] * len(paths)
        self.lines: dict[str, list[dict[str, Any]]] = {k: [] for k in "vaspem"}

    def refresh(self) -> Timeline:
        for i, path in enumerate(self.paths):
            if not path.exists():
                continue
            with open(path, "rb") as file:
                file.seek(self._offsets[i])
                chunk = file.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[i] += len(complete)
            for raw in complete.splitlines():
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                self.lines.setdefault(line.get("k", "?"), []).append(line)
        return self

    # -- video -----------------------------------------------------------------------------
    def frames(self, t0: float = 0.0, t1: float = float("inf")) -> list[dict[str, Any]]:
        return [f for f in self.lines["v"] if t0 <= f["t"] < t1]

    def fps(self, t0: float, t1: float) -> float:
        return len(self.frames(t0, t1)) / max(t1 - t0, 1e-9)

    def longest_gap(self, t0: float, t1: float) -> float:
        """Longest time without a frame within [t0, t1] (edges count)."""
        times = [t0, *(float(f["t"]) for f in self.frames(t0, t1)), t1]
        return max(b - a for a, b in itertools.pairwise(times))

    def gaps(self, t0: float, t1: float, over: float) -> list[tuple[float, float]]:
        """(start, length) of every gap between frames in [t0, t1] longer than `over` s."""
        times = [f["t"] for f in self.frames(t0, t1)]
        return [(a, b - a) for a, b in itertools.pairwise(times) if b - a > over]

    def first_frame(self, t0: float) -> float | None:
        frames = self.frames(t0)
        return frames[0]["t"] if frames else None

    def first_steady(self, t0: float, layer: int, n: int = 5) -> float | None:
        """Time of the first of `n` consecutive frames of `layer` arriving after `t0`."""
        run: list[float] = []
        for f in self.frames(t0):
            if layer_of(f["w"]) == layer:
                run.append(f["t"])
                if len(run) >= n:
                    return run[0]
            else:
                run = []
        return None

    def layer_at(self, t: float) -> int | None:
        before = [f for f in self.lines["v"] if f["t"] <= t]
        return layer_of(before[-1]["w"]) if before else None

    def sizes(self, t0: float, t1: float) -> list[tuple[int, int]]:
        return sorted({(f["w"], f["h"]) for f in self.frames(t0, t1)})

    def layer_share(self, t0: float, t1: float) -> dict[str, float]:
        frames = self.frames(t0, t1)
        if not frames:
            return {}
        counts: dict[str, int] = {}
        for f in frames:
            name = LAYER_NAMES[layer_of(f["w"])]
            counts[name] = counts.get(name, 0) + 1
        return {k: round(v / len(frames), 2) for k, v in sorted(counts.items())}

    # -- audio -----------------------------------------------------------------------------
    def audio(self, t0: float, t1: float) -> tuple[int, int]:
        """(frames delivered, loud frames) in bins ending within [t0, t1]."""
        bins = [a for a in self.lines["a"] if t0 <= a["t"] < t1]
        return sum(a["n"] for a in bins), sum(a["loud"] for a in bins)

    def audible(self, t0: float, t1: float) -> float:
        """Loud 10 ms frames / frames the window should hold (100 per second)."""
        _, loud = self.audio(t0, t1)
        return loud / max((t1 - t0) * 100, 1)

    # -- stats and metrics ---------------------------------------------------------------------
    def series(self, kind: str, path: str) -> list[tuple[float, float]]:
        out = []
        for line in self.lines[kind]:
            value = _get(line, path)
            if value is not None:
                out.append((line["t"], value))
        return out

    def value_at(self, kind: str, path: str, t: float) -> float | None:
        """The last value of `path` recorded at or before `t` (else the first after)."""
        points = self.series(kind, path)
        if not points:
            return None
        before = [v for ts, v in points if ts <= t]
        return before[-1] if before else points[0][1]

    def delta(self, kind: str, path: str, t0: float, t1: float) -> float:
        a, b = self.value_at(kind, path, t0), self.value_at(kind, path, t1)
        return 0.0 if a is None or b is None else b - a

    def rate(self, kind: str, path: str, t0: float, t1: float) -> float:
        """Average d(path)/dt over [t0, t1] from the samples inside it (per second)."""
        points = [(ts, v) for ts, v in self.series(kind, path) if t0 <= ts <= t1]
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return 0.0
        return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])

    def rates(self, kind: str, path: str, scale: float = 1.0) -> list[tuple[float, float]]:
        """Per-sample rate of a counter: (time, scale * d/dt)."""
        points = self.series(kind, path)
        return [(b[0], scale * (b[1] - a[1]) / (b[0] - a[0]))
                for a, b in itertools.pairwise(points) if b[0] > a[0]]

    def metric(self, t: float, prefix: str) -> dict[str, float]:
        """The scraped series starting with `prefix` at the last scrape at or before `t`."""
        before = [m for m in self.lines["m"] if m["t"] <= t]
        if not before:
            return {}
        return {k: v for k, v in before[-1]["m"].items() if k.startswith(prefix)}

    def metric_sum(self, t: float, prefix: str) -> float:
        return sum(self.metric(t, prefix).values())

    def publisher_rates(self, t0: float, t1: float) -> dict[str, float]:
        """Bits/s the publisher sent per rid over [t0, t1] (its outbound-rtp bytes)."""
        rids = {rid for p in self.lines["p"] for rid in p["layers"]}
        return {rid: 8 * self.rate("p", f"layers.{rid}.bytes", t0, t1) for rid in sorted(rids)}

    def events(self, what: str) -> list[dict[str, Any]]:
        return [e for e in self.lines["e"] if e.get("what") == what]

    def sids(self) -> set[str]:
        return {str(s["sid"]) for s in self.lines["s"] if s.get("sid")}


# -- the call ---------------------------------------------------------------------------------

@dataclass
class CongestionCall:
    """roost (congestion control on) + publisher + subscriber on the star network."""

    lab: Lab
    start_roost: Callable[..., NetnsRoostServer]
    log_dir: Path
    seconds: float = 60.0
    config: dict[str, Any] = field(default_factory=lambda: CC_CONFIG)
    # False: no Python subscriber child (`sub` stays None); someone else subscribes.
    python_subscriber: bool = True
    # Called on every poll of `wait()` before the timeline is read (e.g. to append frames
    # another subscriber reports); an exception from one ends the wait.
    pollers: list[Callable[[], None]] = field(default_factory=list)
    net: Star = field(init=False)
    roost: NetnsRoostServer = field(init=False)
    pub: ScenarioRun = field(init=False)
    sub: ScenarioRun | None = field(init=False, default=None)
    timeline: Timeline = field(init=False)
    paths: dict[str, Path] = field(init=False)  # the timeline files: pub, sub, m (metrics)
    marks: dict[str, float] = field(default_factory=dict)

    def start(self) -> CongestionCall:
        self.net = star(self.lab)
        self.roost = self.start_roost(self.net.server, config=self.config, log_dir=self.log_dir)
        self.paths = paths = {name: self.log_dir / f"{name}.timeline.jsonl"
                              for name in ("pub", "sub", "m")}
        for path in paths.values():
            path.unlink(missing_ok=True)
        self._scrape_stop = paths["m"].with_name(paths["m"].name + ".stop")
        self._scrape_stop.unlink(missing_ok=True)
        self.net.server.popen([sys.executable, "-m", "tests.net.timeline", "scrape",
                               f"{self.roost.http_url}/metrics", str(paths["m"])],
                              cwd=Path(__file__).resolve().parents[2],
                              stdout=open(self.log_dir / "scrape.log", "wb"),
                              stderr=subprocess.STDOUT)
        info = self.roost.info
        self.pub = start_scenario_in(self.net.pub, "tests.net.media_probe:publisher", info,
                                     ROOM, str(paths["pub"]), self.seconds,
                                     timeout=self.seconds + 30, log_dir=self.log_dir)
        if self.python_subscriber:
            self.sub = start_scenario_in(self.net.sub, "tests.net.media_probe:subscriber",
                                         info, ROOM, str(paths["sub"]), self.seconds,
                                         timeout=self.seconds + 30, log_dir=self.log_dir)
        self.timeline = Timeline(paths["pub"], paths["sub"], paths["m"])
        return self

    def children(self) -> list[ScenarioRun]:
        return [run for run in (self.pub, self.sub) if run is not None]

    def now(self) -> float:
        self.timeline.refresh()
        return time.monotonic()

    def mark(self, name: str) -> float:
        self.marks[name] = t = time.monotonic()
        return t

    def wait(self, predicate: Callable[[Timeline], Any], timeout: float, what: str) -> Any:
        """Poll the timeline until `predicate` holds; TimeoutError naming `what`. Fails at
        once (with its output) when a child died."""
        def check() -> Any:
            for run in self.children():
                if run.proc.poll() is not None:
                    run.wait()  # raises with the output when it failed
                    raise AssertionError(f"{run.fn_path} ended early")
            for poll in self.pollers:
                poll()
            return predicate(self.timeline.refresh())
        return until_sync(check, timeout, what, interval=0.1)

    def hold(self, seconds: float) -> None:
        """A measurement window: let `seconds` pass (failing early if a child dies)."""
        end = time.monotonic() + seconds
        self.wait(lambda _: time.monotonic() >= end, seconds + 5, f"{seconds:.1f} s to pass")

    def wait_media(self, timeout: float = 40.0) -> float:
        """Until the subscriber decodes video and hears the tone; returns the time."""
        def flowing(tl: Timeline) -> bool:
            return len(tl.frames()) >= 10 and tl.audio(0, float("inf"))[1] >= 20
        self.wait(flowing, timeout, "video frames and the tone at the subscriber")
        return self.mark("media")

    def publisher_layers(self, window: float = 2.0) -> dict[str, Any]:
        """What the publisher sent over the last `window` s: bits/s and size per rid, and
        per-layer bits/s as roost measured them."""
        now = self.now()
        rates = self.timeline.publisher_rates(now - window, now)
        last = self.timeline.lines["p"][-1]["layers"] if self.timeline.lines["p"] else {}
        sizes = {rid: (d.get("w", 0), d.get("h", 0)) for rid, d in last.items()}
        roost = self.timeline.metric(now, "roost_cc_publisher_layer_bps")
        fps = {rid: d.get("fps", 0) for rid, d in last.items()}
        at_roost = {}
        for key, value in roost.items():
            match = re.search(r'layer="(\d+)"', key)
            if match:
                at_roost[match.group(1)] = round(value)
        return {"sent_bps": {r: round(v) for r, v in rates.items()}, "sizes": sizes,
                "fps": fps, "roost_layer_bps": at_roost}

    def wait_three_layers(self, timeout: float = 30.0, min_fps: float = 20,
                          min_top_bps: float = 1_200_000) -> dict[str, Any]:
        """Until the publisher sends three simulcast layers, each with real bitrate, the top
        one 1280 wide at `min_fps` or more (its encoder has warmed up: on a small machine it
        starts at a few frames per second) and `min_top_bps` (its bandwidth estimate has
        ramped up: early on the top layer is small enough to fit a capped link, and a cap
        would then prove nothing), and roost receives three; else AssertionError with what
        it sends."""
        seen: dict[str, Any] = {}

        def three(_: Timeline) -> bool:
            seen.update(self.publisher_layers())
            sent = [v for v in seen["sent_bps"].values() if v > 30_000]
            wide = max((w for w, _ in seen["sizes"].values()), default=0)
            at_roost = [v for v in seen["roost_layer_bps"].values() if v > 30_000]
            top = max(seen["fps"].values(), default=0)
            top_bps = max(seen["sent_bps"].values(), default=0)
            return (len(sent) >= 3 and wide >= 1280 and len(at_roost) >= 3 and top >= min_fps
                    and top_bps >= min_top_bps)
        try:
            self.wait(three, timeout, "three simulcast layers")
        except TimeoutError:
            raise AssertionError(f"the publisher does not send three layers: {seen}") from None
        return seen

    def wait_layer(self, layer: int, since: float, timeout: float) -> float | None:
        """Time the subscriber steadily got `layer` after `since`, or None after `timeout`."""
        try:
            return float(self.wait(lambda tl: tl.first_steady(since, layer), timeout,
                                   f"{LAYER_NAMES[layer]} layer"))
        except TimeoutError:
            return None

    def release(self) -> None:
        """Tell the children to end (a line on their stdin) and the scraper (its stop file,
        checked between scrapes); safe to call again and after a child has ended."""
        self._scrape_stop.touch()
        for run in self.children():
            with contextlib.suppress(OSError, ValueError):
                run.send_line("stop")

    def stop(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Stop the children (and the scraper); their results (publisher, subscriber; {}
        without a Python subscriber)."""
        self.release()
        results = self.pub.wait(), (self.sub.wait() if self.sub is not None else {})
        self.timeline.refresh()
        return results


# -- the scraper ---------------------------------------------------------------------------

def parse_metrics(text: str, prefixes: Iterable[str] = METRIC_PREFIXES) -> dict[str, float]:
    out = {}
    wanted = tuple(prefixes)
    for line in text.splitlines():
        if line.startswith(wanted):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
    return out


def scrape(url: str, path: str, interval: float = 0.5) -> None:
    stop = Path(path + ".stop")
    with open(path, "a", buffering=1) as out:
        while not stop.exists():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    text = resp.read().decode()
                out.write(json.dumps({"k": "m", "t": round(started, 4),
                                      "m": parse_metrics(text)}) + "\n")
            except OSError as exc:
                print(f"scrape failed: {exc}", flush=True)
            time.sleep(max(0.0, started + interval - time.monotonic()))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "scrape":
        scrape(sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 0.5)
    else:
        raise SystemExit("usage: python -m tests.net.timeline scrape URL OUT [INTERVAL]")

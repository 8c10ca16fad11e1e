"""Agent dispatch benchmark: many rooms created at once, how long until each has its agent.

    python bench/agents.py                    # 50 rooms, with 1 worker and then 2 workers
    python bench/agents.py --rooms 100 --workers 2
    python bench/agents.py --quick            # 10 rooms, 1 and 2 workers

For each worker count, a fresh `roost serve --dev` (debug logs, one webhook URL pointing at
this process) and that many real `livekit-agents` 1.8.9 workers (`tests/agents/agent_app.py
dev` from .venv-agents) that keep warm job processes ready (IDLE_PROCESSES, by default
enough for every room) and publish nothing (TONE=0), so the worker's side is as fast as the
SDK makes it. Then all rooms are created at once with RoomService.CreateRoom (livekit-api,
concurrently) and the benchmark waits for every room's agent.

Client side: CreateRoom call → the `participant_joined` webhook of the room's agent (kind
AGENT) arrives here; roost sends it when the agent's connection is up (ACTIVE), as
livekit-server does. The webhook receiver stamps arrival with time.time(); delivery over
loopback costs a few ms, shown as its own stage, so this is good to about 5 ms without
polling anything.
Server side: room created → the agent ACTIVE, from roost's own log lines (millisecond
timestamps, the same wall clock as here). The breakdown puts roost's log lines (room
created, job offered, offer answered, assignment sent, agent joining, agent active) next to
the worker's (received job request, received assignment).
A PNG of the per-room latencies goes to bench/out/ when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from livekit import api  # noqa: E402
from tests.helpers.agents import AgentWorker, agents_available  # noqa: E402
from tests.helpers.server import RoostServer, free_port, start_server  # noqa: E402

from machine import loadavg, machine_busy  # noqa: E402  (bench/ is on sys.path when run)

OUT = ROOT / "bench" / "out"
JOIN_TIMEOUT = 180.0  # seconds for every room's agent to arrive
REGISTER_TIMEOUT = 240.0  # a worker warms all its idle processes before it registers

# (stage name, from event, to event, whose time it is)
STAGES = [
    ("CreateRoom → room created", "call", "room_created", "api"),
    ("room created → job offered", "room_created", "offered", "roost"),
    ("offered → worker has offer", "offered", "w_request", "transit"),
    ("worker has offer → answer at roost", "w_request", "answered", "worker"),
    ("answer → assignment sent", "answered", "assigned", "roost"),
    ("assignment sent → worker has it", "assigned", "w_assignment", "transit"),
    ("worker has it → agent's join at roost", "w_assignment", "joining", "worker"),
    ("agent joining → ACTIVE (ICE, DTLS)", "joining", "active", "both"),
    ("ACTIVE → webhook here", "active", "webhook", "delivery"),
]
TOTALS = [
    ("client: CreateRoom → agent webhook", "call", "webhook"),
    ("server: room created → agent ACTIVE", "room_created", "active"),
    ("roost's own part (created→offered + answer→assigned)", None, None),
    ("worker's part (offer→answer + assignment→joining)", None, None),
]
ROOST_MARKS = {"room created": "room_created", "job offered": "offered",
               "job offer answered": "answered", "job assignment sent": "assigned",
               "participant joining": "joining", "participant active": "active"}
WORKER_MARKS = {"received job request": "w_request", "received assignment": "w_assignment"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FIELD = re.compile(r"\b(room|participant|worker|job)=(\S+)")


def log_time(line: str) -> float | None:
    """The wall-clock time of a `2026-01-02 03:04:05,678 ...` log line (local time)."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None






def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class WebhookSink:
    """Receives roost's webhooks and stamps each agent's participant_joined on arrival."""

    joined: dict[str, float] = field(default_factory=dict)  # room → arrival time
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    expected: set[str] = field(default_factory=set)
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def receive(self, request: web.Request) -> web.Response:
        now = time.time()
        event = json.loads(await request.read())
        participant = event.get("participant") or {}
        if event.get("event") == "participant_joined" and participant.get("kind") == "AGENT":
            room = event.get("room", {}).get("name", "")
            self.joined.setdefault(room, now)
            if self.expected and self.expected <= self.joined.keys():
                self.arrived.set()
        return web.Response(text="ok")

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def roost_marks(log: Path) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Per room, the first time of each roost mark; and which worker took the room's job."""
    marks: dict[str, dict[str, float]] = {}
    workers: dict[str, str] = {}
    for line in log.read_text("utf-8", "replace").splitlines():
        for text, mark in ROOST_MARKS.items():
            if f" {text}" not in line:
                continue
            fields = dict(_FIELD.findall(line))
            if mark in ("joining", "active") and not fields.get("participant", "").startswith(
                    "agent-"):
                continue
            at = log_time(line)
            room = fields.get("room")
            if at is None or room is None:
                continue
            marks.setdefault(room, {}).setdefault(mark, at)
            if mark == "assigned" and "worker" in fields:
                workers.setdefault(room, fields["worker"])
    return marks, workers


def worker_marks(log: Path, marks: dict[str, dict[str, float]]) -> int:
    """Add the worker's own marks to `marks`; returns how many jobs waited for a process."""
    cold = 0
    for raw in log.read_text("utf-8", "replace").splitlines():
        line = _ANSI.sub("", raw)
        if "no warmed process available" in line:
            cold += 1
        for text, mark in WORKER_MARKS.items():
            if f" - {text} " not in line or "{" not in line:
                continue
            at = log_time(line)
            try:
                extra = json.loads(line[line.index("{"):])
            except ValueError:
                continue
            room = extra.get("room")
            if at is not None and room:
                marks.setdefault(room, {}).setdefault(mark, at)
    return cold


def dispatch_metric(server: RoostServer) -> tuple[float, float]:
    """roost_agent_dispatch_seconds (job created → assigned): (sum, count) from /metrics."""
    with urllib.request.urlopen(server.http_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = {}
    for line in text.splitlines():
        for what in ("sum", "count"):
            if line.startswith(f"roost_agent_dispatch_seconds_{what} "):
                found[what] = float(line.split()[1])
    return found.get("sum", 0.0), found.get("count", 0.0)


async def settle(max_wait: float = 20.0, quiet: float = 0.5) -> float:
    """Wait (at most `max_wait`) until the machine is below `quiet` of a core busy for a
    second, e.g. after the workers warmed their processes; returns the last busy figure."""
    deadline = time.monotonic() + max_wait
    busy = math.inf
    cores = os.cpu_count() or 1
    while time.monotonic() < deadline:
        b0, t0 = machine_busy()
        await asyncio.sleep(1.0)  # a measuring window, not a wait for an event
        b1, t1 = machine_busy()
        busy = cores * (b1 - b0) / max(1, t1 - t0)
        if busy < quiet:
            break
    return busy


@dataclass
class Run:
    workers: int
    idle: int
    rooms: list[str]
    marks: dict[str, dict[str, float]]
    by_worker: dict[str, str]
    cold: int
    machine_cpu: float
    before_cpu: float
    metric: tuple[float, float]
    missing: list[str]

    def stage(self, start: str, end: str) -> list[float]:
        """Per room (that has both marks), end - start in ms."""
        out = []
        for room in self.rooms:
            m = self.marks.get(room, {})
            if start in m and end in m:
                out.append(1000 * (m[end] - m[start]))
        return out

    def parts(self) -> tuple[list[float], list[float]]:
        roost, worker = [], []
        for room in self.rooms:
            m = self.marks.get(room, {})
            if all(k in m for k in ("room_created", "offered", "answered", "assigned")):
                roost.append(1000 * (m["offered"] - m["room_created"]
                                     + m["assigned"] - m["answered"]))
            if all(k in m for k in ("offered", "answered", "assigned", "joining")):
                worker.append(1000 * (m["answered"] - m["offered"]
                                      + m["joining"] - m["assigned"]))
        return roost, worker


async def run_config(n_workers: int, n_rooms: int, idle: int, tmp: Path) -> Run:
    sink = WebhookSink()
    await sink.start()
    server = start_server("--webhook-url", sink.url, log_dir=tmp)
    workers = [AgentWorker(server, tmp / f"worker-{n_workers}w-{i}.log", tag=f"W{i}",
                           env={"IDLE_PROCESSES": str(idle), "TONE": "0"})
               for i in range(n_workers)]
    lk = api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
    try:
        t = time.monotonic()
        await asyncio.gather(*(asyncio.to_thread(w.start, REGISTER_TIMEOUT) for w in workers))
        print(f"  {n_workers} worker(s) registered with {idle} warm processes each in "
              f"{time.monotonic() - t:.1f} s", flush=True)
        before = await settle()
        rooms = [f"bench-{n_workers}w-{i:03d}" for i in range(n_rooms)]
        sink.expected = set(rooms)
        calls: dict[str, float] = {}

        async def create(name: str) -> None:
            calls[name] = time.time()
            await lk.room.create_room(api.CreateRoomRequest(name=name))

        b0, t0 = machine_busy()
        await asyncio.gather(*(create(name) for name in rooms))
        try:
            await asyncio.wait_for(sink.arrived.wait(), JOIN_TIMEOUT)
        except TimeoutError:
            pass
        b1, t1 = machine_busy()
        cores = os.cpu_count() or 1
        marks, by_worker = roost_marks(server.log_path)
        cold = sum(worker_marks(w.log_path, marks) for w in workers)
        for name in rooms:
            marks.setdefault(name, {})["call"] = calls[name]
            if name in sink.joined:
                marks[name]["webhook"] = sink.joined[name]
        return Run(workers=n_workers, idle=idle, rooms=rooms, marks=marks,
                   by_worker=by_worker, cold=cold,
                   machine_cpu=cores * (b1 - b0) / max(1, t1 - t0), before_cpu=before,
                   metric=dispatch_metric(server),
                   missing=sorted(set(rooms) - sink.joined.keys()))
    finally:
        await lk.aclose()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
        server.stop()
        await sink.close()


def fmt(values: list[float]) -> str:
    if not values:
        return f"{'-':>8} {'-':>8} {'-':>8}"
    return (f"{quantile(values, 0.5):8.1f} {quantile(values, 0.95):8.1f} "
            f"{max(values):8.1f}")


def report(runs: list[Run]) -> None:
    label_w = 54
    head = f"{'ms (p50 p95 max over rooms)':<{label_w}}" + "".join(
        f" | {f'{r.workers} worker(s)':^26}" for r in runs)
    print("\n" + head)
    print(f"{'':<{label_w}}" + "".join(f" | {'p50':>8} {'p95':>8} {'max':>8}" for _ in runs))
    print("-" * len(head))
    for label, start, end in TOTALS[:2]:
        assert start and end
        print(f"{label:<{label_w}}" + "".join(f" | {fmt(r.stage(start, end))}" for r in runs))
    roost_worker = [r.parts() for r in runs]
    for i, (label, _, _) in enumerate(TOTALS[2:]):
        print(f"{label:<{label_w}}" + "".join(f" | {fmt(p[i])}" for p in roost_worker))
    print("-" * len(head))
    for label, start, end, who in STAGES:
        text = f"  {label} [{who}]"
        print(f"{text:<{label_w}}" + "".join(f" | {fmt(r.stage(start, end))}" for r in runs))
    print()
    for r in runs:
        split: dict[str, int] = {}
        for w in r.by_worker.values():
            split[w] = split.get(w, 0) + 1
        total, count = r.metric
        mean = f"{1000 * total / count:.1f} ms" if count else "-"
        print(f"  {r.workers} worker(s): {len(r.rooms) - len(r.missing)}/{len(r.rooms)} agents "
              f"joined; jobs per worker {sorted(split.values(), reverse=True)}; jobs that "
              f"waited for a new process {r.cold} (warm processes per worker {r.idle}); "
              f"roost_agent_dispatch_seconds mean {mean} over {count:.0f}; machine "
              f"{r.machine_cpu:.0%} busy during the burst ({r.before_cpu:.0%} before)")
        if r.missing:
            print(f"    MISSING agents in: {', '.join(r.missing[:10])}")


def plot(runs: list[Run]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  no plot: matplotlib is not installed in this venv (pip install matplotlib)")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    fig, (ecdf, bars) = plt.subplots(1, 2, figsize=(13, 5))
    for r in runs:
        for start, end, style, what in (("call", "webhook", "-", "client"),
                                        ("room_created", "active", "--", "server")):
            values = sorted(r.stage(start, end))
            if values:
                ys = [(i + 1) / len(values) for i in range(len(values))]
                ecdf.step(values, ys, style, where="post",
                          label=f"{r.workers} worker(s), {what} side")
    ecdf.set_xlabel("room created → agent in the room (ms)")
    ecdf.set_ylabel("fraction of rooms")
    ecdf.set_title(f"{len(runs[0].rooms)} rooms created at once")
    ecdf.grid(alpha=0.3)
    ecdf.legend()
    for i, r in enumerate(runs):
        left = 0.0
        for j, (label, start, end, _) in enumerate(STAGES):
            width = quantile(r.stage(start, end), 0.5)
            width = 0.0 if math.isnan(width) else max(0.0, width)
            bars.barh(i, width, left=left, color=plt.get_cmap("tab10")(j),
                      label=label if i == 0 else None)
            left += width
    bars.set_yticks(range(len(runs)), [f"{r.workers} worker(s)" for r in runs])
    bars.set_xlabel("median of each stage (ms), stacked")
    bars.set_title("where the time goes")
    bars.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = OUT / "agents-dispatch.png"
    fig.savefig(path, dpi=110)
    print(f"  plot: {path.relative_to(ROOT)}")


async def main_async(args: argparse.Namespace) -> int:
    why = agents_available()
    if why:
        print(f"bench/agents.py: {why}")
        return 1
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="roost-agents-bench-"))
    print(f"roost agent dispatch bench: Python {platform.python_version()}, {os.cpu_count()} "
          f"CPUs, load average {loadavg()} before starting; logs in {tmp}")
    print(f"{args.rooms} rooms created at once by CreateRoom; workers "
          f"{', '.join(map(str, args.workers))}; livekit-agents dev mode, TONE=0\n")
    runs = []
    for n in args.workers:
        idle = args.idle if args.idle is not None else math.ceil(args.rooms / n)
        runs.append(await run_config(n, args.rooms, idle, tmp))
    report(runs)
    plot(runs)
    print(f"  total run {time.monotonic() - started:.0f} s; load average {loadavg()} at the end")
    cores = os.cpu_count() or 1
    for r in runs:
        if r.machine_cpu > 0.85 * cores:
            print(f"  WARNING: with {r.workers} worker(s) all CPUs were {r.machine_cpu:.0%} busy"
                  " during the burst: the stages queue behind each other for CPU")
    return 0 if not any(r.missing for r in runs) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=50, help="rooms created at once")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to run, one after the other (default: 1 2)")
    parser.add_argument("--idle", type=int, default=None,
                        help="warm job processes per worker (default: rooms / workers)")
    parser.add_argument("--quick", action="store_true", help="10 rooms")
    args = parser.parse_args()
    if args.quick:
        args.rooms = 10
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

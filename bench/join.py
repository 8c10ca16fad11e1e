"""Join latency and server CPU per join, with a raw signalling client and the official SDK.

Phases, all into one room:
  raw-seq   N sequential joins by a raw aiohttp WebSocket client (token as
            `Authorization: Bearer`, frames decoded with `livekit.protocol.rtc.SignalResponse`):
            time from the WebSocket being open to the JoinResponse (and the handshake before it).
  sdk-seq   N sequential `room.connect()` with the official SDK (includes ICE + DTLS).
  sdk-conc  C concurrent `room.connect()`; did all succeed, and did everyone see everyone?

Bounded: server start 15 s, raw phase 20 s, SDK phases --sdk-timeout (75 s).

The SDK phases run in a child process (`--sdk-worker`) because a Rust panic in the SDK aborts
its process. Server CPU seconds per join come from /proc/<pid>/stat before and after each
phase (only when the server is local: started here, or given with --server-pid).

    python bench/join.py                      # starts roost itself on a free port
    python bench/join.py --url ws://127.0.0.1:7880 --server-pid 1234
    python bench/join.py --udp-port 7882 --concurrent 100   # every peer connection on one port
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.server import (  # noqa: E402
    DEV_API_KEY,
    DEV_API_SECRET,
    make_token,
    start_server,
)

ROOM = "bench-join"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {percentile(values, 50) * 1000:7.1f} ms   p95 {percentile(values, 95) * 1000:7.1f} ms"
        f"   max {max(values) * 1000:7.1f} ms   (n={len(values)})"
    )


def cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --- raw signalling client -------------------------------------------------------------------


async def raw_join(
    session: aiohttp.ClientSession, url: str, token: str, timeout: float = 10.0
) -> tuple[float, float]:
    """One join by a bare WebSocket client: (handshake seconds, open→JoinResponse seconds)."""
    query = (
        "sdk=python&protocol=16&client_protocol=1&auto_subscribe=0&adaptive_stream=0"
        "&version=1.2.1&os=linux"
    )
    started = time.perf_counter()
    async with session.ws_connect(
        f"{url}/rtc?{query}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
        max_msg_size=0,
    ) as ws:
        opened = time.perf_counter()
        deadline = opened + timeout
        while True:
            msg = await ws.receive(timeout=max(0.01, deadline - time.perf_counter()))
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise RuntimeError(f"unexpected frame before JoinResponse: {msg.type} {msg.data!r}")
            response = proto_rtc.SignalResponse()
            response.ParseFromString(msg.data)
            kind = response.WhichOneof("message")
            if kind == "join":
                joined = time.perf_counter()
                if not response.join.participant.sid.startswith("PA_"):
                    raise RuntimeError(f"JoinResponse without a participant sid: {response.join}")
                break
            if kind == "leave":
                raise RuntimeError(f"server sent leave instead of JoinResponse: {response.leave}")
        leave = proto_rtc.SignalRequest(
            leave=proto_rtc.LeaveRequest(
                reason=models.DisconnectReason.CLIENT_INITIATED,
                action=proto_rtc.LeaveRequest.DISCONNECT,
            )
        )
        await ws.send_bytes(leave.SerializeToString())
    return opened - started, joined - opened


async def raw_sequential(url: str, count: int, token_for: Callable[[str], str]) -> dict[str, Any]:
    handshakes: list[float] = []
    to_join: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            try:
                hs, tj = await raw_join(session, url, token_for(f"raw-{i}-{uuid.uuid4().hex[:6]}"))
                handshakes.append(hs)
                to_join.append(tj)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    return {"handshake": handshakes, "open_to_join": to_join, "errors": errors}


# --- official SDK (child process) -------------------------------------------------------------


async def sdk_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in the child: sequential then concurrent room.connect() with the official SDK."""
    from livekit import rtc
    from tests.helpers.sdk import wait_until

    def token(identity: str) -> str:
        return make_token(args.api_key, args.api_secret, identity, ROOM)

    async def connect(identity: str) -> tuple[rtc.Room, float]:
        room = rtc.Room()
        started = time.perf_counter()
        await asyncio.wait_for(room.connect(args.url, token(identity)), args.connect_timeout)
        return room, time.perf_counter() - started

    def mark(phase: str) -> None:
        # The parent reads the server's CPU time at these marks.
        times = os.times()
        print(json.dumps({"mark": phase, "cpu": times.user + times.system}), flush=True)
        sys.stdin.readline()

    result: dict[str, Any] = {}

    mark("sdk-seq-start")
    seq: list[float] = []
    seq_errors: list[str] = []
    for i in range(args.sequential):
        try:
            room, elapsed = await connect(f"sdk-{i}")
            seq.append(elapsed)
            await asyncio.wait_for(room.disconnect(), 10)
        except Exception as exc:
            seq_errors.append(f"{type(exc).__name__}: {exc}")
    result["sdk_seq"] = {"connect": seq, "errors": seq_errors}
    mark("sdk-seq-end")

    mark("sdk-conc-start")
    wall_start = time.perf_counter()
    outcomes = await asyncio.gather(
        *(connect(f"conc-{i}") for i in range(args.concurrent)), return_exceptions=True
    )
    wall = time.perf_counter() - wall_start
    rooms = [o[0] for o in outcomes if isinstance(o, tuple)]
    times = [o[1] for o in outcomes if isinstance(o, tuple)]
    errors = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    mark("sdk-conc-joined")

    # Did everyone learn about everyone? (bounded wait)
    expected = len(rooms) - 1
    with contextlib.suppress(TimeoutError):
        await wait_until(
            lambda: all(len(r.remote_participants) >= expected for r in rooms),
            timeout=args.presence_timeout,
        )
    seen = [len(r.remote_participants) for r in rooms]
    await asyncio.gather(
        *(asyncio.wait_for(r.disconnect(), 15) for r in rooms), return_exceptions=True
    )
    result["sdk_conc"] = {
        "connect": times,
        "errors": errors,
        "wall": wall,
        "all_saw_all": bool(rooms) and all(n == expected for n in seen),
        "min_seen": min(seen) if seen else 0,
    }
    mark("sdk-conc-end")
    return result


def run_sdk_phases(
    args: argparse.Namespace,
    pid: int | None,
    cpu: dict[str, float | None],
    client_cpu: dict[str, float | None],
) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("RUST_LOG", "livekit=warn")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--sdk-worker",
        "--url",
        args.url,
        "--api-key",
        args.api_key,
        "--api-secret",
        args.api_secret,
        "--sequential",
        str(args.sequential),
        "--concurrent",
        str(args.concurrent),
        "--connect-timeout",
        str(args.connect_timeout),
    ]
    log_path = Path(args.log_dir) / "sdk-worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=ROOT
        )
        assert proc.stdin is not None and proc.stdout is not None
        watchdog = threading.Timer(args.sdk_timeout, proc.kill)  # bounds the whole phase
        watchdog.start()
        result: dict[str, Any] | None = None
        try:
            for line in proc.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if "mark" in message:
                    cpu[message["mark"]] = cpu_seconds(pid)
                    client_cpu[message["mark"]] = message["cpu"]
                    proc.stdin.write(b"\n")
                    proc.stdin.flush()
                elif "result" in message:
                    result = message["result"]
            proc.wait(10)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if result is None:
        tail = log_path.read_text("utf-8", "replace")[-3000:]
        raise RuntimeError(
            f"SDK worker failed (exit {proc.returncode}, limit {args.sdk_timeout:.0f} s); "
            f"log {log_path}:\n{tail}"
        )
    return result


# --- main -------------------------------------------------------------------------------------


def per_join(cpu: dict[str, float | None], start: str, end: str, joins: int) -> str:
    a, b = cpu.get(start), cpu.get(end)
    if a is None or b is None or joins == 0:
        return "n/a"
    return f"{(b - a) / joins * 1000:.1f} ms CPU/join ({b - a:.2f} s for {joins})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="ws:// URL of a running roost (default: start one)")
    parser.add_argument("--server-pid", type=int, help="pid of that server, for CPU figures")
    parser.add_argument("--api-key", default=DEV_API_KEY)
    parser.add_argument("--api-secret", default=DEV_API_SECRET)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--presence-timeout", type=float, default=10.0)
    parser.add_argument("--sdk-timeout", type=float, default=75.0)
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--udp-port", type=int, default=0,
                        help="start roost with rtc.udp_port (one shared UDP socket)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--sdk-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sdk_worker:
        result = asyncio.run(sdk_worker(args))
        print(json.dumps({"result": result}), flush=True)
        os._exit(0)  # skip the SDK's FFI teardown

    import tempfile

    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="roost-bench-")
    started = time.monotonic()
    server = None
    pid = args.server_pid
    if args.url is None:
        extra = ("--udp-port", str(args.udp_port)) if args.udp_port else ()
        server = start_server(*extra, log_dir=Path(args.log_dir))
        args.url, pid = server.url, server.pid
        if args.udp_port:
            print(f"roost started with rtc.udp_port {args.udp_port}", flush=True)
    try:
        cpu: dict[str, float | None] = {}

        def token_for(identity: str) -> str:
            return make_token(args.api_key, args.api_secret, identity, ROOM)

        cpu["raw-start"] = cpu_seconds(pid)
        raw = asyncio.run(
            asyncio.wait_for(raw_sequential(args.url, args.sequential, token_for), 20)
        )
        cpu["raw-end"] = cpu_seconds(pid)
        client_cpu: dict[str, float | None] = {}
        sdk = run_sdk_phases(args, pid, cpu, client_cpu)
    finally:
        if server is not None:
            server.stop()
    elapsed = time.monotonic() - started

    conc = sdk["sdk_conc"]
    ok = len(conc["connect"])
    if args.json:
        figures = {"raw": raw, "sdk": sdk, "cpu": cpu, "client_cpu": client_cpu}
        print(json.dumps({**figures, "elapsed": elapsed}, indent=1))
    print(f"roost join benchmark: {args.url}  room {ROOM!r}  ({elapsed:.1f} s)")
    print(f"raw WebSocket, {args.sequential} sequential joins")
    print(f"  handshake          {summary_ms(raw['handshake'])}")
    print(f"  open→JoinResponse  {summary_ms(raw['open_to_join'])}")
    print(f"  server CPU         {per_join(cpu, 'raw-start', 'raw-end', len(raw['handshake']))}")
    print(f"SDK room.connect(), {args.sequential} sequential")
    print(f"  connect            {summary_ms(sdk['sdk_seq']['connect'])}")
    seq_joins = len(sdk["sdk_seq"]["connect"])
    print(f"  server CPU         {per_join(cpu, 'sdk-seq-start', 'sdk-seq-end', seq_joins)}")
    print(f"  SDK process CPU    {per_join(client_cpu, 'sdk-seq-start', 'sdk-seq-end', seq_joins)}")
    print(f"SDK room.connect(), {args.concurrent} concurrent")
    print(f"  connect            {summary_ms(conc['connect'])}   wall {conc['wall']:.2f} s")
    print(f"  server CPU         {per_join(cpu, 'sdk-conc-start', 'sdk-conc-joined', ok)}")
    print(f"  SDK process CPU    {per_join(client_cpu, 'sdk-conc-start', 'sdk-conc-joined', ok)}")
    all_ok = "yes" if ok == args.concurrent else "NO"
    print(f"  all succeeded      {all_ok} ({ok}/{args.concurrent})")
    print(
        f"  all saw all        {'yes' if conc['all_saw_all'] else 'NO'}"
        f" (fewest remote participants seen: {conc['min_seen']} of {max(0, ok - 1)})"
    )
    errors = raw["errors"] + sdk["sdk_seq"]["errors"] + conc["errors"]
    for error in errors[:10]:
        print(f"  error: {error}")
    if server is not None:
        print(f"server log: {server.log_path}")
    return 0 if not errors and ok == args.concurrent and conc["all_saw_all"] else 1


if __name__ == "__main__":
    sys.exit(main())

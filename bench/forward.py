"""Forwarding benchmark: one room, audio publishers, up to hundreds of receive-only subscribers.

    python bench/forward.py                       # 4 publishers, 50/100/200 subscribers
    python bench/forward.py --subscribers 300     # larger fan-out
    python bench/forward.py --quick               # 2 publishers, 20/50 subscribers
    python bench/forward.py --compare-udp-port    # one socket per PC vs rtc.udp_port, side by side
    python bench/forward.py --compare-rev REV     # this tree's src/ vs git revision REV's
    python bench/forward.py --compare-congestion-control  # rtc.congestion_control off vs on

A real `roost serve` process forwards; the clients are lite LiveKit clients
(`tests/media/liteclient.py`: signalling + ICE/DTLS/SRTP, no codecs) in this process, on
uvloop. Publishers send 100-byte Opus-shaped packets (audio-level and mid extensions)
whose payload carries the sender's clock; subscribers decrypt every packet and record the
one-way time. Printed, for each fan-out step:
  - server CPU µs per forwarded packet and the forwarded packets/s that makes one fully busy
    core (from /proc CPU time over the window and the packets subscribers received),
  - loss (packets the subscribers should have got and did not),
then, at half of the measured capacity: added forwarding latency p50/p99 (sender clock →
subscriber receive callback, same machine, so client-side scheduling is included), loss,
server RSS per participant, and the tight pure-Python loop of `bench/forward_loop.py`
(unprotect, rewrite, protect, send; no event loop, no sockets read) as the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import math
import multiprocessing
import os
import platform
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.server import RoostServer, start_server  # noqa: E402
from tests.media.liteclient import LiteClient  # noqa: E402

from machine import loadavg, machine_busy  # noqa: E402  (bench/ is on sys.path when run)
from roost.media.rtp import build_extension_block  # noqa: E402

ROOM = "bench"
PACKET_SIZE = 100
LEVEL_ID, MID_ID = 1, 4
_PAYLOAD = struct.Struct("!BHId")  # TOC, publisher index, counter, send clock


def _load_forward_loop():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("forward_loop", ROOT / "bench/forward_loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["forward_loop"] = module
    spec.loader.exec_module(module)
    return module


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0






def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Publisher:
    index: int
    client: LiteClient
    ssrc: int
    track_sid: str = ""
    counter: int = 0
    seq: int = 0
    head_ext: bytes = b""

    def packet(self, now: float) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFF
        self.counter += 1
        head = struct.pack("!BBHII", 0x90, 111, self.seq, (self.counter * 960) & 0xFFFFFFFF,
                           self.ssrc)
        body = _PAYLOAD.pack(0xFC, self.index, self.counter, now)
        pad = PACKET_SIZE - len(head) - len(self.head_ext) - len(body)
        return b"".join((head, self.head_ext, body, bytes(pad)))


@dataclass
class Stats:
    """What subscribers received in the current window."""

    latencies: list[float] = field(default_factory=list)
    received: int = 0
    recording: bool = False
    window: dict[int, tuple[int, int]] = field(default_factory=dict)  # pub -> counter range


class Bench:
    def __init__(self, server: RoostServer, publishers: int, loop_clock: float) -> None:
        self.server = server
        self.n_publishers = publishers
        self.publishers: list[Publisher] = []
        self.subscribers: list[LiteClient] = []
        self.stats = Stats()
        self.clock = time.perf_counter
        self.loop_clock = loop_clock

    def on_rtp(self, plain: bytes) -> None:
        now = self.clock()
        st = self.stats
        if not st.recording or len(plain) < 12 + _PAYLOAD.size:
            return
        off = 12
        if plain[0] & 0x10:
            off += 4 + 4 * struct.unpack_from("!H", plain, 14)[0]
        _, pub, counter, sent = _PAYLOAD.unpack_from(plain, off)
        lo_hi = st.window.get(pub)
        if lo_hi is not None and lo_hi[0] <= counter < lo_hi[1]:
            st.received += 1
            st.latencies.append(now - sent)

    async def join(self, subscribers: int, concurrency: int = 8) -> None:
        srv = self.server
        if not self.publishers:
            for i in range(self.n_publishers):
                client = LiteClient(srv.url, srv.token(f"pub{i}", ROOM), auto_subscribe=False)
                await client.connect()
                pub = Publisher(i, client, ssrc=0x10000 + i)
                pub.head_ext = build_extension_block([(LEVEL_ID, bytes([0x80 | 50])),
                                                      (MID_ID, b"0")])
                pub.track_sid = await client.publish_audio(f"mic{i}", pub.ssrc)
                self.publishers.append(pub)
        want = subscribers - len(self.subscribers)
        sem = asyncio.Semaphore(concurrency)

        async def one(k: int) -> None:
            async with sem:
                client = LiteClient(srv.url, srv.token(f"sub{k}", ROOM))
                client.subscriber.on_rtp = self.on_rtp
                await client.connect(timeout=30)
                self.subscribers.append(client)

        base = len(self.subscribers)
        await asyncio.gather(*(one(base + k) for k in range(want)))
        # every subscriber must have every publisher's track before measuring
        deadline = time.monotonic() + 60
        while any(len(c.tracks) < len(self.publishers) for c in self.subscribers):
            if time.monotonic() > deadline:
                short = sum(1 for c in self.subscribers if len(c.tracks) < len(self.publishers))
                raise TimeoutError(f"{short} subscribers lack tracks after 60 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)

    async def run(self, pps: float, seconds: float) -> dict[str, float]:
        """Publish at `pps` per publisher for `seconds`; measure the middle of it."""
        warmup, tail = 0.5, 0.3
        pubs = self.publishers
        interval = 1.0 / pps
        # The clients' own garbage collections would show up as forwarding latency.
        gc.collect()
        gc.freeze()
        gc.disable()
        start = self.clock() + 0.05
        next_at = [start + i * interval / len(pubs) for i in range(len(pubs))]
        st = self.stats = Stats()
        t_end = start + warmup + seconds
        measuring = False
        cpu0 = wall0 = me0 = 0.0
        busy0 = (0, 0)
        first: dict[int, int] = {}
        while True:
            now = self.clock()
            if not measuring and now >= start + warmup:
                measuring = True
                first = {p.index: p.counter + 1 for p in pubs}
                st.window = {i: (c, 1 << 62) for i, c in first.items()}
                st.recording = True
                cpu0, wall0, me0 = self.server.cpu_seconds(), now, self_cpu()
                busy0 = machine_busy()
            if now >= t_end:
                break
            for i, p in enumerate(pubs):
                while next_at[i] <= now:
                    p.client.publisher.send_rtp(p.packet(self.clock()))  # type: ignore[union-attr]
                    next_at[i] += interval
            await asyncio.sleep(0.001)
        st.window = {p.index: (first[p.index], p.counter + 1) for p in pubs}
        sent = sum(p.counter + 1 - first[p.index] for p in pubs)
        cpu1, wall1, me1 = self.server.cpu_seconds(), self.clock(), self_cpu()
        busy1 = machine_busy()
        others = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * (os.cpu_count() or 1)
        await asyncio.sleep(tail)
        st.recording = False
        gc.enable()
        await asyncio.sleep(1.0)  # let every queue drain before the next window
        expected = sent * len(self.subscribers)
        lat = sorted(st.latencies)
        cpu = cpu1 - cpu0
        return {
            "expected": expected,
            "received": st.received,
            "loss": 1 - st.received / expected if expected else 0.0,
            "server_cpu": cpu / (wall1 - wall0),
            "machine_cpu": others,
            "client_cpu": (me1 - me0) / (wall1 - wall0),
            "us_per_pkt": cpu / st.received * 1e6 if st.received else math.inf,
            "fwd_pps": st.received / (wall1 - wall0),
            "p50_ms": lat[len(lat) // 2] * 1e3 if lat else math.nan,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else math.nan,
            "max_ms": lat[-1] * 1e3 if lat else math.nan,
        }

    async def idle_cpu(self, seconds: float = 3.0) -> float:
        """Server CPU (in cores) with everyone connected and nothing published: ICE consent
        checks, signalling pings, RTCP timers. A fixed cost of having these participants."""
        await asyncio.sleep(0.5)
        c0, t0 = self.server.cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        return (self.server.cpu_seconds() - c0) / (time.perf_counter() - t0)

    async def close(self) -> None:
        for c in [p.client for p in self.publishers] + self.subscribers:
            try:
                await asyncio.wait_for(c.close(), 5)
            except Exception:
                pass


def _drain(count: int, ports: Any, stop: Any) -> None:
    """Child process: `count` UDP sockets on uvloop that read and discard everything."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        bound = []
        for _ in range(count):
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
            bound.append(transport.get_extra_info("sockname")[1])
        ports.put(bound)
        while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing event
            await asyncio.sleep(0.05)

    asyncio.run(serve())


def kernel_floor(receivers: int, rate: float, seconds: float = 2.0) -> float:
    """CPU µs per plain `sendto` of a 100-byte datagram to sockets another process drains:
    the loopback delivery (and receiver wake-ups) every forwarded packet also pays."""
    ctx = multiprocessing.get_context("spawn")
    ports_q, stop = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=_drain, args=(receivers, ports_q, stop), daemon=True)
    child.start()
    try:
        ports = ports_q.get(timeout=30)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        data = bytes(PACKET_SIZE + 10)
        per_ms = max(1, int(rate / 1000))
        sent = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            for _ in range(per_ms):
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(data, ("127.0.0.1", ports[sent % len(ports)]))
                sent += 1
            time.sleep(0.001)
        cpu = time.process_time() - c0
        sock.close()
        return cpu / sent * 1e6
    finally:
        stop.set()
        child.join(10)


def ceiling(forward_loop, subscribers: int) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    """Packets/s per core of the tight loop with the SRTP profile roost negotiates."""
    sink_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink_sock.bind(("127.0.0.1", 0))
    try:
        profile = forward_loop.AEAD_AES_128_GCM
        runs = [forward_loop.run_config(forward_loop.AUDIO, profile, subscribers, 30_000,
                                        sink_sock.getsockname()) for _ in range(2)]
        best = min(runs, key=lambda r: r.us_per_out)
        return best.out_pps, profile.name
    finally:
        sink_sock.close()


def add_capacity(r: dict[str, float], idle: float) -> None:
    """Marginal CPU per forwarded packet above the idle cost, and the packets/s one fully
    busy core sustains with these participants connected: (1 - idle) / marginal."""
    r["idle_cpu"] = idle
    r["marginal_us"] = max(1e-3, (r["server_cpu"] - idle) / r["fwd_pps"] * 1e6)
    r["capacity"] = (1.0 - idle) / r["marginal_us"] * 1e6


def fmt_row(label: str, r: dict[str, float]) -> str:
    return (f"{label:<26} {r['fwd_pps']:>9,.0f} {r['server_cpu'] * 100:>6.0f}% "
            f"{r['idle_cpu'] * 100:>5.1f}% {r['us_per_pkt']:>7.2f} {r['marginal_us']:>7.2f} "
            f"{r['capacity']:>9,.0f} {r['loss'] * 100:>6.2f}% {r['p50_ms']:>6.2f} "
            f"{r['p99_ms']:>6.2f} {r['client_cpu'] * 100:>5.0f}% {r['machine_cpu'] * 100:>5.0f}%")


async def main_async(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    forward_loop = _load_forward_loop()
    server = start_server("--log-level", "warning")
    bench = Bench(server, args.publishers, 0.0)
    try:
        print(f"roost forward bench: Python {platform.python_version()}, {os.cpu_count()} CPUs,"
              f" server pid {server.pid} (uvloop), clients in this process (uvloop); load"
              f" average {loadavg()} before starting")
        idle_rss = rss_kib(server.pid)
        steps = [n for n in args.steps if n < args.subscribers] + [args.subscribers]
        print(f"{args.publishers} audio publishers ({PACKET_SIZE} B packets), subscribers "
              f"{', '.join(map(str, steps))}; each window {args.seconds:.0f} s\n")
        header = (f"{'window':<26} {'fwd pkt/s':>9} {'srvCPU':>7} {'idle':>6} {'µs/pkt':>7} "
                  f"{'marg.µs':>7} {'pkt/s/core':>9} {'loss':>7} {'p50ms':>6} {'p99ms':>6} "
                  f"{'cliCPU':>6} {'allCPU':>6}")
        print(header)
        print("-" * len(header))
        last: dict[str, float] = {}
        halves: dict[int, dict[str, float]] = {}
        for n in steps:
            t = time.perf_counter()
            await bench.join(n)
            joined = time.perf_counter() - t
            idle = await bench.idle_cpu()
            pps = min(200.0, max(10.0, args.load / (args.publishers * n)))
            last = await bench.run(pps, args.seconds)
            add_capacity(last, idle)
            print(fmt_row(f"{n} subs, {pps:.0f} pkt/s/pub", last)
                  + f"   (joined in {joined:.1f} s)", flush=True)
            half_pps = 0.5 * last["capacity"] / (args.publishers * n)
            half = halves[n] = await bench.run(half_pps, args.seconds * 1.2)
            add_capacity(half, idle)
            print(fmt_row(f"  half load: {half_pps:.0f} pkt/s/pub", half), flush=True)
        participants = args.publishers + len(bench.subscribers)
        rss = rss_kib(server.pid)
        capacity = last["capacity"]
        n = len(bench.subscribers)
        print()
        ceiling_pps, profile = ceiling(forward_loop, min(n, 100))
        floor_us = kernel_floor(n, last["fwd_pps"])
        srtp = profile.replace("SRTP_", "")
        print("Results")
        print(f"  server CPU per forwarded packet ({n} subscribers, {last['fwd_pps']:,.0f} pkt/s): "
              f"{last['us_per_pkt']:.2f} µs in all, {last['marginal_us']:.2f} µs above the "
              f"{idle:.1%} of a core {participants} idle participants cost")
        print(f"  forwarded packets/s per fully busy core: {capacity:,.0f} "
              f"(= (1 - idle) / marginal; {1e6 / last['us_per_pkt']:,.0f} counting all CPU at"
              f" {last['fwd_pps']:,.0f} pkt/s)")
        print(f"  tight loop ceiling (bench/forward_loop.py, {srtp}, {min(n, 100)} subs):"
              f" {ceiling_pps:,.0f} pkt/s/core; roost reaches {capacity / ceiling_pps:.0%} of it")
        print(f"  of which the kernel: a plain sendto of the same datagrams to {n} sockets another"
              f" process drains costs {floor_us:.2f} µs of the sender's CPU here (the tight loop"
              " sends to one socket nobody reads, which is cheaper)")
        for k, half in halves.items():
            print(f"  half load, {k} subscribers ({half['fwd_pps']:,.0f} fwd pkt/s, server CPU "
                  f"{half['server_cpu']:.0%}): added latency p50 {half['p50_ms']:.2f} ms, p99 "
                  f"{half['p99_ms']:.2f} ms, max {half['max_ms']:.1f} ms; loss "
                  f"{half['loss'] * 100:.3f}% ({half['expected'] - half['received']:.0f} of "
                  f"{half['expected']:.0f})")
        print("  (one publisher packet is sent to its subscribers one after the other: the last"
              " of N gets it about N x µs/pkt later, which bounds the latency tail)")
        print(f"  server RSS: {idle_rss / 1024:.0f} MiB idle, {rss / 1024:.0f} MiB with "
              f"{participants} participants = {(rss - idle_rss) / participants:.0f} KiB per "
              "participant")
        print(f"  total run {time.perf_counter() - started:.0f} s; load average "
              f"{loadavg()} at the end")
        cores = os.cpu_count() or 1
        for what, r in (("capacity", last), *((f"half-load ({k} subscribers)", h)
                                               for k, h in halves.items())):
            if r["machine_cpu"] > 0.85 * cores:
                print(f"  WARNING: during the {what} window all CPUs were {r['machine_cpu']:.0%}"
                      " busy (allCPU: every process on the machine, in cores); other work"
                      " competed with roost there, so those figures are pessimistic")
        return 0
    finally:
        await bench.close()
        server.stop()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def checkout_src(rev: str) -> tuple[str, Path]:
    """Revision `rev`'s src/ in a temporary directory (for PYTHONPATH): (short sha, path)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    where = Path(tempfile.mkdtemp(prefix=f"roost-{sha}-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return sha, where / "src"


async def compare_udp_port(args: argparse.Namespace) -> int:
    """Two servers at once, one with a socket per peer connection and one on rtc.udp_port;
    the same load in alternating windows, so both see the same machine."""
    modes = {"socket per PC": start_server("--log-level", "warning"),
             "rtc.udp_port": start_server("--log-level", "warning",
                                          "--udp-port", str(_free_udp_port()))}
    return await compare(args, modes, "socket per peer connection vs one shared UDP socket")


async def compare_congestion_control(args: argparse.Namespace) -> int:
    """Two servers of this tree, rtc.congestion_control off and on: with it on, every packet
    to a subscriber carries a transport-wide sequence number (the lite subscribers accept
    the extension but send no TWCC feedback, so this is the forwarding cost, not the
    estimator's)."""
    folder = Path(tempfile.mkdtemp(prefix="roost-forward-cc-"))
    modes = {}
    for name, enabled in (("cc off", "false"), ("cc on", "true")):
        config = folder / f"{name.replace(' ', '-')}.yaml"
        config.write_text(f"rtc:\n  congestion_control:\n    enabled: {enabled}\n")
        modes[name] = start_server("--log-level", "warning", "--config", str(config))
    try:
        return await compare(args, modes, "congestion control off vs on (transport-cc "
                                          "stamped on every forwarded packet)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def compare_rev(args: argparse.Namespace) -> int:
    """This tree's server and revision `args.compare_rev`'s, side by side, same load."""
    sha, src = checkout_src(args.compare_rev)
    head = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip()

    async def run() -> int:
        modes = {sha: start_server("--log-level", "warning", env={"PYTHONPATH": str(src)}),
                 f"this tree {head}": start_server("--log-level", "warning")}
        return await compare(args, modes, f"revision {sha} vs this tree ({head})")

    try:
        return asyncio.run(run())
    finally:
        shutil.rmtree(src.parent, ignore_errors=True)


async def compare(args: argparse.Namespace, modes: dict[str, RoostServer], what: str) -> int:
    """The same load on each server in alternating windows, so all see the same machine;
    the first server is the baseline."""
    n = args.subscribers
    benches = {mode: Bench(server, args.publishers, 0.0) for mode, server in modes.items()}
    try:
        print(f"roost forward bench, {what}: "
              f"{args.publishers} audio publishers, {n} subscribers each, {args.rounds} "
              f"alternating windows of {args.seconds:.0f} s; load average {loadavg()}")
        idle: dict[str, float] = {}
        for bench in benches.values():
            await bench.join(n)
        for mode, bench in benches.items():
            idle[mode] = await bench.idle_cpu()
        pps = min(200.0, max(10.0, args.load / (args.publishers * n)))
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        for round_ in range(args.rounds):
            for mode, bench in benches.items():
                r = await bench.run(pps, args.seconds)
                add_capacity(r, idle[mode])
                results[mode].append(r)
                print(fmt_row(f"{round_ + 1}: {mode}", r), flush=True)
        print("\nResults (medians over the windows)")
        baseline = next(iter(modes))
        base = _median([r["marginal_us"] for r in results[baseline]])
        for mode, rows in results.items():
            marginal = _median([r["marginal_us"] for r in rows])
            in_all = _median([r["us_per_pkt"] for r in rows])
            print(f"  {mode:<14} server CPU per forwarded packet {in_all:.2f}"
                  f" µs in all, {marginal:.2f} µs above idle ({idle[mode]:.1%} of a core idle);"
                  f" loss {_median([r['loss'] for r in rows]) * 100:.2f}%;"
                  f" {marginal / base - 1:+.1%} against {baseline}")
        return 0
    finally:
        for bench in benches.values():
            await bench.close()
        for server in modes.values():
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--steps", type=int, nargs="*", default=[50, 100])
    parser.add_argument("--load", type=float, default=20_000,
                        help="forwarded packets/s offered in the fan-out steps")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window")
    parser.add_argument("--quick", action="store_true", help="2 publishers, 20/50 subscribers")
    parser.add_argument("--compare-udp-port", action="store_true",
                        help="a socket per peer connection vs rtc.udp_port, side by side")
    parser.add_argument("--compare-rev", metavar="REV",
                        help="git revision REV's server vs this tree's, side by side")
    parser.add_argument("--compare-congestion-control", action="store_true",
                        help="rtc.congestion_control off vs on, side by side")
    parser.add_argument("--rounds", type=int, default=4, help="windows per mode (compare)")
    args = parser.parse_args()
    if args.quick:
        args.publishers, args.subscribers, args.steps, args.seconds = 2, 50, [20], 3.0
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.compare_udp_port or args.compare_rev or args.compare_congestion_control:
        if args.subscribers == 200:
            args.subscribers = 100
        if args.compare_rev:
            return compare_rev(args)
        if args.compare_congestion_control:
            return asyncio.run(compare_congestion_control(args))
        return asyncio.run(compare_udp_port(args))
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

"""Cluster benchmark: forwarding with 1 roost process vs 2 on one machine, and join cost.

    python bench/cluster.py            # 4 rooms x (1 publisher + 20 subscribers), ~3 min
    python bench/cluster.py --quick    # smaller rooms, shorter windows, ~1.5 min

Part 1, forwarded packets/s. The same rooms run on one `roost serve` (no Redis) and then on
two `roost serve --redis-host` processes sharing a local redis-server, rooms spread over both
by the router's placement. Clients are lite LiveKit clients (`tests/media/liteclient.py`:
signalling + ICE/DTLS/SRTP, no codecs) in this process: each room has one publisher sending
100-byte Opus-shaped packets and receive-only subscribers that only count the SRTP
datagrams they get (no decryption, so the client costs little next to the servers). For each
offered load (forwarded packets/s the rooms should produce) it prints what subscribers
received, the loss, and each server process's CPU. With one process, forwarding saturates
one core; with two, both cores are used, shared with this client process.

Part 2, join cost. On the 2-node cluster, a raw WebSocket client joins an existing room
repeatedly through the node hosting it (local) and through the other node (relayed through
Redis), and once more on the single node without Redis: p50/p95 of the upgrade handshake
(connect → WebSocket open, which for a relayed join includes the admit round trip to the
room's node), of WebSocket open → JoinResponse, and of the total.

Bounded: every join and window has a timeout; the whole run stops after --budget seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import struct
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from livekit.protocol import rtc

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.redis import RedisProcess, ensure_redis_server  # noqa: E402
from tests.helpers.server import RoostServer, start_server  # noqa: E402
from tests.media.liteclient import LiteClient  # noqa: E402

from machine import loadavg, machine_busy  # noqa: E402  (bench/ is on sys.path when run)
from roost.media.rtp import build_extension_block  # noqa: E402

warnings.filterwarnings("ignore", message="The HMAC key")  # the dev secret is short

PACKET_SIZE = 100
LEVEL_ID, MID_ID = 1, 4  # extension ids of the lite client's audio offer
JOIN_TIMEOUT = 10.0






def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- part 1: forwarding --------------------------------------------------------------------

@dataclass
class Publisher:
    client: LiteClient
    ssrc: int
    seq: int = 0
    sent: int = 0
    ext: bytes = field(default_factory=lambda: build_extension_block(
        [(LEVEL_ID, bytes([0x80 | 50])), (MID_ID, b"0")]))

    def packet(self) -> bytes:
        self.seq = (self.seq + 1) & 0xFFFF
        self.sent += 1
        head = struct.pack("!BBHII", 0x90, 111, self.seq, (self.sent * 960) & 0xFFFFFFFF,
                           self.ssrc)
        body = bytes([0xFC]) + bytes(PACKET_SIZE - len(head) - len(self.ext) - 1)
        return head + self.ext + body


@dataclass
class RoomLoad:
    name: str
    url: str
    publisher: Publisher
    subscribers: list[LiteClient]


class Counter:
    """Counts RTP datagrams arriving at subscribers (RTCP and everything else ignored)."""

    def __init__(self) -> None:
        self.received = 0

    def __call__(self, data: bytes) -> None:
        if len(data) > 1 and not 191 < data[1] < 224:
            self.received += 1


async def room_owner(redis: RedisProcess | None, room: str) -> str:
    if redis is None:
        return ""
    return redis.keys(f"roost:room:{room}").get(f"roost:room:{room}", "")


async def create_rooms(servers: list[RoostServer], names: list[str]) -> None:
    from livekit import api
    from livekit.protocol import room as room_pb

    first = servers[0]
    async with api.LiveKitAPI(first.http_url, first.api_key, first.api_secret) as lk:
        for name in names:
            await lk.room.create_room(room_pb.CreateRoomRequest(name=name))


async def setup_rooms(servers: list[RoostServer], redis: RedisProcess | None, rooms: int,
                      subscribers: int, counter: Counter) -> list[RoomLoad]:
    names = [f"fwd-{i}" for i in range(rooms)]
    await create_rooms(servers, names)
    by_node = {}
    if redis is not None:
        for key, value in redis.keys("roost:node:*").items():
            by_node[key.removeprefix("roost:node:")] = json.loads(value)["url"]
    loads: list[RoomLoad] = []
    sem = asyncio.Semaphore(8)
    server = servers[0]  # every node has the same keys
    for index, name in enumerate(names):
        owner = await room_owner(redis, name)
        http = by_node.get(owner, servers[0].http_url)
        url = http.replace("http://", "ws://")
        pub_client = LiteClient(url, server.token(f"pub-{name}", name), auto_subscribe=False)
        await asyncio.wait_for(pub_client.connect(), JOIN_TIMEOUT)
        publisher = Publisher(pub_client, ssrc=0x20000 + index)
        await asyncio.wait_for(pub_client.publish_audio(f"mic-{name}", publisher.ssrc),
                               JOIN_TIMEOUT)
        subs: list[LiteClient] = []

        async def one(k: int, name: str = name, url: str = url, subs: list[LiteClient] = subs
                      ) -> None:
            async with sem:
                client = LiteClient(url, server.token(f"sub-{name}-{k}", name))
                client.subscriber._datagram = counter  # type: ignore[method-assign]
                await asyncio.wait_for(client.connect(), JOIN_TIMEOUT * 3)
                subs.append(client)

        await asyncio.gather(*(one(k) for k in range(subscribers)))
        loads.append(RoomLoad(name, url, publisher, subs))
    deadline = time.monotonic() + 30
    while any(len(c.tracks) < 1 for r in loads for c in r.subscribers):
        if time.monotonic() > deadline:
            raise TimeoutError("subscribers still lack their room's track after 30 s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    return loads


async def window(loads: list[RoomLoad], servers: list[RoostServer], counter: Counter,
                 offered_fwd: float, seconds: float) -> dict[str, Any]:
    """Publish so that `offered_fwd` forwarded packets/s are due; measure the middle."""
    fanout = sum(len(r.subscribers) for r in loads)
    per_pub = offered_fwd / fanout
    interval = 1.0 / per_pub
    clock = time.perf_counter
    start = clock() + 0.05
    warmup = 0.7
    due = [start + i * interval / len(loads) for i in range(len(loads))]
    measuring = False
    cpu0: list[float] = []
    me0 = 0.0
    busy0 = (0, 0)
    received0 = 0
    sent0 = 0
    t0 = 0.0
    while True:
        now = clock()
        if not measuring and now >= start + warmup:
            measuring = True
            cpu0, me0 = [s.cpu_seconds() for s in servers], self_cpu()
            busy0, received0, t0 = machine_busy(), counter.received, now
            sent0 = sum(r.publisher.sent * len(r.subscribers) for r in loads)
        if now >= start + warmup + seconds:
            break
        for i, room in enumerate(loads):
            pub = room.publisher
            while due[i] <= now:
                pub.client.publisher.send_rtp(pub.packet())  # type: ignore[union-attr]
                due[i] += interval
        await asyncio.sleep(0.001)
    elapsed = clock() - t0
    cpu = [(s.cpu_seconds() - c) / elapsed for s, c in zip(servers, cpu0, strict=True)]
    client = (self_cpu() - me0) / elapsed
    busy1 = machine_busy()
    expected = sum(r.publisher.sent * len(r.subscribers) for r in loads) - sent0
    await asyncio.sleep(0.3)  # in-flight packets of the window still count
    received = counter.received - received0
    await asyncio.sleep(1.0)  # drain before the next window
    machine = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * (os.cpu_count() or 1)
    return {
        "offered": offered_fwd,
        "fwd_pps": received / elapsed,
        "loss": max(0.0, 1 - received / expected) if expected else 0.0,
        "server_cpu": cpu,
        "us_per_pkt": sum(cpu) / max(received / elapsed, 1) * 1e6,
        "client_cpu": client,
        "other_cpu": max(0.0, machine - sum(cpu) - client),
    }


async def close_all(loads: list[RoomLoad]) -> None:
    for room in loads:
        for client in [room.publisher.client, *room.subscribers]:
            try:
                await asyncio.wait_for(client.close(), 5)
            except Exception:
                pass


def start_cluster(count: int, redis: RedisProcess | None, log_dir: Path) -> list[RoostServer]:
    extra = ("--log-level", "warning")
    if redis is not None:
        extra += ("--redis-host", redis.address)
    servers = [start_server(*extra, log_dir=log_dir) for _ in range(count)]
    if redis is not None:
        deadline = time.monotonic() + 10
        while len(redis.keys("roost:node:*")) < count:
            if time.monotonic() > deadline:
                raise TimeoutError("nodes did not register")
            time.sleep(0.1)
    return servers


def fmt(label: str, r: dict[str, Any]) -> str:
    cpus = "+".join(f"{c * 100:.0f}" for c in r["server_cpu"])
    return (f"  {label:<11} {r['offered']:>8,.0f} {r['fwd_pps']:>9,.0f} {r['loss'] * 100:6.1f}%"
            f"  {cpus + '%':<8} {r['us_per_pkt']:6.1f}  {r['client_cpu'] * 100:5.0f}%"
            f"  {r['other_cpu'] * 100:5.0f}%")


HEADER = (f"  {'':<11} {'offered':>8} {'forwarded':>9} {'loss':>7}  {'servers':<8} "
          f"{'µs/pkt':>6}  {'client':>6}  {'others':>6}")


async def forwarding(args: argparse.Namespace, redis: RedisProcess, log_dir: Path
                     ) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    for label, count in (("1 process", 1), ("2 processes", 2)):
        servers = start_cluster(count, redis if count > 1 else None, log_dir)
        counter = Counter()
        loads: list[RoomLoad] = []
        try:
            loads = await setup_rooms(servers, redis if count > 1 else None, args.rooms,
                                      args.subscribers, counter)
            if count > 1:
                owners = [await room_owner(redis, r.name) for r in loads]
                spread = {o: owners.count(o) for o in set(owners)}
                print(f"  rooms per process: {sorted(spread.values())}")
            rows = []
            for offered in args.loads:
                row = await window(loads, servers, counter, offered, args.seconds)
                print(fmt(label, row), flush=True)
                rows.append(row)
            results[label] = rows
        finally:
            await close_all(loads)
            for s in servers:
                s.stop()
            if count > 1:
                redis.restart()  # empty for the next configuration
    return results


# -- part 2: join cost ---------------------------------------------------------------------

async def timed_join(url: str, token: str) -> tuple[float, float]:
    """(connect → WebSocket open, WebSocket open → JoinResponse) in seconds; then leave."""
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        ws = await session.ws_connect(f"{url}/rtc?protocol=16&sdk=python&auto_subscribe=0",
                                      headers={"Authorization": f"Bearer {token}"},
                                      timeout=aiohttp.ClientWSTimeout(ws_close=2))
        t1 = time.perf_counter()
        async with asyncio.timeout(JOIN_TIMEOUT):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise ConnectionError(f"unexpected {msg.type} before the JoinResponse")
                response = rtc.SignalResponse()
                response.ParseFromString(msg.data)
                if response.WhichOneof("message") == "join":
                    break
        t2 = time.perf_counter()
        leave = rtc.SignalRequest()
        leave.leave.reason = 1  # type: ignore[assignment]
        await ws.send_bytes(leave.SerializeToString())
        await ws.close()
        return t1 - t0, t2 - t1


async def join_series(server: RoostServer, url: str, room: str, count: int, tag: str
                      ) -> dict[str, float]:
    handshake, to_join = [], []
    await timed_join(url, server.token(f"warm-{tag}", room))  # warm up the path
    for i in range(count):
        h, j = await timed_join(url, server.token(f"{tag}-{i}", room))
        handshake.append(h)
        to_join.append(j)
    total = [h + j for h, j in zip(handshake, to_join, strict=True)]
    return {"handshake_p50": percentile(handshake, 50) * 1e3,
            "ws_to_join_p50": percentile(to_join, 50) * 1e3,
            "total_p50": percentile(total, 50) * 1e3,
            "total_p95": percentile(total, 95) * 1e3}


async def join_cost(args: argparse.Namespace, redis: RedisProcess, log_dir: Path
                    ) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    (single,) = start_cluster(1, None, log_dir)
    try:
        await create_rooms([single], ["joins"])
        out["single node, no Redis"] = await join_series(single, single.url, "joins",
                                                         args.joins, "s")
    finally:
        single.stop()
    servers = start_cluster(2, redis, log_dir)
    try:
        await create_rooms(servers, ["joins"])
        owner = await room_owner(redis, "joins")
        urls = {json.loads(v)["url"]: k.removeprefix("roost:node:")
                for k, v in redis.keys("roost:node:*").items()}
        local = next(s for s in servers if urls.get(s.http_url) == owner)
        remote = next(s for s in servers if s is not local)
        out["cluster, local node"] = await join_series(local, local.url, "joins",
                                                       args.joins, "l")
        out["cluster, relayed"] = await join_series(local, remote.url, "joins",
                                                    args.joins, "r")
    finally:
        for s in servers:
            s.stop()
        redis.restart()
    return out


async def main_async(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    log_dir = Path(tempfile.mkdtemp(prefix="roost-cluster-bench-"))
    redis = RedisProcess(ensure_redis_server(), log_dir / "redis.log").start()
    try:
        print(f"roost cluster bench: Python {platform.python_version()}, {os.cpu_count()} CPUs,"
              f" load average {loadavg()} before starting; logs in {log_dir}")
        print(f"\nForwarding: {args.rooms} rooms x (1 publisher + {args.subscribers} "
              f"subscribers), {PACKET_SIZE} B packets, {args.seconds:.0f} s windows; packets/s;"
              " CPU in % of one core: each server process, this client process, everything"
              " else on the machine")
        print(HEADER)
        fwd = await asyncio.wait_for(forwarding(args, redis, log_dir), args.budget)
        print(f"\nJoin cost: {args.joins} sequential raw joins into an existing room")
        joins = await asyncio.wait_for(join_cost(args, redis, log_dir), args.budget)
        for label, r in joins.items():
            print(f"  {label:<24} handshake p50 {r['handshake_p50']:6.2f} ms   ws→join p50 "
                  f"{r['ws_to_join_p50']:6.2f} ms   total p50 {r['total_p50']:6.2f} ms, "
                  f"p95 {r['total_p95']:6.2f} ms")
        best1 = max(r["fwd_pps"] for r in fwd["1 process"] if r["loss"] < 0.01)
        best2 = max(r["fwd_pps"] for r in fwd["2 processes"] if r["loss"] < 0.01)
        unloaded = [r for rows in fwd.values() for r in rows if r["loss"] < 0.01]
        cost1 = min(r["us_per_pkt"] for r in fwd["1 process"] if r["loss"] < 0.01)
        cost2 = min(r["us_per_pkt"] for r in fwd["2 processes"] if r["loss"] < 0.01)
        local, relayed = joins["cluster, local node"], joins["cluster, relayed"]
        print("\nResults")
        print(f"  forwarded packets/s without loss (<1 %): 1 process {best1:,.0f}, "
              f"2 processes {best2:,.0f} (x{best2 / best1:.2f})")
        print(f"  server CPU per forwarded packet: 1 process {cost1:.1f} µs, 2 processes "
              f"{cost2:.1f} µs (both processes together) → {1e6 / cost1:,.0f} and "
              f"{1e6 / cost2:,.0f} packets/s per fully busy core")
        print(f"  most CPU taken by other processes during a lossless window: "
              f"{max(r['other_cpu'] for r in unloaded) * 100:.0f}% of a core")
        print(f"  cross-node join costs {relayed['total_p50'] - local['total_p50']:+.2f} ms at "
              f"p50 over a local join ({relayed['total_p50']:.2f} vs {local['total_p50']:.2f})")
        print(f"  total run {time.perf_counter() - started:.0f} s; load average {loadavg()} "
              "at the end")
        busiest = max(r["other_cpu"] for rows in fwd.values() for r in rows)
        if busiest > 0.2:
            print(f"  WARNING: other processes used up to {busiest * 100:.0f}% of a core during"
                  " the run: with two processes the machine's two cores were shared with them"
                  " and with this client, so the 2-process figure is a lower bound")
        return 0
    finally:
        redis.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=20, help="per room")
    parser.add_argument("--loads", type=float, nargs="*",
                        default=[20_000, 50_000, 80_000, 110_000, 140_000, 170_000],
                        help="offered forwarded packets/s, one window each")
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement window")
    parser.add_argument("--joins", type=int, default=40, help="joins per join-cost series")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds per part, at most")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rooms, args.subscribers, args.seconds, args.joins = 4, 10, 3.0, 20
        args.loads = [20_000, 50_000, 80_000]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())

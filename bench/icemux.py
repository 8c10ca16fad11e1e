"""What the shared UDP socket adds per received packet: the receive path of `rtc.udp_port`
(one socket, SRTP found by source address) against a socket per peer connection.

    python bench/icemux.py            # 200 connections on the mux, 2,000,000 packets each way

Both paths are called directly with the same SRTP-shaped datagram and a handler that does
nothing, so the figure is the demultiplexing alone; the two are timed in alternating
rounds in one process. `bench/forward.py --compare-udp-port` measures whole servers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aioice import Candidate  # noqa: E402

from roost.media.ice import HostConnection, MediaStunProtocol  # noqa: E402
from roost.media.icemux import IceMux, MuxSocket, host_candidate  # noqa: E402


class NullTransport:
    """Enough of a datagram transport for MuxedProtocol (nothing is sent here)."""

    def sendto(self, data: bytes, addr: Any = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 7882) if name == "sockname" else default

    def close(self) -> None:
        pass


def time_calls(receive: Any, data: bytes, addr: tuple[str, int], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        receive(data, addr)
    return (time.perf_counter() - started) / count * 1e9


async def main_async(args: argparse.Namespace) -> int:
    packet = b"\x80\x6f" + bytes(98)
    calls = [0]

    def handler(data: bytes) -> None:
        calls[0] += 1

    # A socket per connection: aioice's protocol with roost's SRTP fast lane.
    own = HostConnection(addresses=["127.0.0.1"], port_range=None, ice_controlling=False)
    own.media_handler = handler
    per_pc = MediaStunProtocol(own)
    per_pc.local_candidate = Candidate("x", 1, "udp", 1, "127.0.0.1", 1, "host")

    # The mux: N connections on one socket, each with a learnt client address.
    mux = IceMux(addresses=["127.0.0.1"], udp_port=7882)
    shared = MuxSocket(mux, "127.0.0.1")
    shared.connection_made(NullTransport())  # type: ignore[arg-type]
    target = ("127.0.0.1", 40000)
    for i in range(args.connections):
        conn = HostConnection(addresses=["127.0.0.1"], port_range=None, ice_controlling=False,
                              mux=mux)
        conn.media_handler = handler
        proto = shared.attach(conn, host_candidate("127.0.0.1", 7882, "udp", 65535))
        addr = ("127.0.0.1", 40000 + i)
        shared._by_address[addr] = proto
        proto.learn(addr)

    rounds: dict[str, list[float]] = {"socket per PC": [], "rtc.udp_port": []}
    per_round = args.packets // args.rounds
    for _ in range(args.rounds):
        rounds["socket per PC"].append(
            time_calls(per_pc.datagram_received, packet, target, per_round))
        rounds["rtc.udp_port"].append(
            time_calls(shared.datagram_received, packet, target, per_round))
    assert calls[0] == 2 * per_round * args.rounds, "every packet reached its handler"
    base = statistics.median(rounds["socket per PC"])
    mux_ns = statistics.median(rounds["rtc.udp_port"])
    print(f"receive path per SRTP datagram, {args.connections} connections on the mux, "
          f"{args.rounds} rounds of {per_round:,} calls (median):")
    for name, values in rounds.items():
        print(f"  {name:<14} {statistics.median(values):6.1f} ns  "
              f"(rounds {', '.join(f'{v:.0f}' for v in values)})")
    print(f"  the mux adds {mux_ns - base:+.1f} ns per received packet")
    if args.forward_us:
        print(f"  against {args.forward_us:.1f} µs of server CPU per forwarded packet "
              f"(bench/forward.py) and one received packet per forwarded one at fan-out 1, "
              f"that is {(mux_ns - base) / (args.forward_us * 1000):+.2%} at worst")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--forward-us", type=float, default=17.0,
                        help="µs per forwarded packet to compare with")
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

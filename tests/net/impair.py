"""Link impairments for the congestion tests and bench/network.py: shaping, loss, blackouts.

The network is a star: roost in `server`, behind a forwarding router `net` (no NAT) with the
publisher `pub` and the subscriber `sub` on LANs of their own. Everything leaving a device is
its egress, so

* server -> subscriber is the router's device towards `sub` (`Star.sub_dev`, on `router`),
* publisher -> server is the publisher's own device (`Star.pub_dev`, on `pub`).

This kernel may lack sch_netem: shaping uses `tbf`, loss iptables' statistic match, a blackout
iptables DROP (both directions); delay and jitter need netem and raise NetlabUnavailable
without it (`netem_missing()` says why, for a skip).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.helpers.netlab import Host, Lab, NetlabUnavailable, Router

MTU_BYTES = 1514


@dataclass
class Star:
    server: Host
    router: Router
    pub: Host
    sub: Host

    @property
    def sub_dev(self) -> str:
        """The router's device towards the subscriber (egress: server -> subscriber)."""
        return self.router.link_to(self.sub).dev_of(self.router)

    @property
    def pub_dev(self) -> str:
        """The publisher's own device (egress: publisher -> server)."""
        return self.pub.link_to(self.router).dev_of(self.pub)


def star(lab: Lab) -> Star:
    """server 10.231.1.1 -- net (router, no NAT) -- pub 10.231.2.2, sub 10.231.3.2."""
    server, pub, sub = lab.host("server"), lab.host("pub"), lab.host("sub")
    router = lab.router("net", wan=(server, "10.231.1.0/24"),
                        lan=[(pub, "10.231.2.0/24"), (sub, "10.231.3.0/24")], nat="none")
    server.ip("route", "replace", "default", "via", router.wan_address)
    return Star(server, router, pub, sub)


# -- shaping -----------------------------------------------------------------------------------

def shape(host: Host, dev: str, rate_kbit: float, *, latency_ms: float = 100.0,
          burst_bytes: int | None = None) -> None:
    """Cap what leaves `dev` at `rate_kbit` (tbf: a FIFO holding `latency_ms` of data, beyond
    which packets are dropped, like a router's queue). Replaces any root qdisc."""
    burst = burst_bytes or max(4 * MTU_BYTES, int(rate_kbit * 1000 / 8 / 100))  # ~10 ms
    host.run(["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
              f"{rate_kbit:g}kbit", "burst", str(burst), "latency", f"{latency_ms:g}ms"])


def unshape(host: Host, dev: str) -> None:
    """Back to the default qdisc (no cap)."""
    host.run(["tc", "qdisc", "del", "dev", dev, "root"], check=False)


def shaped_drops(host: Host, dev: str) -> int:
    """Packets the root qdisc of `dev` dropped so far (0 without one)."""
    out = host.run(["tc", "-s", "qdisc", "show", "dev", dev], check=False).stdout
    for line in out.splitlines():
        if "dropped" in line:
            return int(line.split("dropped")[1].split(",")[0].strip())
    return 0


# -- loss and blackouts (iptables) ---------------------------------------------------------------

def _loss_rule(dev: str, pct: float) -> list[str]:
    return ["FORWARD", "-o", dev, "-m", "statistic", "--mode", "random",
            "--probability", f"{pct / 100:.4f}", "-j", "DROP"]


def loss(host: Host, dev: str, pct: float) -> None:
    """Drop `pct` % of the packets `host` forwards out of `dev`, at random."""
    rule = _loss_rule(dev, pct)
    host.iptables("-A", *rule)


def unloss(host: Host, dev: str, pct: float) -> None:
    host.iptables("-D", *_loss_rule(dev, pct), check=False)


def blackout(host: Host, dev: str) -> None:
    """Nothing passes `host`'s `dev` any more, either way (forwarded and local)."""
    for rule in (["FORWARD", "-o", dev], ["FORWARD", "-i", dev], ["OUTPUT", "-o", dev],
                 ["INPUT", "-i", dev]):
        host.iptables("-I", *rule, "-j", "DROP")


def restore(host: Host, dev: str) -> None:
    """End `blackout(host, dev)`."""
    for rule in (["FORWARD", "-o", dev], ["FORWARD", "-i", dev], ["OUTPUT", "-o", dev],
                 ["INPUT", "-i", dev]):
        host.iptables("-D", *rule, "-j", "DROP", check=False)


def dropped_by_rules(host: Host) -> int:
    """Packets DROP rules in `host`'s filter table dropped so far."""
    out = host.iptables("-L", "-v", "-x", "-n").stdout
    total = 0
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "DROP" and fields[0].isdigit():
            total += int(fields[0])
    return total


# -- delay and jitter (netem only) ----------------------------------------------------------------

def netem_missing(host: Host) -> str | None:
    """Why `tc netem` cannot be used here (None when it can); probes on `host`'s lo."""
    proc = host.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                    check=False)
    if proc.returncode != 0:
        return f"tc netem is not available on this kernel: {proc.stderr.strip()}"
    host.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
    return None


def jitter(host: Host, dev: str, delay_ms: float, jitter_ms: float) -> None:
    """`delay_ms` ± `jitter_ms` on what leaves `dev` (netem; NetlabUnavailable without)."""
    proc = host.run(["tc", "qdisc", "replace", "dev", dev, "root", "netem", "delay",
                     f"{delay_ms:g}ms", f"{jitter_ms:g}ms", "distribution", "normal"],
                    check=False)
    if proc.returncode != 0:
        raise NetlabUnavailable(f"tc netem is not available: {proc.stderr.strip()}")

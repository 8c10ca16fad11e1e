"""A network lab for tests: namespaces, veth pairs, NAT routers and firewall rules, all local.

Everything lives inside network namespaces this module creates, named `rlab<pid>x<n>-<host>`.
Veths are created directly inside them (never in the root namespace) and carry private
10.231.x.y addresses only, so nothing here can reach outside the machine. Deleting a
namespace removes its interfaces, addresses, routes, qdiscs and iptables rules with it;
`Lab.close()` (the context manager's exit) kills every process started in a host, then
deletes the namespaces, even after a failure. `cleanup_stale()` removes namespaces left by a
run whose pid no longer exists (a killed pytest).

    with Lab() as lab:
        server = lab.host("server")
        client = lab.host("client")
        nat = lab.router("nat", wan=(server, "10.231.1.0/24"), lan=(client, "10.231.2.0/24"))
        server.address            # 10.231.1.1; nat.wan_address 10.231.1.2; client 10.231.2.2
        client.run(["ping", ...]) # inside the client namespace
        roost = start_roost(server, log_dir=tmp_path)
        run_scenario_in(client, "tests.net.scenarios:two_way_call", roost.info)

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` and `iptables`; `unavailable_reason()`
says why a lab cannot be built here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.scenario import (
    KILL_GRACE,
    ScenarioFailed,
    _sdk_complaints,
    _signal_name,
    child_env,
)
from tests.helpers.server import READY_TIMEOUT, REPO_ROOT, RoostServer, ServerStartError, tail
from tests.helpers.wait import until_sync

PREFIX = "rlab"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,10}$")  # short: interface names are "to-<peer>"
STALE_RE = re.compile(rf"^{PREFIX}(\d+)x\d+-")
_lab_ids = itertools.count()
HOLD_MARKER = "@@NETLAB_HOLD@@"  # printed by scenarios that keep a call up for inspection


class NetlabError(RuntimeError):
    """A lab command failed; the message holds the command and its output."""


class NetlabUnavailable(NetlabError):
    """The lab (or one feature of it, such as netem) cannot work on this machine."""


def _cmd(argv: list[str], *, check: bool = True, timeout: float = 15.0,
         input: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    if input is None:
        kwargs["stdin"] = subprocess.DEVNULL
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              input=input, **kwargs)
    except FileNotFoundError as exc:
        raise NetlabUnavailable(f"{argv[0]} is not installed ({exc})") from None
    except subprocess.TimeoutExpired as exc:
        raise NetlabError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        raise NetlabError(
            f"exit {proc.returncode}: {' '.join(argv)}\n{proc.stdout}{proc.stderr}".rstrip()
        )
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate()` until it returns something truthy (returned); TimeoutError naming
    `what` after `timeout` seconds."""
    return until_sync(predicate, timeout, what, interval)


def list_namespaces() -> list[str]:
    out = _cmd(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_namespace_processes(ns: str, timeout: float = 3.0) -> None:
    """SIGKILL whatever still runs in `ns` and wait (bounded) until it is gone."""
    pids = [int(p) for p in _cmd(["ip", "netns", "pids", ns], check=False).stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):  # what still runs, the namespace removal reports
        until_sync(lambda: not any(_running(pid) for pid in pids), timeout,
                   f"the processes of {ns} to exit", interval=0.01)


def _delete_namespace(ns: str) -> None:
    _kill_namespace_processes(ns)
    _cmd(["ip", "netns", "delete", ns], check=False)


def cleanup_stale() -> list[str]:
    """Delete lab namespaces whose creating process is gone; returns their names."""
    removed = []
    for ns in list_namespaces():
        match = STALE_RE.match(ns)
        if match and not _pid_alive(int(match.group(1))):
            _delete_namespace(ns)
            removed.append(ns)
    return removed


def unavailable_reason() -> str | None:
    """None when a lab can be built here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "network lab needs root (ip netns add)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"network lab needs {tool} (run scripts/setup-netns)"
    probe = f"{PREFIX}{os.getpid()}x999999-probe"
    proc = _cmd(["ip", "netns", "add", probe], check=False)
    if proc.returncode != 0:
        return f"`ip netns add` is not permitted here: {(proc.stderr or proc.stdout).strip()}"
    try:
        iptables = _cmd(["ip", "netns", "exec", probe, "iptables", "-t", "nat", "-S"],
                        check=False)
        if iptables.returncode != 0:
            return f"iptables does not work in a namespace: {iptables.stderr.strip()}"
    finally:
        _delete_namespace(probe)
    return None


@dataclass
class Link:
    """A veth pair between two hosts, each end with an address in `subnet`."""

    a: Host
    b: Host
    dev_a: str
    dev_b: str
    addr_a: str
    addr_b: str
    subnet: ipaddress.IPv4Network

    def dev_of(self, host: Host) -> str:
        return self.dev_a if host is self.a else self.dev_b

    def address_of(self, host: Host) -> str:
        return self.addr_a if host is self.a else self.addr_b

    def peer_of(self, host: Host) -> Host:
        return self.b if host is self.a else self.a


@dataclass(eq=False)
class Host:
    """One network namespace: run processes in it, shape and firewall its traffic."""

    lab: Lab
    name: str
    ns: str
    links: list[Link] = field(default_factory=list)
    processes: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)

    # -- running things inside -------------------------------------------------------------
    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` prefixed to run inside this namespace (`ip netns exec NS ...`)."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 15.0,
            input: str | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run `argv` in this namespace to completion (kwargs go to subprocess.run)."""
        return _cmd(self.wrap(argv), check=check, timeout=timeout, input=input, **kwargs)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` in this namespace; it is killed when the lab closes."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.wrap(argv), **kwargs)
        self.processes.append(proc)
        return proc

    def python(self, code: str, *args: str, timeout: float = 15.0,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a short Python snippet inside the namespace (`sys.argv[1:]` = args)."""
        return self.run([sys.executable, "-c", code, *args], timeout=timeout, check=check)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _cmd(["ip", "-n", self.ns, *args], check=check)

    def iptables(self, *args: str, table: str = "filter", v6: bool = False,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["ip6tables" if v6 else "iptables", "-w", "-t", table, *args],
                        check=check)

    def sysctl(self, key: str, value: str | int) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    # -- addresses ---------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """This host's address on its first link."""
        if not self.links:
            raise NetlabError(f"{self.name} has no links")
        return self.links[0].address_of(self)

    def link_to(self, peer: Host) -> Link:
        for link in self.links:
            if link.peer_of(self) is peer:
                return link
        raise NetlabError(f"no link between {self.name} and {peer.name}")

    def addresses(self) -> list[str]:
        out = self.ip("-j", "-4", "addr", "show").stdout
        return [a["local"] for dev in json.loads(out) for a in dev.get("addr_info", [])]

    def change_address(self, dev: str, old: str, new: str) -> None:
        """Move this host's address on `dev` from `old` to `new` (same prefix length)."""
        prefix = next(link.subnet.prefixlen for link in self.links if link.dev_of(self) == dev)
        self.sysctl(f"net.ipv4.conf.{dev}.promote_secondaries", 1)
        self.ip("addr", "add", f"{new}/{prefix}", "dev", dev)
        self.ip("addr", "del", f"{old}/{prefix}", "dev", dev)
        for link in self.links:
            if link.dev_of(self) == dev:
                if link.a is self and link.addr_a == old:
                    link.addr_a = new
                elif link.b is self and link.addr_b == old:
                    link.addr_b = new

    def udp_sockets(self, pid: int | None = None) -> list[dict[str, Any]]:
        """UDP sockets in this namespace (`ss -uanp`): local address, port, owning pids."""
        out = self.run(["ss", "-H", "-u", "-a", "-n", "-p"]).stdout
        sockets = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 5:
                continue
            local = parts[3]
            host, _, port = local.rpartition(":")
            pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
            if pid is not None and pid not in pids:
                continue
            sockets.append({"local": local, "host": host, "port": int(port), "pids": pids,
                            "line": line})
        return sockets

    def tcp_connections(self, port: int, pid: int | None = None) -> list[str]:
        """Established TCP connections in this namespace with local port `port` (ss lines)."""
        out = self.run(["ss", "-H", "-t", "-n", "-p", "state", "established",
                        f"( sport = :{port} )"]).stdout
        return [line for line in out.splitlines()
                if line.strip() and (pid is None or f"pid={pid}," in line)]

    # -- shaping and firewalling -------------------------------------------------------------
    def block_udp(self) -> None:
        """Drop every UDP packet into, out of and through this namespace (IPv4 and IPv6)."""
        for v6 in (False, True):
            if v6 and shutil.which("ip6tables") is None:
                continue
            for chain in ("INPUT", "OUTPUT", "FORWARD"):
                self.iptables("-I", chain, "-p", "udp", "-j", "DROP", v6=v6)

    def unblock_udp(self) -> None:
        for v6 in (False, True):
            if v6 and shutil.which("ip6tables") is None:
                continue
            for chain in ("INPUT", "OUTPUT", "FORWARD"):
                self.iptables("-D", chain, "-p", "udp", "-j", "DROP", v6=v6, check=False)

    def netem(self, dev: str, *, delay_ms: float = 0, loss_pct: float = 0) -> str:
        """Delay and/or drop packets leaving `dev`; returns "netem" or "iptables".

        Uses `tc qdisc ... netem`. Kernels without sch_netem get random loss from iptables'
        statistic match instead; a delay then raises NetlabUnavailable.
        """
        args = ["tc", "qdisc", "replace", "dev", dev, "root", "netem"]
        if delay_ms:
            args += ["delay", f"{delay_ms}ms"]
        if loss_pct:
            args += ["loss", f"{loss_pct}%"]
        proc = self.run(args, check=False)
        if proc.returncode == 0:
            return "netem"
        if delay_ms:
            raise NetlabUnavailable(f"tc netem is not available: {proc.stderr.strip()}")
        for chain in ("OUTPUT", "FORWARD"):
            self.iptables("-A", chain, "-o", dev, "-m", "statistic", "--mode", "random",
                          "--probability", f"{loss_pct / 100:.4f}", "-j", "DROP")
        return "iptables"

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ns={self.ns!r})"


@dataclass(eq=False, repr=False)
class Router(Host):
    """A host that forwards between a WAN link and LAN links, optionally NAT'ing."""

    wan: Link | None = None
    lans: list[Link] = field(default_factory=list)

    @property
    def wan_dev(self) -> str:
        assert self.wan is not None
        return self.wan.dev_of(self)

    @property
    def wan_address(self) -> str:
        assert self.wan is not None
        return self.wan.address_of(self)

    def masquerade(self) -> None:
        """Client NAT: everything leaving the WAN gets the router's WAN address.

        UDP and TCP have rules of their own so that `masqueraded()` can count their flows."""
        for proto in ("udp", "tcp", None):
            match = ["-p", proto] if proto else []
            self.iptables("-A", "POSTROUTING", "-o", self.wan_dev, *match, "-j", "MASQUERADE",
                          table="nat")

    def masqueraded(self, proto: str) -> int:
        """How many `proto` ("udp"/"tcp") flows the router has masqueraded so far."""
        out = self.iptables("-L", "POSTROUTING", "-v", "-x", "-n", table="nat").stdout
        for line in out.splitlines():
            fields = line.split()
            number = {"udp": "17", "tcp": "6"}[proto]
            if len(fields) > 3 and fields[2] == "MASQUERADE" and fields[3] in (proto, number):
                return int(fields[0])
        return 0

    def one_to_one(self, public: str, private: str) -> None:
        """1:1 NAT: `public` (a WAN-side address) is DNAT'ed to `private` on the LAN; what
        `private` sends out of the WAN leaves as `public`."""
        assert self.wan is not None
        if public not in self.addresses():
            self.ip("addr", "add", f"{public}/{self.wan.subnet.prefixlen}", "dev", self.wan_dev)
        self.iptables("-I", "PREROUTING", "-d", public, "-j", "DNAT", "--to-destination",
                      private, table="nat")
        self.iptables("-I", "POSTROUTING", "-s", private, "-o", self.wan_dev, "-j", "SNAT",
                      "--to-source", public, table="nat")

    def flush_conntrack(self) -> bool:
        """Forget every NAT mapping (`conntrack -F`); False when conntrack is not installed."""
        if shutil.which("conntrack") is None:
            return False
        self.run(["conntrack", "-F"], check=False)
        return True

    def rebind(self, new_wan_address: str | None = None) -> str:
        """NAT rebinding: clients' flows leave from a new WAN address from now on.

        Moves the WAN address to `new_wan_address` (default: the next one in the subnet).
        The kernel drops MASQUERADE mappings of a removed address, so live flows get new
        mappings (a peer sees new source address and port); conntrack is flushed too when the
        tool is there. Returns the new address.
        """
        assert self.wan is not None
        old = self.wan_address
        if new_wan_address is None:
            taken = {self.wan.addr_a, self.wan.addr_b}
            new_wan_address = next(str(a) for a in self.wan.subnet.hosts()
                                   if str(a) not in taken and int(a) > int(
                                       ipaddress.ip_address(old)))
        self.change_address(self.wan_dev, old, new_wan_address)
        self.flush_conntrack()
        return new_wan_address


class Lab:
    """Namespaces and links for one test; `with Lab() as lab:` removes all of it at exit."""

    def __init__(self) -> None:
        self.id = f"{PREFIX}{os.getpid()}x{next(_lab_ids)}"
        self.hosts: dict[str, Host] = {}
        self.links: list[Link] = []
        self.closed = False

    def __enter__(self) -> Lab:
        cleanup_stale()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add(self, host: Host) -> Host:
        if not NAME_RE.match(host.name):
            raise ValueError(f"host name {host.name!r}: 1-11 of [a-z0-9], starting with a letter")
        if host.name in self.hosts:
            raise ValueError(f"host {host.name!r} exists")
        _cmd(["ip", "netns", "add", host.ns])
        self.hosts[host.name] = host
        host.ip("link", "set", "lo", "up")
        return host

    def host(self, name: str) -> Host:
        """A new namespace with only `lo` (up)."""
        return self._add(Host(self, name, f"{self.id}-{name}"))

    def _dev_name(self, host: Host, peer: Host) -> str:
        taken = {link.dev_of(host) for link in host.links}
        name = f"to-{peer.name}"
        for k in itertools.count(2):
            if name not in taken:
                return name
            name = f"to-{peer.name[:9]}{k}"
        raise AssertionError("unreachable")

    def link(self, a: Host, b: Host, subnet: str, *, addr_a: str | None = None,
             addr_b: str | None = None) -> Link:
        """A veth pair a <-> b; a gets the subnet's first address, b the second (by default)."""
        net = ipaddress.ip_network(subnet)
        if not net.is_private:
            raise ValueError(f"{subnet} is not a private network")
        first, second = itertools.islice(net.hosts(), 2)
        link = Link(a, b, self._dev_name(a, b), self._dev_name(b, a),
                    addr_a or str(first), addr_b or str(second), net)
        a.ip("link", "add", link.dev_a, "type", "veth", "peer", "name", link.dev_b,
             "netns", b.ns)
        for host, dev, addr in ((a, link.dev_a, link.addr_a), (b, link.dev_b, link.addr_b)):
            host.ip("addr", "add", f"{addr}/{net.prefixlen}", "dev", dev)
            host.ip("link", "set", dev, "up")
            host.links.append(link)
        self.links.append(link)
        return link

    def router(self, name: str, *, wan: tuple[Host, str],
               lan: tuple[Host, str] | list[tuple[Host, str]],
               nat: str = "masquerade") -> Router:
        """A forwarding namespace between `wan=(host, subnet)` and `lan=(host, subnet)`s.

        The WAN host keeps its subnet's first address (the router takes the second); on each
        LAN link the router is first and the LAN host second, with its default route via the
        router. `nat` is "masquerade" (clients behind NAT) or "none" (add `one_to_one`).
        """
        router = Router(self, name, f"{self.id}-{name}")
        self._add(router)
        router.sysctl("net.ipv4.ip_forward", 1)
        wan_host, wan_subnet = wan
        router.wan = self.link(wan_host, router, wan_subnet)
        for lan_host, lan_subnet in lan if isinstance(lan, list) else [lan]:
            link = self.link(router, lan_host, lan_subnet)
            router.lans.append(link)
            lan_host.ip("route", "replace", "default", "via", link.addr_a)
        if nat == "masquerade":
            router.masquerade()
        elif nat != "none":
            raise ValueError(f"nat={nat!r}: 'masquerade' or 'none'")
        return router

    def close(self) -> None:
        """Kill the processes, delete the namespaces (and with them veths and rules)."""
        if self.closed:
            return
        self.closed = True
        for host in self.hosts.values():
            for proc in host.processes:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for host in self.hosts.values():
            for proc in host.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.0, deadline - time.monotonic()))
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(2)
        for host in self.hosts.values():
            _delete_namespace(host.ns)

    def leftovers(self) -> list[str]:
        """Namespaces of this lab that still exist (empty after close)."""
        return [ns for ns in list_namespaces() if ns.startswith(self.id + "-")]


# -- roost inside a namespace ------------------------------------------------------------------

_PROBE = """
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
last = "no attempt"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            if resp.status == 200:
                sys.exit(0)
            last = f"GET / answered {resp.status}"
    except Exception as exc:
        last = f"GET / failed: {exc}"
    time.sleep(0.05)
print(last)
sys.exit(1)
"""


@dataclass
class NetnsRoostServer(RoostServer):
    """`roost serve` inside `netns`, bound to `host`; clients reach it at `public_host`."""

    netns: Host | None = None
    public_host: str | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.public_host or self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.public_host or self.host}:{self.port}"

    def command(self) -> list[str]:
        assert self.netns is not None
        return self.netns.wrap(super().command())

    def _wait_ready(self, timeout: float) -> None:
        assert self.netns is not None and self.process is not None
        probe = self.netns.popen(
            [sys.executable, "-c", _PROBE, f"http://{self.host}:{self.port}/", str(timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + timeout + 5
        while probe.poll() is None and time.monotonic() < deadline:
            if self.process.poll() is not None:
                probe.kill()
                raise ServerStartError(
                    f"roost exited with code {self.process.returncode} before it was ready\n"
                    f"command: {' '.join(self.command())}\n--- server log ---\n"
                    f"{tail(self.log_path)}"
                )
            time.sleep(0.05)
        if probe.poll() is None:
            probe.kill()
        out = probe.communicate(timeout=5)[0].strip()
        if probe.returncode != 0:
            self.stop()
            raise ServerStartError(
                f"roost in {self.netns.ns} did not answer GET / within {timeout:.0f} s "
                f"({out})\n--- server log ---\n{tail(self.log_path)}"
            )


def start_roost(netns: Host, *extra_args: str, bind: str | None = None, port: int = 7880,
                public_host: str | None = None, config: dict[str, Any] | str | None = None,
                log_dir: Path | None = None,
                ready_timeout: float = READY_TIMEOUT) -> NetnsRoostServer:
    """Start `roost serve --dev` in `netns`, bound to `bind` (default: its address).

    `config` (a dict, written as JSON, which is YAML) is passed with `--config`.
    """
    directory = log_dir or Path(tempfile.mkdtemp(prefix="roost-netlab-"))
    bind = bind or netns.address
    args = list(extra_args)
    if config is not None:
        path = directory / f"livekit-{netns.name}.yaml"
        path.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
        args = ["--config", str(path), *args]
    server = NetnsRoostServer(port=port, log_path=directory / f"roost-{netns.name}.log",
                              extra_args=tuple(args), host=bind, netns=netns,
                              public_host=public_host)
    return server.start(ready_timeout)  # type: ignore[return-value]


# -- official-SDK scenarios inside a namespace ---------------------------------------------

class ScenarioRun:
    """A scenario child started in a namespace; `wait()` returns its result or fails."""

    def __init__(self, netns: Host, fn_path: str, args: tuple[Any, ...], timeout: float,
                 log_dir: Path, tail_lines: int = 150) -> None:
        self.fn_path = fn_path
        self.timeout = timeout
        self.tail_lines = tail_lines
        stem = fn_path.replace(":", ".").rsplit(".", 2)[-1]
        self.log_path = log_dir / f"{stem}-{netns.name}.log"
        for k in itertools.count(2):
            if not self.log_path.exists():
                break
            self.log_path = log_dir / f"{stem}-{netns.name}-{k}.log"
        self.result_path = self.log_path.with_suffix(".result.json")
        cmd = [sys.executable, "-m", "tests.helpers.scenario_runner", fn_path,
               json.dumps(list(args)), "--timeout", str(timeout),
               "--result-file", str(self.result_path)]
        self.started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = netns.popen(cmd, stdin=subprocess.PIPE, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=child_env())

    def send_line(self, text: str = "go") -> None:
        """Write a line to the child's stdin (scenarios that hold wait for one)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def output(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def wait_for_output(self, marker: str, timeout: float, count: int = 1) -> None:
        """Block until the child printed `marker` `count` times (fails if it exits first or
        time runs out)."""
        deadline = time.monotonic() + timeout
        while self.output().count(marker) < count:
            if self.proc.poll() is not None:
                self.wait()  # raises with the output if it failed
                raise ScenarioFailed(f"{self.fn_path} ended without printing {marker!r} "
                                     f"{count} time(s)")
            if time.monotonic() > deadline:
                raise ScenarioFailed(f"{self.fn_path} did not print {marker!r} {count} time(s)"
                                     f" within {timeout:.0f} s\n{tail(self.log_path, 60)}")
            time.sleep(0.05)

    def wait(self) -> Any:
        remaining = self.timeout + KILL_GRACE - (time.monotonic() - self.started)
        try:
            code = self.proc.wait(max(remaining, 1.0))
            reason = None if code == 0 else (
                f"exited with code {code}" if code > 0 else f"killed by {_signal_name(code)}")
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            reason = f"did not finish within {self.timeout + KILL_GRACE:.0f} s and was killed"
        if reason is not None:
            message = (
                f"scenario {self.fn_path} {reason} after {time.monotonic() - self.started:.1f}"
                f" s\nfull output: {self.log_path}\n{_sdk_complaints(self.output())}"
                f"--- scenario output (last {self.tail_lines} lines) ---\n"
                f"{tail(self.log_path, max_lines=self.tail_lines, max_chars=40_000)}"
            )
            raise ScenarioFailed(message)
        return json.loads(self.result_path.read_text())


def start_scenario_in(netns: Host, fn_path: str, *args: Any, timeout: float = 60.0,
                      log_dir: Path | None = None) -> ScenarioRun:
    """Start `module:function(*args)` (see tests.helpers.scenario) in `netns`."""
    directory = log_dir or Path(tempfile.mkdtemp(prefix="roost-scenario-"))
    return ScenarioRun(netns, fn_path, args, timeout, directory)


def run_scenario_in(netns: Host, fn_path: str, *args: Any, timeout: float = 60.0,
                    log_dir: Path | None = None) -> Any:
    """`run_scenario`, with the child inside `netns`: returns its result or fails the test."""
    run = start_scenario_in(netns, fn_path, *args, timeout=timeout, log_dir=log_dir)
    try:
        return run.wait()
    except ScenarioFailed as exc:
        if "pytest" in sys.modules:
            import pytest

            pytest.fail(str(exc), pytrace=False)
        raise

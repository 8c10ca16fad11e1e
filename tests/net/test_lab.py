"""The network lab itself: links carry traffic, NAT rewrites it, firewalls drop it, and
nothing is left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from tests.helpers import netlab
from tests.helpers.netlab import Host, Lab
from tests.helpers.server import REPO_ROOT

PORT = 9000
TOOL = [sys.executable, "-m", "tests.net.netcheck"]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def serve(host: Host, port: int = PORT) -> subprocess.Popen[str]:
    """A UDP+TCP responder in `host` that answers with the source address it saw."""
    proc = host.popen([*TOOL, "serve", str(port)], cwd=REPO_ROOT, env=ENV,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # bounded: the process prints "ready" or dies
    assert line.strip() == "ready", f"responder did not start: {line!r}"
    return proc


def ask(host: Host, proto: str, address: str, port: int = PORT) -> str | None:
    """What the responder saw as our address, or None when no answer came within 2 s."""
    proc = host.run([*TOOL, "ask", proto, address, str(port)], cwd=REPO_ROOT, env=ENV,
                    check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_udp_and_tcp_cross_a_link(lab: Lab) -> None:
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b, "10.231.1.0/24")
    assert (link.addr_a, link.addr_b) == ("10.231.1.1", "10.231.1.2")
    serve(b)

    seen = ask(a, "udp", "10.231.1.2")
    assert seen is not None and seen.startswith("10.231.1.1:"), seen
    seen = ask(a, "tcp", "10.231.1.2")
    assert seen is not None and seen.startswith("10.231.1.1:"), seen


def test_loopback_is_up_in_every_namespace(lab: Lab) -> None:
    host = lab.host("solo")
    serve(host)
    assert ask(host, "udp", "127.0.0.1") is not None


def test_masquerading_router_hides_the_client(lab: Lab) -> None:
    server, client = lab.host("server"), lab.host("client")
    nat = lab.router("nat", wan=(server, "10.231.1.0/24"), lan=(client, "10.231.2.0/24"))
    assert (server.address, nat.wan_address, client.address) == (
        "10.231.1.1", "10.231.1.2", "10.231.2.2")
    serve(server)

    for proto in ("udp", "tcp"):
        seen = ask(client, proto, "10.231.1.1")
        assert seen is not None, f"{proto} did not cross the NAT"
        assert seen.split(":")[0] == "10.231.1.2", f"{proto}: server saw {seen}"
    # The server has no route to the client's private network.
    assert ask(server, "udp", client.address) is None


def test_one_to_one_nat_publishes_a_server(lab: Lab) -> None:
    client, server = lab.host("client"), lab.host("server")
    edge = lab.router("edge", wan=(client, "10.231.3.0/24"), lan=(server, "10.231.1.0/24"),
                      nat="none")
    public = "10.231.3.10"
    edge.one_to_one(public, server.address)
    serve(server)

    seen = ask(client, "udp", public)
    assert seen is not None and seen.split(":")[0] == client.address, seen
    assert ask(client, "tcp", public) is not None
    # What the server sends out leaves from the public address (the reply's source, which
    # the asking socket accepted because it is the address it sent to).
    assert ask(client, "udp", server.address) is None, "the private address is not reachable"


def test_block_udp_drops_udp_but_tcp_still_works(lab: Lab) -> None:
    a, b = lab.host("a"), lab.host("b")
    lab.link(a, b, "10.231.1.0/24")
    serve(b)
    a.block_udp()

    assert ask(a, "udp", "10.231.1.2") is None
    assert ask(a, "tcp", "10.231.1.2") is not None

    a.unblock_udp()
    assert ask(a, "udp", "10.231.1.2") is not None


def test_nat_rebinding_gives_the_client_a_new_public_address(lab: Lab) -> None:
    server, client = lab.host("server"), lab.host("client")
    nat = lab.router("nat", wan=(server, "10.231.1.0/24"), lan=(client, "10.231.2.0/24"))
    serve(server)
    asking = client.popen([*TOOL, "ask", "udp", server.address, str(PORT), "--again"],
                          cwd=REPO_ROOT, env=ENV, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert asking.stdin is not None and asking.stdout is not None
    before = asking.stdout.readline().strip()

    new_address = nat.rebind()
    asking.stdin.write("again\n")
    asking.stdin.flush()
    after = asking.stdout.readline().strip()

    assert before.split(":")[0] == "10.231.1.2", before
    assert after.split(":")[0] == new_address == nat.wan_address, (after, new_address)
    assert asking.wait(5) == 0


def test_packet_loss_on_a_link(lab: Lab) -> None:
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b, "10.231.1.0/24")
    serve(b)
    assert ask(a, "udp", "10.231.1.2") is not None

    how = a.netem(link.dev_a, loss_pct=100)
    assert how in ("netem", "iptables")
    assert ask(a, "udp", "10.231.1.2") is None


def test_delay_on_a_link(lab: Lab) -> None:
    a, b = lab.host("a"), lab.host("b")
    link = lab.link(a, b, "10.231.1.0/24")
    try:
        a.netem(link.dev_a, delay_ms=200)
    except netlab.NetlabUnavailable as exc:
        pytest.skip(str(exc))
    serve(b)
    started = time.monotonic()
    assert ask(a, "udp", "10.231.1.2") is not None
    assert time.monotonic() - started > 0.2


def test_closing_the_lab_removes_namespaces_and_processes() -> None:
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b, "10.231.1.0/24")
        responder = serve(b)
        orphan = b.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"]).stdout.strip()
        names = [a.ns, b.ns]
        assert set(names) <= set(netlab.list_namespaces())
    assert not set(names) & set(netlab.list_namespaces())
    assert responder.poll() is not None
    assert not netlab._running(int(orphan)), "a process started in a host survived"


def test_stale_namespaces_of_a_dead_run_are_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{netlab.PREFIX}{dead.pid}x0-old"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in netlab.cleanup_stale()
        assert stale not in netlab.list_namespaces()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)

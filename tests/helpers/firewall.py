"""Host firewall rules for tests on loopback: drop UDP to one port while a block runs."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def udp_port_dropped(port: int) -> Iterator[None]:
    """Drop every UDP datagram to `port` on this host (iptables), so ICE over UDP to it fails."""
    if shutil.which("iptables") is None:
        pytest.skip("needs iptables (scripts/setup-netns installs it)")
    rule = ["INPUT", "-p", "udp", "--dport", str(port), "-j", "DROP"]
    added = subprocess.run(["iptables", "-I", *rule], capture_output=True, text=True)
    if added.returncode != 0:
        pytest.skip(f"cannot add an iptables rule here: {added.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", *rule], capture_output=True, check=False)

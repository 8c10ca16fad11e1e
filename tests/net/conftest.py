"""Fixtures for the network lab: a `lab` per test and roost servers started inside it.

The whole package is skipped when network namespaces cannot be made here (not root, no
`ip`/`iptables`, or `ip netns add` refused); scripts/setup-netns installs the tools.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import netlab
from tests.helpers.netlab import Lab, NetnsRoostServer
from tests.helpers.server import ServerStartError

NETNS_SERVERS = pytest.StashKey[list[NetnsRoostServer]]()
_REASON: list[str | None] = []


def _unavailable() -> str | None:
    if not _REASON:
        _REASON.append(netlab.unavailable_reason())
    return _REASON[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(str(item.path)).parents]
    if mine and (reason := _unavailable()):
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=f"network lab unavailable: {reason}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:
        for server in item.stash.get(NETNS_SERVERS, []):
            report.sections.append(
                (f"roost log tail, netns {server.netns.name if server.netns else '?'} "
                 f"({server.log_path})", server.log_tail(max_lines=150))
            )
    return report


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab; every namespace, veth, rule and process in it is gone after the test."""
    with Lab() as the_lab:
        yield the_lab
    assert not the_lab.leftovers(), f"lab left namespaces behind: {the_lab.leftovers()}"


@pytest.fixture
def start_roost_in(
    request: pytest.FixtureRequest, tmp_path: Path, lab: Lab
) -> Iterator[Callable[..., NetnsRoostServer]]:
    """Factory: `start_roost_in(host, *cli_args, config=..., public_host=...)`, stopped after."""
    started: list[NetnsRoostServer] = []
    request.node.stash[NETNS_SERVERS] = started

    def factory(host: netlab.Host, *args: str, **kwargs: Any) -> NetnsRoostServer:
        kwargs.setdefault("log_dir", tmp_path)
        try:
            server = netlab.start_roost(host, *args, **kwargs)
        except ServerStartError as exc:
            failure = str(exc)
        else:
            started.append(server)
            return server
        pytest.fail(failure, pytrace=False)

    yield factory
    problems = []
    for server in started:
        process = server.process
        if process is not None and process.poll() not in (None, 0):
            problems.append(f"roost died during the test with exit code {process.returncode}")
        count, first = server.tracebacks()
        if count:
            problems.append(f"roost logged {count} traceback(s); the first:\n{first}")
        server.stop()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)

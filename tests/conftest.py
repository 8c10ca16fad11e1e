"""Shared fixtures: a real roost server per test, and scenario runs in child processes.

`server` starts `python -m roost serve --dev` on a free port (function scope); `start_server`
is the factory for tests that need extra CLI arguments or several servers; `redis_server`
and `cluster` give several nodes on a real Redis. When a test fails, the tail of each
server log it used is attached to the report.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `tests.helpers` must import the same way in the child
    sys.path.insert(0, str(ROOT))

from tests.helpers.cluster import Cluster  # noqa: E402
from tests.helpers.redis import RedisProcess, RedisUnavailable, ensure_redis_server  # noqa: E402
from tests.helpers.server import RoostServer, ServerStartError, start_server  # noqa: E402

SERVERS_KEY = pytest.StashKey[list[RoostServer]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed:
        for server in item.stash.get(SERVERS_KEY, []):
            report.sections.append(
                (f"roost server log tail ({server.log_path})", server.log_tail(max_lines=150))
            )
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "server_tracebacks_ok: the test expects roost to log tracebacks (not a failure then)",
    )


def server_problems(server: RoostServer, request: pytest.FixtureRequest) -> list[str]:
    """What went wrong inside the server during a test, even if the clients did not notice."""
    problems = []
    process = server.process
    if process is not None and process.poll() not in (None, 0):
        problems.append(f"roost died during the test with exit code {process.returncode}")
    if request.node.get_closest_marker("server_tracebacks_ok") is None:
        count, first = server.tracebacks()
        if count:
            problems.append(
                f"roost logged {count} traceback(s) during the test; the first:\n{first}"
            )
    return problems  # the report hook appends the log tail


@pytest.fixture(name="start_server")
def start_server_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., RoostServer]]:
    """Factory: `start_server(*extra_cli_args)` → a ready RoostServer, stopped at teardown."""
    started: list[RoostServer] = []
    request.node.stash[SERVERS_KEY] = started

    def factory(*extra_args: str) -> RoostServer:
        try:
            server = start_server(*extra_args, log_dir=tmp_path)
        except ServerStartError as exc:
            failure = str(exc)
        else:
            started.append(server)
            return server
        pytest.fail(failure, pytrace=False)  # outside `except`: no chained traceback

    yield factory
    problems = []
    for server in started:
        problems += server_problems(server, request)
        server.stop()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def server(request: pytest.FixtureRequest, start_server: Callable[..., RoostServer]) -> RoostServer:
    """A ready roost on a free port; `indirect` parametrisation may pass extra CLI args."""
    extra = getattr(request, "param", ())
    return start_server(*extra)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    """A throwaway redis-server (the test skips, saying why, when none can be installed)."""
    try:
        binary = ensure_redis_server()
        proc = RedisProcess(binary, tmp_path / "redis.log").start()
    except RedisUnavailable as exc:
        pytest.skip(f"multi-node tests need redis-server: {exc}")
    yield proc
    proc.kill()


@pytest.fixture
def cluster(redis_server: RedisProcess,
            start_server: Callable[..., RoostServer]) -> Callable[..., Cluster]:
    """Factory: `cluster(n, *extra_cli_args)` starts n nodes on `redis_server` and waits
    until all are registered."""

    def make(count: int, *extra: str) -> Cluster:
        nodes = [start_server("--redis-host", redis_server.address, *extra)
                 for _ in range(count)]
        made = Cluster(redis_server, nodes)
        made.wait_registered(count)
        return made

    return make

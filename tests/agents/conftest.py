"""Fixtures for real livekit-agents workers: `spawn` starts one; their logs join failures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.helpers.agents import AGENT_APP, AgentWorker
from tests.helpers.server import RoostServer

Spawn = Callable[..., AgentWorker]
WORKERS = pytest.StashKey[list[AgentWorker]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.failed:
        for worker in item.stash.get(WORKERS, []):
            report.sections.append((f"agent worker {worker.tag} log ({worker.log_path})",
                                    worker.log()[-8000:]))
    return report


@pytest.fixture
def spawn(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Spawn]:
    """Start a worker (`tag`, `agent_name`, `app` script, CLI `mode` and its `args`, the log
    line it is `ready` at, env) against a server; all stopped at teardown."""
    started: list[AgentWorker] = []
    request.node.stash[WORKERS] = started

    def factory(server: RoostServer, tag: str, agent_name: str = "",
                app: Path = AGENT_APP, mode: str = "dev", args: tuple[str, ...] = (),
                ready: str = "registered worker", **env: str) -> AgentWorker:
        worker = AgentWorker(server, tmp_path / f"worker-{tag}.log", tag=tag,
                             agent_name=agent_name, mode=mode, args=args, ready=ready,
                             env=env, app=app)
        started.append(worker)
        return worker.start()

    yield factory
    for worker in started:
        worker.stop()

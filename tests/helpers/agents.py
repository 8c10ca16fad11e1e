"""A real livekit-agents worker (tests/agents/agent_app.py) run from .venv-agents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.server import REPO_ROOT, RoostServer, free_port, tail

AGENTS_PYTHON = REPO_ROOT / ".venv-agents" / "bin" / "python"
AGENT_APP = REPO_ROOT / "tests" / "agents" / "agent_app.py"
REGISTER_TIMEOUT = 60.0  # seconds for a cold worker (imports, forkserver) to register


def agents_available() -> str:
    """'' when the agents venv is installed, else why not (scripts/setup-agents)."""
    if not AGENTS_PYTHON.exists():
        return f"{AGENTS_PYTHON} is missing: run scripts/setup-agents"
    return ""


@dataclass
class AgentWorker:
    """One `agent_app.py dev|start|connect` process (or another worker script, `app`) with
    `args` after the mode (`connect`: `--room R`); `tag` names it in its jobs' attributes.
    `start()` waits until the log shows `ready` (nothing, if empty)."""

    server: RoostServer
    log_path: Path
    tag: str = "w"
    agent_name: str = ""
    mode: str = "dev"
    args: tuple[str, ...] = ()
    ready: str = "registered worker"
    env: dict[str, str] = field(default_factory=dict)
    app: Path = AGENT_APP
    health_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = REGISTER_TIMEOUT) -> AgentWorker:
        self.health_port = self.health_port or free_port()
        env = {**os.environ, "LIVEKIT_URL": self.server.http_url,
               "LIVEKIT_API_KEY": self.server.api_key,
               "LIVEKIT_API_SECRET": self.server.api_secret, "WORKER_TAG": self.tag,
               "AGENT_NAME": self.agent_name, "HEALTH_PORT": str(self.health_port),
               "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(AGENTS_PYTHON), str(self.app), self.mode, *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.app.parent, env=env, start_new_session=True)
        if self.ready:
            self.wait_for_log(self.ready, timeout)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def wait_for_log(self, marker: str, timeout: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log().count(marker) >= count:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker {self.tag} exited ({self.process.returncode})"
                                     f" before {marker!r}:\n{tail(self.log_path)}")
            time.sleep(0.1)
        raise AssertionError(f"worker {self.tag} did not log {marker!r} x{count} in "
                             f"{timeout:.0f} s:\n{tail(self.log_path)}")

    def info(self) -> dict[str, Any]:
        """The worker's own `GET /worker` (active_jobs, worker_load, ...)."""
        url = f"http://127.0.0.1:{self.health_port}/worker"
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            return dict(json.loads(resp.read()))

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the worker's process group (jobs too), SIGKILL what is left."""
        proc = self.process
        if proc is None:
            return
        self.signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait(timeout)

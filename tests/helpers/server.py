"""Start and stop a real `roost serve --dev` process on a free port, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class ServerStartError(RuntimeError):
    """The server process exited or did not answer `GET /` in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, max_lines: int = 120, max_chars: int = 20_000) -> str:
    """The last lines of a log file, or a note when there is none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    text = data[-max_chars * 2 :].decode("utf-8", "replace")
    lines = text.splitlines()[-max_lines:]
    return "\n".join(lines)[-max_chars:]


def make_token(
    api_key: str,
    api_secret: str,
    identity: str,
    room: str,
    *,
    name: str | None = None,
    metadata: str | None = None,
    attributes: dict[str, str] | None = None,
    ttl_seconds: int | None = None,
    **grants: Any,
) -> str:
    """An access token that lets `identity` join `room`; extra keywords are VideoGrants fields."""
    from datetime import timedelta

    from livekit import api

    token = api.AccessToken(api_key, api_secret).with_identity(identity)
    if name is not None:
        token = token.with_name(name)
    if metadata is not None:
        token = token.with_metadata(metadata)
    if attributes:
        token = token.with_attributes(attributes)
    if ttl_seconds is not None:
        token = token.with_ttl(timedelta(seconds=ttl_seconds))
    grants.setdefault("room_join", True)
    token = token.with_grants(api.VideoGrants(room=room, **grants))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the dev secret is short
        return token.to_jwt()


@dataclass
class RoostServer:
    """One `roost serve` child process bound to 127.0.0.1 on its own port."""

    port: int
    log_path: Path
    extra_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    api_key: str = DEV_API_KEY
    api_secret: str = DEV_API_SECRET
    env: dict[str, str] = field(default_factory=dict)  # added to the child's environment
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "server not started"
        return self.process.pid

    @property
    def info(self) -> dict[str, str]:
        """What a scenario child needs to reach this server (JSON-serialisable)."""
        return {"url": self.url, "api_key": self.api_key, "api_secret": self.api_secret}

    def token(self, identity: str, room: str, **grants: Any) -> str:
        return make_token(self.api_key, self.api_secret, identity, room, **grants)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "roost",
            "serve",
            "--dev",
            "--bind",
            self.host,
            "--port",
            str(self.port),
            # e.g. ROOST_TEST_SERVER_ARGS=--single-pc: the whole suite with extra flags (a
            # test's own arguments come later and win)
            *os.environ.get("ROOST_TEST_SERVER_ARGS", "").split(),
            *self.extra_args,
        ]

    def start(self, ready_timeout: float = READY_TIMEOUT) -> RoostServer:
        env = {**os.environ, **self.env}
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
                start_new_session=True,
            )
        self._wait_ready(ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"roost exited with code {code} before it was ready\n"
                    f"command: {' '.join(self.command())}\n--- server log ---\n"
                    f"{tail(self.log_path)}"
                )
            try:
                with urllib.request.urlopen(self.http_url + "/", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"GET / answered {resp.status}"
            except urllib.error.HTTPError as exc:
                last_error = f"GET / answered {exc.code}"
            except (OSError, urllib.error.URLError) as exc:
                last_error = f"GET / failed: {exc}"
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(
            f"roost did not answer GET / with 200 within {timeout:.0f} s ({last_error})\n"
            f"--- server log ---\n{tail(self.log_path)}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with open(self.log_path, "a") as log:
                    log.write(f"\n[harness] roost ignored SIGTERM for {timeout} s; killing it\n")
                proc.kill()
                proc.wait(timeout)
        return proc.returncode

    def log_tail(self, max_lines: int = 120) -> str:
        return tail(self.log_path, max_lines=max_lines)

    def tracebacks(self, context_lines: int = 25) -> tuple[int, str]:
        """How many Python tracebacks the server logged, and the first one."""
        try:
            lines = self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return 0, ""
        starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
        if not starts:
            return 0, ""
        first = starts[0]
        return len(starts), "\n".join(lines[max(0, first - 2) : first + context_lines])

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")


def start_server(*extra_args: str, log_dir: Path | None = None,
                 env: dict[str, str] | None = None) -> RoostServer:
    """Start roost on a free port and wait until `GET /` answers 200."""
    directory = log_dir or Path(tempfile.mkdtemp(prefix="roost-test-"))
    for attempt in range(3):
        port = free_port()
        server = RoostServer(
            port=port, log_path=directory / f"roost-{port}.log", extra_args=tuple(extra_args),
            env=dict(env or {}),
        )
        try:
            return server.start()
        except ServerStartError:
            # Another process may have taken the port between free_port() and bind().
            if attempt == 2 or "in use" not in server.log_tail().lower():
                raise
    raise AssertionError("unreachable")

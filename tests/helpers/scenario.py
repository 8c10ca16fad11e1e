"""Run an official-SDK scenario in a child interpreter and fail the test with its output.

The official SDK's Rust core aborts the whole process when a server message panics it, so
scenarios never run inside the pytest process: `run_scenario` starts
`python -m tests.helpers.scenario_runner module:function '<json args>'` with
`RUST_LOG=livekit=debug`, waits (bounded) and raises `ScenarioFailed` with the tail of the
child's output when it exits non-zero, dies from a signal or times out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.helpers.server import REPO_ROOT, tail

DEFAULT_RUST_LOG = "livekit=debug,livekit_api=debug,livekit_ffi=info"
KILL_GRACE = 10.0


class ScenarioFailed(AssertionError):
    """A scenario child failed; the message holds the reason and the child's output tail."""


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("RUST_LOG", DEFAULT_RUST_LOG)
    env.setdefault("LIVEKIT_RTC_DEBUG", "1")  # let the SDK forward Rust debug logs to Python
    env.setdefault("RUST_BACKTRACE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _sdk_complaints(output: str, limit: int = 40) -> str:
    """The SDK's warnings, errors and panics: usually the reason it rejected something."""
    lines = [
        line
        for line in output.splitlines()
        # a v1-path 404 is shown too: roost serves /rtc/v1, so it points at a regression
        if " W livekit" in line or " E livekit" in line or "panic" in line.lower()
    ]
    if not lines:
        return ""
    shown = lines[-limit:]
    return f"--- SDK warnings/errors ({len(shown)} of {len(lines)}) ---\n" + "\n".join(shown) + "\n"


def run_scenario(
    fn_path: str,
    *args: Any,
    timeout: float = 60.0,
    log_dir: Path | None = None,
    tail_lines: int = 150,
) -> Any:
    """Run `module:function(*args)` in a child process; return what the function returned.

    The child applies `timeout` to the coroutine itself (so a hang shows the awaiting line in
    the traceback); the parent kills the child `KILL_GRACE` seconds later if it is still alive.
    """
    directory = log_dir or Path(tempfile.mkdtemp(prefix="roost-scenario-"))
    stem = fn_path.replace(":", ".").rsplit(".", 2)[-1]
    log_path = directory / f"{stem}.log"
    result_path = directory / f"{stem}.result.json"
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "tests.helpers.scenario_runner",
        fn_path,
        json.dumps(list(args)),
        "--timeout",
        str(timeout),
        "--result-file",
        str(result_path),
    ]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=child_env(),
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout + KILL_GRACE)
            reason = (
                None
                if code == 0
                else (
                    f"exited with code {code}"
                    if code > 0
                    else f"killed by {_signal_name(code)}"
                    + (
                        " (an SDK Rust panic ends the process with SIGTERM/SIGABRT)"
                        if code in (-signal.SIGTERM, -signal.SIGABRT)
                        else ""
                    )
                )
            )
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            reason = f"did not finish within {timeout + KILL_GRACE:.0f} s and was killed"
    elapsed = time.monotonic() - started
    output = log_path.read_text("utf-8", "replace")
    if reason is not None:
        message = (
            f"scenario {fn_path} {reason} after {elapsed:.1f} s\n"
            f"full output: {log_path}\n"
            f"{_sdk_complaints(output)}"
            f"--- scenario output (last {tail_lines} lines) ---\n"
            f"{tail(log_path, max_lines=tail_lines, max_chars=40_000)}"
        )
        if "pytest" in sys.modules:
            import pytest

            pytest.fail(message, pytrace=False)
        raise ScenarioFailed(message)
    return json.loads(result_path.read_text())

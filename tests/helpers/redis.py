"""A throwaway `redis-server` on a free loopback port (no persistence), for multi-node tests.

`ensure_redis_server()` finds the binary, running `scripts/setup-redis` (Debian's package)
once if it is missing; `RedisProcess` starts, kills and restarts it on the same port;
`SentinelProcess` runs a Sentinel (`redis-server --sentinel`) watching one of them.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.server import REPO_ROOT, free_port, tail

READY_TIMEOUT = 10.0
SETUP_TIMEOUT = 600.0


class RedisUnavailable(RuntimeError):
    """redis-server is not installed and could not be installed."""


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if Path(candidate).exists():
            return candidate
    return None


def ensure_redis_server() -> str:
    """The redis-server binary, installing it with scripts/setup-redis when missing."""
    found = find_redis_server()
    if found:
        return found
    script = REPO_ROOT / "scripts" / "setup-redis"
    try:
        result = subprocess.run([str(script)], capture_output=True, text=True,
                                timeout=SETUP_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RedisUnavailable(f"scripts/setup-redis could not run: {exc}") from exc
    found = find_redis_server()
    if found is None:
        raise RedisUnavailable(
            f"redis-server is not installed and scripts/setup-redis failed "
            f"(exit {result.returncode}): {(result.stderr or result.stdout)[-500:]}")
    return found


def ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess:
    """One redis-server child: `start`, `kill` (SIGKILL) and `restart` on the same port."""

    binary: str
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RedisProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RedisUnavailable(f"redis-server did not start on port {self.port}:\n"
                                       f"{tail(self.log_path, 30)}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: Redis vanishes with everything it held (nothing is persisted)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()

    def keys(self, pattern: str = "*") -> dict[str, str]:
        """Every matching string key and its value (sets are listed with value '<set>')."""
        import redis

        client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)
        try:
            out: dict[str, str] = {}
            for key in client.scan_iter(pattern):
                kind = client.type(key)
                out[key] = (client.get(key) or "") if kind == "string" else f"<{kind}>"
            return out
        finally:
            client.close()


@dataclass
class SentinelProcess:
    """A Sentinel monitoring `master` under `name` (quorum 1)."""

    master: RedisProcess
    directory: Path
    name: str = "roostmaster"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SentinelProcess:
        conf = self.directory / f"sentinel-{self.port}.conf"  # Sentinel rewrites its config
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\n"
                        f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} 1\n")
        log_path = self.directory / f"sentinel-{self.port}.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen([self.master.binary, str(conf), "--sentinel"],
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RedisUnavailable(f"sentinel did not start:\n{tail(log_path, 30)}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)

"""A real HTTP webhook receiver on a loopback port that verifies what it gets with livekit-api.

`WebhookSink.start()` serves `POST /hook`; every request is checked the way an application
would check it (`WebhookReceiver(TokenVerifier(key, secret)).receive(body, auth)`) and, while
`status` is 200, recorded in `events`; other statuses are answered as set (for downtime).
`roost_config` writes a livekit.yaml that points roost at the sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from livekit import api
from livekit.protocol import webhook
from tests.helpers.server import DEV_API_KEY, DEV_API_SECRET, free_port


@dataclass
class Received:
    """One accepted request."""

    event: webhook.WebhookEvent
    body: str
    auth: str
    content_type: str


@dataclass
class WebhookSink:
    """An aiohttp receiver; `status` is what it answers, `events` what it accepted."""

    api_key: str = DEV_API_KEY
    api_secret: str = DEV_API_SECRET
    port: int = field(default_factory=free_port)
    status: int = 200
    events: list[Received] = field(default_factory=list)
    refused: int = 0  # requests answered with a non-200 status
    invalid: list[str] = field(default_factory=list)  # why a request failed verification
    _runner: web.AppRunner | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> WebhookSink:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.text()
        if self.status != 200:
            self.refused += 1
            return web.Response(status=self.status, text="down")
        auth = request.headers.get("Authorization", "")
        receiver = api.WebhookReceiver(api.TokenVerifier(self.api_key, self.api_secret))
        try:
            event = receiver.receive(body, auth)
        except Exception as exc:  # record it: the test fails on any invalid request
            self.invalid.append(f"{type(exc).__name__}: {exc}")
            return web.Response(status=401, text=str(exc))
        self.events.append(Received(event, body, auth, request.headers.get("Content-Type", "")))
        self._changed.set()
        return web.Response(text="ok")

    def names(self) -> list[str]:
        return [r.event.event for r in self.events]

    async def wait_for(
        self, predicate: Callable[[list[str]], bool], timeout: float, what: str
    ) -> None:
        """Wait until `predicate(self.names())` holds, or fail saying what was received."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.names()):
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(
                    f"timed out waiting for {what}; received {self.names()}, "
                    f"refused {self.refused}, invalid {self.invalid}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass


def roost_config(
    path: Path,
    urls: list[str],
    *,
    api_key: str = DEV_API_KEY,
    departure_timeout: int = 1,
    empty_timeout: int = 5,
) -> Path:
    """Write a livekit.yaml with webhook targets and short room timeouts; returns its path."""
    lines = ["webhook:", f"  api_key: {api_key}", "  urls:"]
    lines += [f"    - {url}" for url in urls]
    lines += [
        "room:",
        f"  departure_timeout: {departure_timeout}",
        f"  empty_timeout: {empty_timeout}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path

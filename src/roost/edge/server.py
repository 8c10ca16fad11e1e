"""The aiohttp application: routes, CORS, health, start-up and graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web

from roost.auth import TokenVerifier
from roost.config import Settings
from roost.edge.metrics import Metrics
from roost.edge.rtc import RTCEndpoints
from roost.room.manager import RoomManager
from roost.signal.service import SignalService

log = logging.getLogger("roost.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WEBHOOK_FLUSH_DEADLINE = 3.0  # seconds to deliver queued webhooks when stopping

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS, HEAD, GET, POST, PATCH, DELETE",
    "Access-Control-Allow-Headers": "*",
}


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Allow every origin, as livekit-server does, and answer preflights."""
    if request.method == "OPTIONS":
        headers = dict(_CORS)
        asked = request.headers.get("Access-Control-Request-Headers")
        if asked:
            headers["Access-Control-Allow-Headers"] = asked
        return web.Response(status=204, headers=headers)
    response = await handler(request)
    if not response.prepared:
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
    return response


class RoostServer:
    """One roost node: the HTTP edge over a RoomManager and a SignalService."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(settings.keys)
        self.rooms = RoomManager(settings)
        self.signal = SignalService(settings, self.rooms)
        self.app = web.Application(middlewares=[cors],
                                   client_max_size=settings.limit.api_body_size)
        self.app.router.add_get("/", self.health)
        RTCEndpoints(settings, self.verifier, self.signal).add_routes(self.app)
        from roost.api.twirp import RoomServiceAPI  # the API layer sits beside the edge

        RoomServiceAPI(settings, self.verifier, self.rooms, self.signal).add_routes(self.app)
        from roost.avatar.compose import ComposeService

        ComposeService(settings, self.rooms).add_routes(self.app)
        from roost.api.webhooks import WebhookNotifier

        self.webhooks = WebhookNotifier.from_settings(settings)
        if self.webhooks is not None:
            self.rooms.listeners.append(self.webhooks.on_event)
        self.metrics = Metrics(self.rooms)
        self.metrics.add_routes(self.app)
        self._runner: web.AppRunner | None = None
        self.bound_ports: list[int] = []

    async def health(self, request: web.Request) -> web.Response:
        if self.rooms.draining:
            return web.Response(status=406, text="Not Ready")
        return web.Response(text="OK")

    async def start(self) -> None:
        self.rooms.start()
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                     shutdown_timeout=2.0)
        await self._runner.setup()
        for host in self.settings.bind_addresses or ["0.0.0.0"]:
            site = web.TCPSite(self._runner, host, self.settings.port, reuse_address=True)
            await site.start()
        log.info("roost listening on %s port %d (node %s)", ",".join(self.settings.bind_addresses),
                 self.settings.port, self.signal.node_id)

    async def stop(self) -> None:
        """Drain: refuse joins, send everyone a leave, wait up to the deadline, then exit."""
        log.info("draining (deadline %.0fs)", self.settings.drain_timeout)
        await self.signal.drain(self.settings.drain_timeout)
        await self.rooms.stop()
        if self.webhooks is not None:
            await self.webhooks.stop(WEBHOOK_FLUSH_DEADLINE)
        if self._runner is not None:
            await self._runner.cleanup()

    async def serve_forever(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()

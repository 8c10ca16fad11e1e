"""The aiohttp application: routes, CORS, health, start-up and graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from livekit.protocol import agent

from roost import ids
from roost.auth import TokenVerifier
from roost.config import Settings
from roost.edge.metrics import Metrics
from roost.edge.rtc import RTCEndpoints
from roost.ids import RoomName
from roost.media.icemux import IceMux
from roost.room.manager import RoomManager
from roost.room.participant import Participant
from roost.room.room import Room
from roost.routing import LocalLoad, make_router
from roost.signal.service import SignalService

if TYPE_CHECKING:
    from roost.agents.service import AgentService

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


def node_url(settings: Settings) -> str:
    """The HTTP address other nodes reach this one at (node_ip, a bind address, the host)."""
    host = settings.rtc.node_ip or next(
        (a for a in settings.bind_addresses if a not in ("", "0.0.0.0", "::")), "")
    if not host:
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class RoostServer:
    """One roost node: the HTTP edge over a RoomManager and a SignalService."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(settings.keys)
        self.rooms = RoomManager(settings)
        self.router = make_router(settings.redis, ids.node_id(), node_url(settings),
                                  self._load)
        self.signal = SignalService(settings, self.rooms, self.router)
        self.router.on_conflict = self.signal.evict
        self.rooms.listeners.append(self._room_event)
        self.app = web.Application(middlewares=[cors],
                                   client_max_size=settings.limit.api_body_size)
        self.app.router.add_get("/", self.health)
        RTCEndpoints(settings, self.verifier, self.signal).add_routes(self.app)
        self.agents: AgentService | None = None
        if settings.agents.enabled:
            from roost.agents.service import AgentService
            from roost.edge.agent import AgentEndpoint

            self.agents = AgentService(settings, self.rooms, self.signal.node_id,
                                       self.router)
            AgentEndpoint(self.verifier, self.agents,
                          settings.limit.signal_message_size).add_routes(self.app)
        from roost.api.twirp import RoomServiceAPI  # the API layer sits beside the edge

        RoomServiceAPI(settings, self.verifier, self.rooms, self.signal,
                       self.agents).add_routes(self.app)
        from roost.avatar.compose import ComposeService

        ComposeService(settings, self.rooms).add_routes(self.app)
        from roost.api.webhooks import WebhookNotifier

        self.webhooks = WebhookNotifier.from_settings(settings)
        if self.webhooks is not None:
            self.rooms.listeners.append(self.webhooks.on_event)
            if self.agents is not None and settings.agents.job_webhooks:
                self.agents.job_listeners.append(self._job_webhook)
        self.metrics = Metrics(self.rooms, lambda: (self.ice_mux, self.turn))
        self.metrics.add_routes(self.app)
        self._runner: web.AppRunner | None = None
        self.bound_ports: list[int] = []
        self.ice_mux: IceMux | None = None
        self.turn: Any = None  # roost.turn.server.TurnServer when turn.enabled

    def _load(self) -> LocalLoad:
        rooms = [r for r in self.rooms.rooms.values() if not r.closed]
        return LocalLoad(rooms=[r.name for r in rooms],
                         participants=sum(len(r.participants) for r in rooms))

    def _room_event(self, event: str, room: Room, participant: Participant | None,
                    track: object) -> None:
        if event == "room_finished":
            self.router.room_closed(room.name)

    def _job_webhook(self, event: str, room: RoomName, job: agent.Job) -> None:
        if self.webhooks is not None:
            found = self.rooms.rooms.get(room)
            self.webhooks.on_job(event, found.to_proto() if found is not None else None, job)

    async def health(self, request: web.Request) -> web.Response:
        if self.rooms.draining:
            return web.Response(status=406, text="Not Ready")
        return web.Response(text="OK")

    async def start(self) -> None:
        from roost.edge.network import IceServerList, start_ice_mux

        self.ice_mux = await start_ice_mux(self.settings)
        self.signal.ice_mux = self.ice_mux
        credentials = await self._start_turn(self.ice_mux)
        self.signal.ice_servers = IceServerList(self.settings, self.ice_mux,
                                                credentials).for_participant
        self.rooms.start()
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                     shutdown_timeout=2.0)
        await self._runner.setup()
        for host in self.settings.bind_addresses or ["0.0.0.0"]:
            site = web.TCPSite(self._runner, host, self.settings.port, reuse_address=True)
            await site.start()
        log.info("roost listening on %s port %d (node %s)", ",".join(self.settings.bind_addresses),
                 self.settings.port, self.signal.node_id)
        await self.router.start()

    async def _start_turn(self, mux: IceMux) -> object:
        """Start the embedded TURN server when `turn.enabled`; its credential issuer."""
        turn = self.settings.turn
        if not turn.enabled:
            return None
        import secrets

        from roost.turn.credentials import TurnCredentials
        from roost.turn.server import TurnServer

        credentials = TurnCredentials(secrets.token_bytes(32), turn.credential_ttl)
        wildcard = next((a for a in self.settings.bind_addresses if a in ("0.0.0.0", "::", "")),
                        None)
        relay = next((a for a in mux.addresses if not a.startswith("127.")), mux.addresses[0])
        self.turn = TurnServer(turn, credentials, bind_host=wildcard or relay, relay_host=relay,
                               advertised_host=mux.advertised[0] if mux.advertised else None,
                               peer_hosts=[*mux.addresses, *mux.advertised])
        await self.turn.start()
        log.info("turn: listening udp=%s tcp=%s tls=%s, relays on %s", turn.udp_port or "-",
                 turn.tcp_port or "-", turn.tls_port or "-", relay)
        return credentials

    async def stop(self) -> None:
        """Drain: refuse joins, send everyone a leave, wait up to the deadline, then exit."""
        log.info("draining (deadline %.0fs)", self.settings.drain_timeout)
        await self.router.set_draining()
        await self.signal.drain(self.settings.drain_timeout)
        if self.agents is not None:
            await self.agents.stop()
        await self.rooms.stop()
        await self.router.stop()
        if self.webhooks is not None:
            await self.webhooks.stop(WEBHOOK_FLUSH_DEADLINE)
        if self._runner is not None:
            await self._runner.cleanup()
        if self.ice_mux is not None:
            await self.ice_mux.stop()
        if self.turn is not None:
            await self.turn.stop()

    async def serve_forever(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()

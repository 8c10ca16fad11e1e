"""The `/agent` endpoint: a LiveKit Agents worker's WebSocket (token with the `agent` grant)."""

from __future__ import annotations

import logging

from aiohttp import web

from roost.agents.service import AgentService
from roost.auth import AuthError, TokenVerifier
from roost.edge.rtc import HTTPRefusal, bearer_token
from roost.edge.websocket import WebSocketConnection, accept

log = logging.getLogger("roost.edge")


class AgentEndpoint:
    """Upgrades authorised worker connections and hands them to the AgentService."""

    def __init__(self, verifier: TokenVerifier, agents: AgentService,
                 max_message_size: int) -> None:
        self.verifier = verifier
        self.agents = agents
        self.max_message_size = max_message_size

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/agent", self.connect)

    async def connect(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=404, text="404: Not Found")
        try:
            claims = self.verifier.verify(bearer_token(request))
        except HTTPRefusal as refusal:
            return refusal.response()
        except AuthError as exc:
            return web.Response(status=exc.status, text=str(exc))
        if not claims.video.agent:
            return web.Response(status=401, text="permissions denied: the agent grant is "
                                                 "required on /agent")
        ws = await accept(request, self.max_message_size)
        worker = self.agents.worker(WebSocketConnection(ws), claims.api_key)
        await worker.run()
        return ws

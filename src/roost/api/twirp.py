"""Twirp transport for livekit.RoomService (stub; filled in below)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class RoomServiceAPI:
    """The RoomService Twirp endpoints on the main HTTP port."""

    def __init__(self, settings: Any, verifier: Any, rooms: Any, signal: Any) -> None:
        self.settings = settings
        self.verifier = verifier
        self.rooms = rooms
        self.signal = signal

    def add_routes(self, app: web.Application) -> None:
        """Register POST /twirp/livekit.RoomService/{method}."""
        app.router.add_post("/twirp/{service}/{method}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        """Placeholder until the methods land."""
        return web.json_response({"code": "unimplemented", "msg": "not yet"}, status=501)

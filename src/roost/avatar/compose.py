"""Simli's compose API on roost: `POST /compose/token`, the `/compose/webrtc/livekit` WebSocket,
and `POST /integrations/livekit/agents` (what `livekit-plugins-simli` calls).

The compose API key comes in `x-simli-api-key`: `Settings.compose_api_key`, or in `--dev` mode
`simli-dev-key` when none is set. Each WebSocket session gets its own room (created on demand),
a client token and an avatar (kind AGENT) that joins through `roost.client`.

The media side (numpy, PyAV: the `client` extra) is imported when the first session starts, so
a server installed without it still starts; its token endpoint then answers 503.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.util
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import WSMsgType, web

from roost.auth import VideoGrant, issue_token
from roost.avatar.faces import get_face
from roost.avatar.limits import DEV_COMPOSE_API_KEY, ComposeLimits
from roost.avatar.tokens import RequestError, SessionRequest, SessionTokens, TokenError
from roost.config import Settings
from roost.ids import RoomName

if TYPE_CHECKING:
    from roost.avatar.datastream import AgentsSession
    from roost.avatar.session import ComposeSession

log = logging.getLogger("roost.avatar")

API_KEY_HEADER = "x-simli-api-key"
FAIL_TOKEN = "FAIL TOKEN"
AVATAR_IDENTITY = "roost-avatar"
_WILDCARDS = ("", "0.0.0.0", "::")
MEDIA_MODULES = ("numpy", "av")


class RoomHost(Protocol):
    """Room creation on this server (`RoomManager`), so a session's room exists up front."""

    def create_room(self, name: RoomName) -> object: ...

    def delete_room(self, name: RoomName) -> bool: ...


def _fail(status: int, detail: str) -> web.Response:
    return web.json_response({"session_token": FAIL_TOKEN, "detail": detail}, status=status)


class ComposeService:
    """Mounts the compose routes and owns the running sessions."""

    def __init__(self, settings: Settings, rooms: RoomHost | None = None,
                 limits: ComposeLimits | None = None) -> None:
        if not settings.keys:
            raise ValueError("the compose service needs an API key to sign room tokens")
        self.settings = settings
        self.rooms = rooms
        self.limits = limits or ComposeLimits.from_env()
        self.api_key, self.api_secret = next(iter(settings.keys.items()))
        self.tokens = SessionTokens(self.api_secret.encode(), self.limits.token_ttl)
        self.sessions: dict[str, ComposeSession | AgentsSession] = {}

    @property
    def compose_key(self) -> str:
        key = getattr(self.settings, "compose_api_key", "")
        return key or (DEV_COMPOSE_API_KEY if self.settings.development else "")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/compose/token", self.token)
        app.router.add_get("/compose/webrtc/livekit", self.websocket)
        app.router.add_post("/integrations/livekit/agents", self.agents)
        app.on_shutdown.append(self._shutdown)
        if self.compose_key == DEV_COMPOSE_API_KEY:
            log.info("compose API: dev mode key %r (send it as %s)", DEV_COMPOSE_API_KEY,
                     API_KEY_HEADER)
        elif not self.compose_key:
            log.info("compose API disabled: no compose_api_key configured")

    # ---- POST /compose/token ------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        """Validate the body and answer `{"session_token": …}` (or 400 `FAIL TOKEN`)."""
        expected = self.compose_key
        given = request.headers.get(API_KEY_HEADER, "")
        if not expected:
            return _fail(401, "the compose API is disabled on this server "
                              "(set compose_api_key)")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _fail(401, f"invalid {API_KEY_HEADER}")
        missing = [m for m in MEDIA_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            return _fail(503, f"the avatar needs {', '.join(missing)}: install roost[client]")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            return _fail(400, "body must be JSON")
        try:
            session = SessionRequest.parse(body, self.limits.max_session_length)
        except RequestError as exc:
            return _fail(400, str(exc))
        return web.json_response({"session_token": self.tokens.issue(session)})

    # ---- WebSocket /compose/webrtc/livekit ------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """One compose session for as long as the socket lives."""
        ws = web.WebSocketResponse(max_msg_size=self.limits.max_message_bytes * 2,
                                   autoping=True)
        await ws.prepare(request)
        refusal = ""
        try:
            redeemed = self.tokens.redeem(request.query.get("session_token", ""))
        except TokenError as exc:
            refusal = f"ERROR {exc}"
        else:
            if len(self.sessions) >= self.limits.max_sessions:
                refusal = f"ERROR server busy: {len(self.sessions)} sessions running"
        if refusal:
            await ws.send_str(refusal)
            await ws.close()
            return ws
        try:
            session = await self._open_session(redeemed.session_id, redeemed.request, ws,
                                               request)
        except Exception as exc:  # a session that cannot start ends alone, with its reason
            log.exception("compose session could not start")
            await ws.send_str(f"ERROR could not start the session: {exc or type(exc).__name__}")
            await ws.close()
            return ws
        try:
            await session.start()
            async for msg in ws:
                if session.closed:
                    break
                if msg.type == WSMsgType.BINARY:
                    await session.on_audio(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await session.on_text(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    await session.terminate(f"ERROR bad message: {ws.exception()}")
            await session.close("client closed the socket")
        finally:
            if not session.closed:
                await session.close("connection lost")
        return ws

    async def _open_session(self, session_id: str, req: SessionRequest, ws: web.WebSocketResponse,
                            request: web.Request) -> ComposeSession:
        from roost.avatar.agent import Avatar
        from roost.avatar.session import ComposeSession, JoinInfo

        face = get_face(req.face_id)
        assert face is not None  # checked when the token was issued
        room = RoomName(f"compose-{session_id}")
        client_identity = f"client-{session_id[3:]}"
        if self.rooms is not None:
            self.rooms.create_room(room)
        ttl = req.max_session_length + self.limits.join_timeout + 60
        join = JoinInfo(
            livekit_url=self._public_url(request),
            livekit_token=issue_token(self.api_key, self.api_secret, identity=client_identity,
                                      video=VideoGrant(room_join=True, room=room),
                                      valid_for=ttl),
            client_identity=client_identity,
            avatar_url=self._internal_url(),
            avatar_token=issue_token(self.api_key, self.api_secret, identity=AVATAR_IDENTITY,
                                     name=face.name, kind="agent", valid_for=ttl,
                                     video=VideoGrant(room_join=True, room=room, agent=True,
                                                      can_subscribe=False)),
            room=room,
        )
        avatar = await Avatar.create(face, handle_silence=req.handle_silence,
                                     start_frame=req.start_frame,
                                     seed=secrets.randbits(32))
        session = ComposeSession(session_id, req, ws, avatar, join, self.limits,
                                 on_closed=self._compose_closed)
        self.sessions[session_id] = session
        log.info("compose session opened", extra={"room": room, "session": session_id,
                                                  "face": face.face_id})
        return session

    async def _compose_closed(self, session: ComposeSession) -> None:
        self.sessions.pop(session.session_id, None)
        if self.rooms is not None:
            self.rooms.delete_room(session.join.room)

    # ---- POST /integrations/livekit/agents --------------------------------------------

    async def agents(self, request: web.Request) -> web.Response:
        """Send an avatar into an agent's room: `{session_token, livekit_url, livekit_token}`."""
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            return web.json_response({"detail": "body must be JSON"}, status=400)
        fields = _strings(body, "session_token", "livekit_url", "livekit_token")
        if fields is None:
            return web.json_response(
                {"detail": "session_token, livekit_url and livekit_token are required"},
                status=400)
        token, url, room_token = fields
        try:
            redeemed = self.tokens.redeem(token)
        except TokenError as exc:
            return web.json_response({"detail": str(exc)}, status=401)
        if len(self.sessions) >= self.limits.max_sessions:
            return web.json_response({"detail": "server busy"}, status=503)
        from roost.avatar.agent import Avatar
        from roost.avatar.datastream import AgentsSession

        req = redeemed.request
        face = get_face(req.face_id)
        assert face is not None
        avatar = await Avatar.create(face, handle_silence=req.handle_silence,
                                     start_frame=req.start_frame, seed=secrets.randbits(32))
        session = AgentsSession(redeemed.session_id, req, avatar, self.limits,
                                on_closed=self._agents_closed)
        self.sessions[session.session_id] = session
        try:
            await session.start(url, room_token)
        except Exception as exc:  # report any join failure to the caller
            await session.close(f"could not start: {exc!r}")
            detail = "avatar could not join the room or find the agent"
            return web.json_response({"detail": f"{detail}: {exc or type(exc).__name__}"},
                                     status=400)
        return web.json_response({"session_id": session.session_id,
                                  "agent_identity": session.agent_identity})

    async def _agents_closed(self, session: AgentsSession) -> None:
        self.sessions.pop(session.session_id, None)

    # ---- helpers -------------------------------------------------------------------------

    def _public_url(self, request: web.Request) -> str:
        forwarded = request.headers.get("X-Forwarded-Proto", "").lower()
        secure = request.secure or forwarded in ("https", "wss")
        return f"{'wss' if secure else 'ws'}://{request.host}"

    def _internal_url(self) -> str:
        hosts = [h for h in self.settings.bind_addresses if h not in _WILDCARDS]
        host = hosts[0] if hosts else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.settings.port}"

    async def _shutdown(self, app: web.Application) -> None:
        if not self.sessions:
            return
        from roost.avatar.session import ComposeSession

        await asyncio.gather(*(
            s.terminate("CLOSING server shutting down") if isinstance(s, ComposeSession)
            else s.close("server shutting down") for s in list(self.sessions.values())),
            return_exceptions=True)


def _strings(body: Any, *names: str) -> tuple[str, ...] | None:
    if not isinstance(body, dict):
        return None
    values = tuple(body.get(name) for name in names)
    if not all(isinstance(v, str) and v for v in values):
        return None
    return values  # type: ignore[return-value]

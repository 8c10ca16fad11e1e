"""Twirp transport for livekit.RoomService and livekit.AgentDispatchService: body limits, auth,
routing, protobuf/JSON codecs.

Order of checks follows livekit-server: body size (plain-text 413), then the token
(plain-text 401 from the auth middleware), then Twirp routing and decoding (Twirp JSON
errors), then the method's own permission guard and validation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import room as room_pb

from roost.api.errors import TwirpError, bad_route
from roost.api.forward import ApiForwarder
from roost.api.roomservice import Method, RoomService
from roost.auth import AuthError, Claims, TokenVerifier
from roost.config import Settings
from roost.room.manager import RoomManager
from roost.signal.service import SignalService

if TYPE_CHECKING:
    from roost.agents.service import AgentService

log = logging.getLogger("roost.api")

SERVICE = "livekit.RoomService"
PREFIX = "/twirp"
PROTOBUF = "application/protobuf"
JSON = "application/json"
# livekit-server's Twirp handlers marshal JSON with proto field names and emit defaults
# (`UseProtoNames: !jsonCamelCase, EmitUnpopulated: !jsonSkipDefaults`, both options off).
JSON_PROTO_NAMES = True
JSON_EMIT_DEFAULTS = True


def encode_json(message: Message) -> str:
    """protojson as livekit-server writes it: int64 as strings, enums by name."""
    return json_format.MessageToJson(
        message,
        preserving_proto_field_name=JSON_PROTO_NAMES,
        always_print_fields_with_no_presence=JSON_EMIT_DEFAULTS,
        indent=None,
    )


def decode(message: Message, body: bytes, content_type: str) -> None:
    """Fill `message` from a protobuf or protojson body; TwirpError `malformed` if undecodable."""
    if content_type == JSON:
        try:
            json_format.Parse(body.decode("utf-8"), message, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
            raise TwirpError("malformed", "the json request could not be decoded",
                             {"cause": str(exc)[:200]}) from exc
        return
    try:
        message.ParseFromString(body)
    except (DecodeError, ValueError) as exc:
        raise TwirpError("malformed", "the protobuf request could not be decoded") from exc


class RoomServiceAPI:
    """The Twirp endpoints on the main HTTP port: RoomService, and AgentDispatchService when
    agents are enabled."""

    def __init__(self, settings: Settings, verifier: TokenVerifier, rooms: RoomManager,
                 signal: SignalService, agents: AgentService | None = None) -> None:
        self.settings = settings
        self.verifier = verifier
        self.service = RoomService(settings, rooms, signal)
        self.services: dict[str, dict[str, tuple[type[Message], Method]]] = {
            SERVICE: self.service.methods()}
        if agents is not None:
            from roost.api.agentdispatch import SERVICE as DISPATCH
            from roost.api.agentdispatch import AgentDispatchService

            self.services[DISPATCH] = AgentDispatchService(settings, rooms, agents).methods()
        self.forwarder = ApiForwarder(signal.router)

    def add_routes(self, app: web.Application) -> None:
        """Register every path under /twirp/ (unknown ones answer Twirp `bad_route`)."""
        app.router.add_route("*", PREFIX + "/{route:.*}", self.handle)
        app.on_cleanup.append(self.forwarder.close)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One Twirp call: limits and auth first, then decode, dispatch and encode."""
        limit = self.settings.limit.api_body_size
        if request.content_length is not None and request.content_length > limit:
            return web.Response(status=413, text="request body too large")
        refusal, claims = self._authenticate(request)
        if refusal is not None:
            return refusal
        try:
            return await self._call(request, claims)
        except TwirpError as err:
            if err.status >= 500:
                log.warning("twirp %s failed: %s", request.path, err)
            return err.response()

    def _authenticate(self, request: web.Request) -> tuple[web.Response | None, Claims | None]:
        """Claims from `Authorization: Bearer` (or `access_token`); no token → no claims."""
        header = request.headers.get("Authorization")
        if header is not None:
            if not header.startswith("Bearer "):
                return web.Response(status=401, text="invalid authorization header. "
                                    "Must start with Bearer "), None
            token = header[len("Bearer "):].strip()
        else:
            token = request.query.get("access_token", "")
        if not token:
            return None, None  # methods refuse with Twirp `unauthenticated`
        try:
            return None, self.verifier.verify(token)
        except AuthError as exc:
            return web.Response(status=exc.status, text=str(exc)), None

    async def _call(self, request: web.Request, claims: Claims | None) -> web.Response:
        service, _, method = request.match_info["route"].partition("/")
        if request.method != "POST":
            raise bad_route(f'unsupported method "{request.method}" (only POST is allowed)',
                            request.method, request.path)
        entry = self.services.get(service, {}).get(method)
        if entry is None or "/" in method:
            raise bad_route(f'no handler for path "{request.path}"', request.method,
                            request.path)
        content_type = request.content_type.lower()
        if content_type not in (PROTOBUF, JSON):
            raise bad_route(f'unexpected Content-Type: "{request.headers.get("Content-Type")}"',
                            request.method, request.path)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="request body too large")
        request_type, implementation = entry
        message = request_type()
        decode(message, body, content_type)
        node = await self.forwarder.target(method, message, request)
        if node is not None:  # the room lives on another node
            return await self.forwarder.forward(node, request, body)
        try:
            result = await implementation(claims, message)
            if isinstance(result, room_pb.ListRoomsResponse) \
                    and isinstance(message, room_pb.ListRoomsRequest):
                result = await self.forwarder.list_rooms(result, message, request)
        except TwirpError:
            raise
        except Exception as exc:
            log.exception("%s.%s failed", service, method)
            raise TwirpError("internal", f"{method} failed: {exc}") from exc
        if content_type == JSON:
            return web.Response(text=encode_json(result), content_type=JSON)
        return web.Response(body=result.SerializeToString(), content_type=PROTOBUF)


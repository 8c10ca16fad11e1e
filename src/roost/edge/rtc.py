"""The `/rtc` signalling endpoints: query parsing, token checks, validate, v1 fallback."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass

from aiohttp import web
from livekit.protocol import models

from roost.auth import AuthError, Claims, TokenVerifier
from roost.config import Settings
from roost.room.participant import ClientParams
from roost.signal.service import SignalService

log = logging.getLogger("roost.edge")

_SDKS = {name.lower(): value for name, value in models.ClientInfo.SDK.items()}
_SDKS.update({"ios": models.ClientInfo.SDK.SWIFT,
              "reactnative": models.ClientInfo.SDK.REACT_NATIVE})
_CAPS = dict(models.ClientInfo.Capability.items())

V1_UNSUPPORTED = "single peer connection signalling (v1) is not available on this server"


class HTTPRefusal(Exception):
    """Refuse the request with `status` and a plain-text reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.reason,
                            headers={"Access-Control-Allow-Origin": "*"})


@dataclass
class ConnectRequest:
    claims: Claims
    params: ClientParams
    attributes: dict[str, str] | None
    metadata: str | None


def _flag(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value in ("1", "true")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def bearer_token(request: web.Request) -> str:
    """The token from `Authorization: Bearer …` or, failing that, `?access_token=`."""
    header = request.headers.get("Authorization")
    if header is not None:
        if not header.startswith("Bearer "):
            raise HTTPRefusal(401, "invalid authorization header. Must start with Bearer ")
        return header[len("Bearer "):].strip()
    return request.query.get("access_token", "")


def client_params(request: web.Request) -> ClientParams:
    q = request.query
    caps = [_CAPS[c] for c in q.get("capabilities", "").split(",") if c in _CAPS]
    params = ClientParams(
        protocol=_int(q.get("protocol")),
        client_protocol=_int(q.get("client_protocol")),
        auto_subscribe=_flag(q.get("auto_subscribe"), True),
        adaptive_stream=_flag(q.get("adaptive_stream")),
        sdk=q.get("sdk", ""),
        version=q.get("version", ""),
        os=q.get("os", ""),
        capabilities=caps,
        reconnect=_flag(q.get("reconnect")),
        reconnect_sid=q.get("sid", ""),
        reconnect_reason=_int(q.get("reconnect_reason")),
    )
    info = models.ClientInfo(
        sdk=_SDKS.get(params.sdk.lower(), models.ClientInfo.SDK.UNKNOWN),  # type: ignore[arg-type]
        version=params.version,
        protocol=params.protocol,
        os=params.os,
        os_version=q.get("os_version", ""),
        browser=q.get("browser", ""),
        browser_version=q.get("browser_version", ""),
        device_model=q.get("device_model", ""),
        network=q.get("network", ""),
        client_protocol=params.client_protocol,
    )
    info.capabilities.extend(caps)  # type: ignore[arg-type]
    params.client_info = info
    return params


def validate(request: web.Request, verifier: TokenVerifier, settings: Settings) -> ConnectRequest:
    """Run every check a join needs before the WebSocket upgrade."""
    try:
        claims = verifier.verify(bearer_token(request))
    except AuthError as exc:
        raise HTTPRefusal(exc.status, str(exc)) from exc
    grant = claims.video
    if not grant.room_join:
        raise HTTPRefusal(401, "no permissions to access the room")
    if not grant.room:
        raise HTTPRefusal(400, "room name is required")
    if not claims.identity:
        raise HTTPRefusal(400, "identity cannot be empty")
    limits = settings.limit
    if len(grant.room) > limits.max_room_name_length:
        raise HTTPRefusal(400, "room name is too long")
    if len(claims.identity) > limits.max_participant_identity_length:
        raise HTTPRefusal(400, "identity is too long")
    attributes = None
    raw_attrs = request.query.get("attributes")
    if raw_attrs:
        if not grant.can_update_own_metadata:
            raise HTTPRefusal(401, "attributes given without permission to update own metadata")
        try:
            padded = raw_attrs + "=" * (-len(raw_attrs) % 4)
            decoded = json.loads(base64.urlsafe_b64decode(padded))
        except (binascii.Error, ValueError) as exc:
            raise HTTPRefusal(400, f"malformed attributes: {exc}") from exc
        if not isinstance(decoded, dict):
            raise HTTPRefusal(400, "malformed attributes: not a JSON object")
        attributes = {str(k): str(v) for k, v in decoded.items()}
        if not limits.check_attributes({**claims.attributes, **attributes}):
            raise HTTPRefusal(400, "attributes exceed the size limit")
    return ConnectRequest(claims, client_params(request), attributes, None)


class RTCEndpoints:
    """aiohttp handlers for /rtc, /rtc/validate and the v1 paths."""

    def __init__(self, settings: Settings, verifier: TokenVerifier, service: SignalService) -> None:
        self.settings = settings
        self.verifier = verifier
        self.service = service

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/rtc", self.rtc)
        app.router.add_get("/rtc/validate", self.validate)
        app.router.add_get("/rtc/v1", self.v1)
        app.router.add_get("/rtc/v1/validate", self.v1)

    async def rtc(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=404, text="404: Not Found")
        if "join_request" in request.query:
            return HTTPRefusal(404, V1_UNSUPPORTED).response()
        try:
            conn = validate(request, self.verifier, self.settings)
        except HTTPRefusal as refusal:
            log.info("join refused: %s", refusal.reason)
            return refusal.response()
        return await self.service.connect(request, conn.claims, conn.params,
                                          attributes=conn.attributes, metadata=conn.metadata)

    async def validate(self, request: web.Request) -> web.Response:
        try:
            conn = validate(request, self.verifier, self.settings)
        except HTTPRefusal as refusal:
            return refusal.response()
        name = conn.claims.video.room
        if not conn.params.reconnect and not self.settings.room.auto_create \
                and not conn.claims.video.room_create and not await self.service.room_exists(name):
            return HTTPRefusal(404, "requested room does not exist").response()
        return web.Response(text="success", headers={"Access-Control-Allow-Origin": "*"})

    async def v1(self, request: web.Request) -> web.Response:
        # Clients fall back to /rtc (two peer connections) on a plain 404 with CORS headers.
        return HTTPRefusal(404, V1_UNSUPPORTED).response()

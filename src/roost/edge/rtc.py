"""The `/rtc` signalling endpoints: query parsing, token checks, validate, v1 (join_request)."""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import zlib
from dataclasses import dataclass

from aiohttp import web
from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

from roost.auth import AuthError, Claims, TokenVerifier
from roost.config import Settings
from roost.edge.websocket import WebSocketConnection, accept, refuse_resume
from roost.room.manager import ResumeRefused
from roost.room.participant import ClientParams
from roost.room.room import JoinError
from roost.routing import NodeInfo, RoutingUnavailable
from roost.signal.relay import SignalRelay
from roost.signal.service import SignalService

log = logging.getLogger("roost.edge")

_SDKS = {name.lower(): value for name, value in models.ClientInfo.SDK.items()}
_SDKS.update({"ios": models.ClientInfo.SDK.SWIFT,
              "reactnative": models.ClientInfo.SDK.REACT_NATIVE})
_CAPS = dict(models.ClientInfo.Capability.items())

V1_UNSUPPORTED = "single peer connection signalling (v1) is not available on this server"
MAX_JOIN_REQUEST = 1 << 20  # raw and decompressed, like Go's http.DefaultMaxHeaderBytes


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
        subscriber_allow_pause=_flag(q.get("subscriber_allow_pause")),
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


def decode_join_request(value: str) -> rtc.JoinRequest:
    """The `join_request` parameter: base64url(WrappedJoinRequest), padding optional."""
    if len(value) > MAX_JOIN_REQUEST * 4 // 3 + 4:
        raise HTTPRefusal(400, "join_request is too large")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        wrapped = rtc.WrappedJoinRequest.FromString(raw)
    except (binascii.Error, ValueError, DecodeError) as exc:
        raise HTTPRefusal(400, f"malformed join_request: {exc}") from exc
    data = wrapped.join_request
    if wrapped.compression == rtc.WrappedJoinRequest.Compression.GZIP:
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = inflater.decompress(data, MAX_JOIN_REQUEST + 1)
            if len(data) > MAX_JOIN_REQUEST or inflater.unconsumed_tail:
                raise HTTPRefusal(400, "join_request is too large once decompressed")
        except (zlib.error, gzip.BadGzipFile, EOFError) as exc:
            raise HTTPRefusal(400, f"malformed join_request: bad gzip data: {exc}") from exc
    elif wrapped.compression != rtc.WrappedJoinRequest.Compression.NONE:
        raise HTTPRefusal(400, f"malformed join_request: compression {wrapped.compression}")
    try:
        return rtc.JoinRequest.FromString(data)
    except DecodeError as exc:
        raise HTTPRefusal(400, f"malformed join_request: {exc}") from exc


def join_request_params(join: rtc.JoinRequest) -> ClientParams:
    """ClientParams from a v1 JoinRequest (single peer connection)."""
    info = join.client_info
    settings = join.connection_settings
    sdk = models.ClientInfo.SDK.Name(info.sdk).lower() if info.sdk in \
        models.ClientInfo.SDK.values() else ""
    params = ClientParams(
        protocol=info.protocol,
        client_protocol=info.client_protocol,
        # proto3 bool: no connection_settings means no auto-subscribe (v0 defaults to on)
        auto_subscribe=settings.auto_subscribe,
        adaptive_stream=settings.adaptive_stream,
        subscriber_allow_pause=settings.HasField("subscriber_allow_pause")
        and settings.subscriber_allow_pause,
        sdk=sdk,
        version=info.version,
        os=info.os,
        capabilities=list(info.capabilities),
        reconnect=join.reconnect,
        reconnect_sid=join.participant_sid if join.reconnect else "",
        reconnect_reason=int(join.reconnect_reason),
        single_pc=True,
    )
    params.client_info = models.ClientInfo()
    params.client_info.CopyFrom(info)
    # Replayed after the JoinResponse, in order: the AddTracks, then the offer.
    initial = [rtc.SignalRequest(add_track=req) for req in join.add_track_requests]
    if join.HasField("publisher_offer") and join.publisher_offer.sdp:
        initial.append(rtc.SignalRequest(offer=join.publisher_offer))
    params.initial_requests = [
        base64.b64encode(r.SerializeToString()).decode() for r in initial]
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
    metadata = None
    raw_join = request.query.get("join_request")
    if raw_join is not None:
        join = decode_join_request(raw_join)
        if (join.metadata or join.participant_attributes) \
                and not grant.can_update_own_metadata:
            raise HTTPRefusal(401, "metadata or attributes given without permission to "
                                   "update own metadata")
        if join.metadata:
            if not limits.check_metadata(join.metadata):
                raise HTTPRefusal(400, "metadata exceeds the size limit")
            metadata = join.metadata
        if join.participant_attributes:
            attributes = {k: v for k, v in join.participant_attributes.items() if v}
            if not limits.check_attributes({**claims.attributes, **attributes}):
                raise HTTPRefusal(400, "attributes exceed the size limit")
        return ConnectRequest(claims, join_request_params(join), attributes, metadata)
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
        app.router.add_get("/rtc/v1/validate", self.v1_validate)

    @property
    def single_pc(self) -> bool:
        return self.settings.rtc.single_peer_connection

    async def rtc(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=404, text="404: Not Found")
        if "join_request" in request.query and not self.single_pc:
            return HTTPRefusal(404, V1_UNSUPPORTED).response()
        return await self._join(request)

    async def _join(self, request: web.Request) -> web.StreamResponse:
        try:
            conn = validate(request, self.verifier, self.settings)
        except HTTPRefusal as refusal:
            log.info("join refused: %s", refusal.reason)
            return refusal.response()
        log.info("%s join on %s", "v1 (single PC)" if conn.params.single_pc else "v0",
                 request.path,
                 extra={"room": conn.claims.video.room, "participant": conn.claims.identity})
        return await self.connect(request, conn)

    async def connect(self, request: web.Request, conn: ConnectRequest) -> web.StreamResponse:
        """Admit (or resume) before upgrading, so refusals are HTTP errors; then serve.

        With several nodes, a room hosted elsewhere is joined through the signal relay.
        """
        service, name = self.service, conn.claims.video.room
        try:
            node = await service.place(name)
        except RoutingUnavailable as exc:
            log.warning("cannot place room: %s", exc, extra={"room": name})
            return web.Response(status=503, text=f"cannot place the room: {exc}")
        if node is not None and service.relay is not None:
            return await self._relay(request, conn, service.relay, node)
        try:
            result = service.admit(conn.claims, conn.params, attributes=conn.attributes,
                                   metadata=conn.metadata)
        except ResumeRefused:
            return await refuse_resume(request, conn.params.protocol)
        except JoinError as exc:
            return web.Response(status=exc.status, text=str(exc))
        ws = await accept(request, self.settings.limit.signal_message_size)
        await service.serve(WebSocketConnection(ws), result)
        return ws

    async def _relay(self, request: web.Request, conn: ConnectRequest, relay: SignalRelay,
                     node: NodeInfo) -> web.StreamResponse:
        """Join on the room's node `node`, then carry the client's frames to it."""
        try:
            relayed = await relay.request_join(node, conn.claims, conn.params,
                                               attributes=conn.attributes,
                                               metadata=conn.metadata)
        except RoutingUnavailable as exc:
            return web.Response(status=503, text=f"the room's node is unavailable: {exc}")
        except ResumeRefused:
            return await refuse_resume(request, conn.params.protocol)
        except JoinError as exc:
            return web.Response(status=exc.status, text=str(exc))
        try:
            ws = await accept(request, self.settings.limit.signal_message_size)
        except BaseException:
            await relayed.abandon()
            raise
        await relayed.run(WebSocketConnection(ws))
        return ws

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

    async def v1(self, request: web.Request) -> web.StreamResponse:
        if not self.single_pc:
            # Clients fall back to /rtc (two peer connections) on a plain 404 with CORS headers.
            return HTTPRefusal(404, V1_UNSUPPORTED).response()
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=404, text="404: Not Found")
        if "join_request" not in request.query:
            return HTTPRefusal(400, "join_request is required on /rtc/v1").response()
        return await self._join(request)

    async def v1_validate(self, request: web.Request) -> web.Response:
        if not self.single_pc:
            return HTTPRefusal(404, V1_UNSUPPORTED).response()
        if "join_request" not in request.query:
            return HTTPRefusal(400, "join_request is required on /rtc/v1").response()
        return await self.validate(request)

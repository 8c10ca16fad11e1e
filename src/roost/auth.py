"""Access tokens: verify and issue LiveKit HS256 JWTs, and the grants they carry."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import jwt
import jwt.warnings
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from livekit.protocol import models
from livekit.protocol import room as room_pb

from roost.ids import Identity, RoomName

LEEWAY_SECONDS = 60
NO_ROOM = RoomName("")

# Dev mode's well-known secret is short by design; outside dev mode config refuses short ones.
warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)

_SOURCES = {
    "camera": models.TrackSource.CAMERA,
    "microphone": models.TrackSource.MICROPHONE,
    "screen_share": models.TrackSource.SCREEN_SHARE,
    "screen_share_audio": models.TrackSource.SCREEN_SHARE_AUDIO,
}
_KINDS = {
    "standard": models.ParticipantInfo.Kind.STANDARD,
    "ingress": models.ParticipantInfo.Kind.INGRESS,
    "egress": models.ParticipantInfo.Kind.EGRESS,
    "sip": models.ParticipantInfo.Kind.SIP,
    "agent": models.ParticipantInfo.Kind.AGENT,
    "connector": 7,
    "bridge": 8,
}


class AuthError(Exception):
    """A token was refused; `status` is the HTTP status the reference answers with."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class VideoGrant:
    """The `video` claim, with LiveKit's defaults for absent fields."""

    room_create: bool = False
    room_list: bool = False
    room_record: bool = False
    room_admin: bool = False
    room_join: bool = False
    room: RoomName = NO_ROOM
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool | None = None  # None = same as can_publish
    can_publish_sources: list[str] = field(default_factory=list)
    can_update_own_metadata: bool = False
    ingress_admin: bool = False
    hidden: bool = False
    recorder: bool = False
    agent: bool = False
    can_subscribe_metrics: bool = False
    can_manage_agent_session: bool = False
    destination_room: RoomName = NO_ROOM

    _JSON = {
        "roomCreate": "room_create",
        "roomList": "room_list",
        "roomRecord": "room_record",
        "roomAdmin": "room_admin",
        "roomJoin": "room_join",
        "room": "room",
        "canPublish": "can_publish",
        "canSubscribe": "can_subscribe",
        "canPublishData": "can_publish_data",
        "canPublishSources": "can_publish_sources",
        "canUpdateOwnMetadata": "can_update_own_metadata",
        "ingressAdmin": "ingress_admin",
        "hidden": "hidden",
        "recorder": "recorder",
        "agent": "agent",
        "canSubscribeMetrics": "can_subscribe_metrics",
        "canManageAgentSession": "can_manage_agent_session",
        "destinationRoom": "destination_room",
    }

    @classmethod
    def from_claim(cls, claim: dict[str, Any]) -> VideoGrant:
        grant = cls()
        for json_name, attr in cls._JSON.items():
            if json_name in claim and claim[json_name] is not None:
                value = claim[json_name]
                if attr == "can_publish_sources":
                    value = [str(s) for s in value or []]
                elif attr in ("room", "destination_room"):
                    value = RoomName(str(value))
                else:
                    value = bool(value)
                setattr(grant, attr, value)
        return grant

    def to_claim(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for json_name, attr in self._JSON.items():
            value = getattr(self, attr)
            if value in (None, "", []) or (value is False and attr not in (
                "can_publish", "can_subscribe", "can_publish_data")):
                continue
            out[json_name] = value
        return out

    def to_permission(self) -> models.ParticipantPermission:
        """The ParticipantPermission this grant gives a joining participant."""
        perm = models.ParticipantPermission(
            can_subscribe=self.can_subscribe,
            can_publish=self.can_publish,
            can_publish_data=self.can_publish if self.can_publish_data is None
            else self.can_publish_data,
            hidden=self.hidden,
            recorder=self.recorder,
            can_update_metadata=self.can_update_own_metadata,
            agent=self.agent,
            can_subscribe_metrics=self.can_subscribe_metrics,
            can_manage_agent_session=self.can_manage_agent_session,
        )
        for name in self.can_publish_sources:
            if name.lower() in _SOURCES:
                perm.can_publish_sources.append(_SOURCES[name.lower()])
        return perm


@dataclass
class Claims:
    """Verified token contents."""

    api_key: str
    identity: Identity
    name: str = ""
    metadata: str = ""
    kind: int = 0
    attributes: dict[str, str] = field(default_factory=dict)
    video: VideoGrant = field(default_factory=VideoGrant)
    room_config: room_pb.RoomConfiguration | None = None
    room_preset: str = ""
    sha256: str = ""
    expires_at: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)


def kind_from_name(name: str) -> int:
    return int(_KINDS.get((name or "").lower(), 0))


def kind_name(kind: int) -> str:
    for name, value in _KINDS.items():
        if int(value) == kind:
            return name
    return "standard"


def source_name(source: int) -> str:
    for name, value in _SOURCES.items():
        if int(value) == source:
            return name
    return "unknown"


class TokenVerifier:
    """Checks tokens against the configured API keys, the way livekit-server does."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = dict(keys)

    def verify(self, token: str) -> Claims:
        if not token:
            raise AuthError("invalid authorization token: no token")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid authorization token: {exc}") from exc
        if header.get("alg") != "HS256":
            raise AuthError("invalid authorization token: only HS256 is accepted")
        api_key = unverified.get("iss")
        if not isinstance(api_key, str) or api_key not in self.keys:
            raise AuthError("invalid API key")
        try:
            data = jwt.decode(
                token,
                key=self.keys[api_key],
                algorithms=["HS256"],
                issuer=api_key,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid authorization token: {exc}") from exc
        return claims_from_dict(api_key, data)


def claims_from_dict(api_key: str, data: dict[str, Any]) -> Claims:
    video = data.get("video") or {}
    if not isinstance(video, dict):
        raise AuthError("invalid authorization token: video grant is not an object")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise AuthError("invalid authorization token: attributes is not an object")
    room_config = None
    if data.get("roomConfig"):
        try:
            room_config = ParseDict(data["roomConfig"], room_pb.RoomConfiguration(),
                                    ignore_unknown_fields=True)
        except (ParseError, TypeError, ValueError) as exc:
            raise AuthError(f"invalid authorization token: roomConfig: {exc}") from exc
    identity = data.get("sub") or data.get("jti") or ""
    return Claims(
        api_key=api_key,
        identity=Identity(str(identity)),
        name=str(data.get("name") or ""),
        metadata=str(data.get("metadata") or ""),
        kind=kind_from_name(str(data.get("kind") or "")),
        attributes={str(k): str(v) for k, v in attributes.items()},
        video=VideoGrant.from_claim(video),
        room_config=room_config,
        room_preset=str(data.get("roomPreset") or ""),
        sha256=str(data.get("sha256") or ""),
        expires_at=float(data.get("exp") or 0),
        raw=data,
    )


def issue_token(
    api_key: str,
    secret: str,
    *,
    identity: str = "",
    video: VideoGrant | None = None,
    name: str = "",
    metadata: str = "",
    kind: int | str = 0,
    attributes: dict[str, str] | None = None,
    room_config: room_pb.RoomConfiguration | None = None,
    sha256: str = "",
    valid_for: float = 6 * 3600,
) -> str:
    """Sign a token equivalent to what livekit-api's AccessToken produces."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": api_key, "sub": identity, "nbf": now,
                              "exp": now + int(valid_for)}
    if video is not None:
        claims["video"] = video.to_claim()
    if name:
        claims["name"] = name
    if metadata:
        claims["metadata"] = metadata
    kind_str = kind if isinstance(kind, str) else kind_name(kind)
    if kind_str and kind_str != "standard":
        claims["kind"] = kind_str
    if attributes:
        claims["attributes"] = attributes
    if room_config is not None:
        claims["roomConfig"] = MessageToDict(room_config)
    if sha256:
        claims["sha256"] = sha256
    return jwt.encode(claims, secret, algorithm="HS256")

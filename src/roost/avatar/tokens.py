"""Compose session tokens: validate a `/compose/token` body, sign it into a short-lived token,
and redeem a token exactly once."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

import jwt

from roost.avatar.faces import face_ids, get_face

API_VERSIONS = ("v1", "v2")
AUDIO_FORMATS = ("pcm16",)
MAX_FACE_ID_LENGTH = 256
_AUDIENCE = "roost-compose"


class RequestError(ValueError):
    """A `/compose/token` body was refused; the message is the `detail` sent back."""


class TokenError(ValueError):
    """A session token was refused; the message says why."""


@dataclass(frozen=True)
class SessionRequest:
    """A validated `/compose/token` body (Simli's field names in `parse`)."""

    face_id: str
    handle_silence: bool = True
    max_session_length: int = 3600
    max_idle_time: int = 300
    start_frame: int = 0
    audio_input_format: str = "pcm16"
    api_version: str = "v2"

    @classmethod
    def parse(cls, body: Any, max_session_length: int) -> SessionRequest:
        """Validate Simli's JSON body; unknown fields (e.g. `sessionAggregator`) are ignored."""
        if not isinstance(body, dict):
            raise RequestError("body must be a JSON object")
        face_id = body.get("faceId")
        if not isinstance(face_id, str) or not face_id.strip():
            raise RequestError("faceId is required (a string)")
        if len(face_id) > MAX_FACE_ID_LENGTH or get_face(face_id) is None:
            raise RequestError(f"unknown faceId {face_id[:64]!r}; this server has: "
                               + ", ".join(face_ids()))
        handle_silence = body.get("handleSilence", True)
        if not isinstance(handle_silence, bool):
            raise RequestError("handleSilence must be a boolean")
        # Simli's defaults, lowered to this server's cap when it is set below them
        length = _integer(body, "maxSessionLength", min(3600, max_session_length), 1,
                          max_session_length)
        idle = _integer(body, "maxIdleTime", min(300, max_session_length), 1,
                        max_session_length)
        start_frame = _integer(body, "startFrame", 0, 0, 10**9)
        fmt = body.get("audioInputFormat", "pcm16")
        if fmt not in AUDIO_FORMATS:
            raise RequestError(f"audioInputFormat {fmt!r} is not supported (use 'pcm16')")
        version = body.get("apiVersion", "v2")
        if version is None:
            version = "v2"
        if version not in API_VERSIONS:
            raise RequestError(f"apiVersion {version!r} is not supported (use "
                               + " or ".join(repr(v) for v in API_VERSIONS) + ")")
        return cls(face_id=face_id, handle_silence=handle_silence, max_session_length=length,
                   max_idle_time=idle, start_frame=start_frame, audio_input_format=fmt,
                   api_version=version)


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be an integer")
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class Redeemed:
    """A session token that was accepted: its session id and request."""

    session_id: str
    request: SessionRequest


class SessionTokens:
    """Signs session requests into HS256 tokens and redeems each token at most once."""

    def __init__(self, secret: bytes, ttl: float) -> None:
        self._key = hashlib.sha256(b"roost-compose-session\0" + secret).digest()
        self._ttl = ttl
        self._used: dict[str, float] = {}  # session id -> token expiry

    def issue(self, request: SessionRequest) -> str:
        now = int(time.time())
        claims = {"aud": _AUDIENCE, "jti": "CS_" + secrets.token_urlsafe(12), "iat": now,
                  "exp": now + int(self._ttl), "req": asdict(request)}
        return jwt.encode(claims, self._key, algorithm="HS256")

    def redeem(self, token: str) -> Redeemed:
        """The session the token opens; TokenError if invalid, expired or already used."""
        if not token:
            raise TokenError("no session_token")
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], audience=_AUDIENCE,
                                options={"require": ["exp", "jti"]})
        except jwt.ExpiredSignatureError:
            raise TokenError("session token expired") from None
        except jwt.PyJWTError:
            raise TokenError("invalid session token") from None
        try:
            request = SessionRequest(**claims["req"])
        except (TypeError, KeyError):
            raise TokenError("invalid session token") from None
        now = time.time()
        for jti in [k for k, exp in self._used.items() if exp < now]:
            del self._used[jti]
        session_id = str(claims["jti"])
        if session_id in self._used:
            raise TokenError("session token already used")
        self._used[session_id] = float(claims["exp"])
        return Redeemed(session_id, request)

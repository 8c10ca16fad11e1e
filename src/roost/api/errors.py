"""Twirp errors: the error codes, their HTTP statuses and the JSON body clients parse."""

from __future__ import annotations

import json

from aiohttp import web

# Twirp's code → HTTP status table (twitchtv/twirp `ServerHTTPStatusFromErrorCode`).
STATUS = {
    "canceled": 408,
    "unknown": 500,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}


class TwirpError(Exception):
    """An error answered as a Twirp JSON body `{"code", "msg", "meta"}` with its status."""

    def __init__(self, code: str, msg: str, meta: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.meta = meta or {}

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 500)

    def response(self) -> web.Response:
        body: dict[str, object] = {"code": self.code, "msg": self.msg}
        if self.meta:
            body["meta"] = self.meta
        return web.Response(status=self.status, text=json.dumps(body),
                            content_type="application/json")


def invalid_argument(msg: str, limit: int | None = None) -> TwirpError:
    """A request field is invalid (limit violations carry the limit, as the reference does)."""
    meta = {"argument": msg}
    if limit is not None:
        return TwirpError("invalid_argument", f"{msg} {limit}", meta)
    return TwirpError("invalid_argument", msg, meta)


def permission_denied() -> TwirpError:
    """The token lacks the grant the method needs (livekit-server answers 401 unauthenticated)."""
    return TwirpError("unauthenticated", "permissions denied")


def room_not_found() -> TwirpError:
    return TwirpError("not_found", "requested room does not exist")


def participant_not_found() -> TwirpError:
    return TwirpError("not_found", "participant does not exist")


def track_not_found() -> TwirpError:
    return TwirpError("not_found", "track is not found")


def bad_route(msg: str, method: str, path: str) -> TwirpError:
    return TwirpError("bad_route", msg, {"twirp_invalid_route": f"{method} {path}"})

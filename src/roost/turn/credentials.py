"""Time-limited TURN credentials (the "TURN REST API" scheme coturn and livekit use).

The username is ``"{expiry_unix}:{user}"`` and the password is
``base64(HMAC-SHA1(secret, username))``, so the TURN server needs no per-user state:
it recomputes the password from the username and checks the expiry.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import time


class CredentialStatus(enum.Enum):
    """Why a username was, or was not, accepted."""

    OK = "ok"
    EXPIRED = "expired"
    MALFORMED = "malformed"


class TurnCredentials:
    """Issue and check ephemeral TURN credentials signed with a shared secret."""

    def __init__(self, secret: bytes, ttl: int) -> None:
        if not secret:
            raise ValueError("TURN credential secret must not be empty")
        if ttl <= 0:
            raise ValueError("TURN credential ttl must be positive")
        self._secret = secret
        self.ttl = ttl

    def issue(self, user: str, now: float | None = None) -> tuple[str, str]:
        """A (username, password) pair for `user`, valid for `ttl` seconds from `now`."""
        expiry = int(time.time() if now is None else now) + self.ttl
        username = f"{expiry}:{user}"
        return username, self._password(username)

    def check(self, username: str, now: float | None = None) -> tuple[CredentialStatus, str | None]:
        """The status of `username` and, when it is OK, its password."""
        expiry_text, sep, user = username.partition(":")
        if not sep or not user or not expiry_text.isdigit() or len(expiry_text) > 12:
            return CredentialStatus.MALFORMED, None
        if int(expiry_text) < (time.time() if now is None else now):
            return CredentialStatus.EXPIRED, None
        return CredentialStatus.OK, self._password(username)

    def password_for(self, username: str, now: float | None = None) -> str | None:
        """The password of a well-formed, unexpired `username`, else None (see `check`)."""
        return self.check(username, now)[1]

    @staticmethod
    def user_of(username: str) -> str:
        """The user part of a TURN REST username (the whole name if it has no expiry)."""
        return username.partition(":")[2] or username

    def _password(self, username: str) -> str:
        digest = hmac.new(self._secret, username.encode("utf8"), hashlib.sha1).digest()
        return base64.b64encode(digest).decode("ascii")

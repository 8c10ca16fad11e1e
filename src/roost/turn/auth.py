"""Long-term-credential checks (RFC 8489 §9.2) and STUN response building for TurnServer."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from aioice import stun

from roost.turn.allocation import ClientLink
from roost.turn.credentials import CredentialStatus, TurnCredentials
from roost.turn.nonce import NonceFactory, NonceStatus

logger = logging.getLogger("roost.turn")


def reply(
    request: stun.Message,
    link: ClientLink,
    attributes: dict[str, Any],
    *,
    software: str,
    key: bytes | None = None,
    error: tuple[int, str] | None = None,
) -> bytes:
    """Send (and return) the response to `request`, signed with `key` when given."""
    response = stun.Message(
        request.message_method,
        stun.Class.ERROR if error else stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
        attributes=({"ERROR-CODE": error} if error else {}) | attributes,
    )
    if software:
        response.attributes["SOFTWARE"] = software
    if key is not None:
        response.add_message_integrity(key)
    else:
        response.add_fingerprint()
    data = bytes(response)
    link.send(data)
    return data


class Authenticator:
    """Checks USERNAME/REALM/NONCE/MESSAGE-INTEGRITY and answers 400/401/438 itself."""

    def __init__(
        self,
        realm: str,
        credentials: TurnCredentials,
        nonces: NonceFactory,
        software: str,
        count: Callable[[str], None],
    ) -> None:
        self.realm = realm
        self.credentials = credentials
        self.nonces = nonces
        self.software = software
        self.count = count

    def challenge(self, request: stun.Message, link: ClientLink, code: int, reason: str) -> None:
        self.count(f"error_{code}")
        attributes = {"REALM": self.realm, "NONCE": self.nonces.make()}
        reply(request, link, attributes, software=self.software, error=(code, reason))

    def authenticate(self, message: stun.Message, link: ClientLink) -> tuple[str, bytes] | None:
        """(username, integrity key) of a properly signed request, else None (answered)."""
        attrs = message.attributes
        if "MESSAGE-INTEGRITY" not in attrs:
            self.challenge(message, link, 401, "Unauthorized")
            return None
        username, realm, nonce = attrs.get("USERNAME"), attrs.get("REALM"), attrs.get("NONCE")
        if not username or not realm or not nonce:
            self.count("error_400")
            reply(message, link, {}, software=self.software, error=(400, "Bad Request"))
            return None
        nonce_status = self.nonces.check(nonce)
        if nonce_status is NonceStatus.STALE:
            self.challenge(message, link, 438, "Stale Nonce")
            return None
        reason = ""
        password: str | None = None
        if nonce_status is NonceStatus.INVALID:
            reason = "invalid nonce"
        elif realm != self.realm:
            reason = "wrong realm"
        else:
            status, password = self.credentials.check(username)
            if status is not CredentialStatus.OK:
                reason = f"credential {status.value}"
        key = b""
        if password is not None:
            key = hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()
            if not message.check_message_integrity(key):
                reason = "wrong password"
        if reason:
            self.count("auth_failures")
            extra = {"client": link.addr, "username": username, "reason": reason}
            logger.debug("turn auth failed", extra=extra)
            self.challenge(message, link, 401, "Unauthorized")
            return None
        return username, key

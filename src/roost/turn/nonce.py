"""Stateless NONCE values: a timestamp and an HMAC of it, so no state is kept per client.

A server answers an unauthenticated request with a fresh nonce (time, salt, MAC); a later
request carrying it is checked by recomputing the MAC (forged → invalid) and reading its
age (old → stale).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import time

_MAC_HEX = 16


class NonceStatus(enum.Enum):
    VALID = "valid"
    STALE = "stale"
    INVALID = "invalid"


class NonceFactory:
    """Makes and checks nonces under a per-process random key."""

    def __init__(self, ttl: float, key: bytes | None = None) -> None:
        self.ttl = ttl
        self._key = key or os.urandom(20)

    def make(self, now: float | None = None) -> bytes:
        stamp = f"{int((time.time() if now is None else now) * 1000):x}"
        salted = f"{stamp}.{os.urandom(4).hex()}"
        return (salted + self._mac(salted)).encode("ascii")

    def check(self, nonce: bytes, now: float | None = None) -> NonceStatus:
        try:
            text = nonce.decode("ascii")
        except UnicodeDecodeError:
            return NonceStatus.INVALID
        salted, mac = text[:-_MAC_HEX], text[-_MAC_HEX:]
        if not salted or len(salted) > 32 or not hmac.compare_digest(mac, self._mac(salted)):
            return NonceStatus.INVALID
        stamp = salted.partition(".")[0]
        try:
            issued = int(stamp, 16) / 1000
        except ValueError:
            return NonceStatus.INVALID
        age = (time.time() if now is None else now) - issued
        if age > self.ttl or age < -60:
            return NonceStatus.STALE
        return NonceStatus.VALID

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode("ascii"), hashlib.sha1).hexdigest()[:_MAC_HEX]

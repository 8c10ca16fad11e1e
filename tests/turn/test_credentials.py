"""TURN REST credentials and the stateless nonce."""

from __future__ import annotations

import base64
import hashlib
import hmac

from roost.turn import CredentialStatus, TurnCredentials
from roost.turn.nonce import NonceFactory, NonceStatus


def test_issued_credentials_follow_the_turn_rest_scheme() -> None:
    creds = TurnCredentials(b"s3cret", ttl=600)
    username, password = creds.issue("alice", now=1000)
    assert username == "1600:alice"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1600:alice", hashlib.sha1).digest())
    assert password == expected.decode()
    assert creds.password_for(username, now=1599) == password
    assert creds.check(username, now=1599) == (CredentialStatus.OK, password)
    assert TurnCredentials.user_of(username) == "alice"


def test_expired_and_malformed_usernames_are_told_apart() -> None:
    creds = TurnCredentials(b"s3cret", ttl=600)
    username, _ = creds.issue("bob:with:colons", now=1000)
    assert creds.check(username, now=1700) == (CredentialStatus.EXPIRED, None)
    assert TurnCredentials.user_of(username) == "bob:with:colons"
    for bad in ["", "alice", "abc:alice", "1600:", "-5:x", "99999999999999:x"]:
        assert creds.check(bad, now=1000) == (CredentialStatus.MALFORMED, None), bad
        assert creds.password_for(bad, now=1000) is None


def test_nonce_is_stateless_and_goes_stale() -> None:
    nonces = NonceFactory(ttl=10, key=b"k")
    nonce = nonces.make(now=100)
    assert nonces.check(nonce, now=105) is NonceStatus.VALID
    assert nonces.check(nonce, now=111) is NonceStatus.STALE
    assert NonceFactory(ttl=10, key=b"other").check(nonce, now=105) is NonceStatus.INVALID
    assert nonces.check(b"\xff\xfe", now=105) is NonceStatus.INVALID
    assert nonces.check(b"0" * 40, now=105) is NonceStatus.INVALID

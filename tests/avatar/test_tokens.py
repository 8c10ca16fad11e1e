"""Session requests and tokens: Simli's body, defaults, single use, expiry, tampering; limits
from the environment."""

from __future__ import annotations

import time

import pytest

from roost.avatar.limits import ComposeLimits
from roost.avatar.tokens import RequestError, SessionRequest, SessionTokens, TokenError


def test_defaults_follow_simli() -> None:
    req = SessionRequest.parse({"faceId": "ada"}, 86_400)
    assert (req.handle_silence, req.max_session_length, req.max_idle_time, req.start_frame,
            req.audio_input_format, req.api_version) == (True, 3600, 300, 0, "pcm16", "v2")


@pytest.mark.parametrize("body", [[], {"faceId": ""}, {"faceId": "ada", "maxIdleTime": True},
                                  {"faceId": "ada", "maxSessionLength": 100_000},
                                  {"faceId": "ada", "startFrame": 1.5}])
def test_bad_bodies(body: object) -> None:
    with pytest.raises(RequestError):
        SessionRequest.parse(body, 86_400)


def test_token_round_trip_once() -> None:
    tokens = SessionTokens(b"secret", ttl=60)
    req = SessionRequest.parse({"faceId": "cleo", "maxIdleTime": 12, "handleSilence": False},
                               86_400)
    token = tokens.issue(req)
    redeemed = tokens.redeem(token)
    assert redeemed.request == req and redeemed.session_id.startswith("CS_")
    with pytest.raises(TokenError, match="already used"):
        tokens.redeem(token)


def test_tampered_foreign_and_expired_tokens_are_refused() -> None:
    tokens = SessionTokens(b"secret", ttl=60)
    token = tokens.issue(SessionRequest.parse({"faceId": "ada"}, 86_400))
    with pytest.raises(TokenError, match="invalid"):
        tokens.redeem(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    with pytest.raises(TokenError, match="invalid"):
        SessionTokens(b"other", ttl=60).redeem(token)
    old = SessionTokens(b"secret", ttl=-1)
    stale = old.issue(SessionRequest.parse({"faceId": "ada"}, 86_400))
    time.sleep(0.01)
    with pytest.raises(TokenError, match="expired"):
        old.redeem(stale)


def test_limits_from_environment() -> None:
    limits = ComposeLimits.from_env({"ROOST_COMPOSE_JOIN_TIMEOUT": "5",
                                     "ROOST_COMPOSE_MAX_SESSIONS": "3"})
    assert limits.join_timeout == 5.0 and limits.max_sessions == 3
    assert ComposeLimits.from_env({}).join_timeout == 30.0
    with pytest.raises(ValueError):
        ComposeLimits.from_env({"ROOST_COMPOSE_BUFFER_SECONDS": "-1"})


def test_defaults_are_lowered_to_a_lower_server_cap() -> None:
    req = SessionRequest.parse({"faceId": "ada"}, 120)
    assert (req.max_session_length, req.max_idle_time) == (120, 120)
    with pytest.raises(RequestError, match="maxSessionLength"):
        SessionRequest.parse({"faceId": "ada", "maxSessionLength": 121}, 120)


def test_an_unknown_api_version_names_the_supported_ones() -> None:
    with pytest.raises(RequestError, match="'v1' or 'v2'"):
        SessionRequest.parse({"faceId": "ada", "apiVersion": "v3"}, 86_400)

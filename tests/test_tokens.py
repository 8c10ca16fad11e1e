"""The /rtc edge: who may open a signalling socket, what refusals look like, and start-up checks.

Each refusal is checked on the WebSocket upgrade and on `/rtc/validate`, which must agree
(the JS SDK calls validate after a failed upgrade and maps its status to an error type).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.server import REPO_ROOT, RoostServer, free_port, make_token
from tests.rawclient import HandshakeRefused, RawClient, http_upgrade, resign, rtc_query

ROOM = "edge"
NOT_EXISTS = "requested room does not exist"


def _http(method: str, url: str, headers: dict[str, str] | None = None,
          timeout: float = 5.0) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, \
                resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, \
            exc.read().decode("utf-8", "replace")


@dataclass(frozen=True)
class BadCredential:
    """How to present a token that must be refused, and what the refusal is."""

    token: Callable[[RoostServer], str | None]  # None: send no token at all
    status: int
    body: str = ""  # a substring the refusal body must contain
    auth_header: Callable[[str], str] | None = None  # default: "Bearer <token>"


def _good(srv: RoostServer, identity: str = "alice", **grants: Any) -> str:
    return make_token(srv.api_key, srv.api_secret, identity, ROOM, **grants)


def _now() -> int:
    return int(time.time())


BAD_CREDENTIALS: dict[str, BadCredential] = {
    "no token": BadCredential(lambda s: None, 401, "invalid authorization token"),
    "bad signature": BadCredential(
        lambda s: make_token(s.api_key, "not-the-secret-" * 3, "alice", ROOM), 401,
        "invalid authorization token"),
    "unknown API key": BadCredential(
        lambda s: make_token("nokey", s.api_secret, "alice", ROOM), 401, "invalid API key"),
    "expired": BadCredential(
        lambda s: resign(_good(s), s.api_secret, nbf=_now() - 900, exp=_now() - 300), 401,
        "invalid authorization token"),
    "no exp": BadCredential(
        lambda s: resign(_good(s), s.api_secret, exp=None), 401, "invalid authorization token"),
    "nbf beyond leeway": BadCredential(
        lambda s: resign(_good(s), s.api_secret, nbf=_now() + 300), 401,
        "invalid authorization token"),
    "basic auth": BadCredential(
        lambda s: _good(s), 401, "Bearer", auth_header=lambda t: "Basic YWxpY2U6c2VjcmV0"),
    "no roomJoin": BadCredential(
        lambda s: _good(s, room_join=False), 401, "permission"),
    "empty identity": BadCredential(lambda s: resign(_good(s), s.api_secret, sub=""), 400),
    "HS512": BadCredential(
        lambda s: resign(_good(s), s.api_secret, algorithm="HS512"), 401,
        "invalid authorization token"),
    "alg none": BadCredential(
        lambda s: resign(_good(s), None, algorithm="none"), 401, "invalid authorization token"),
}


def _headers(case: BadCredential, token: str | None) -> dict[str, str]:
    if token is None:
        return {}
    value = case.auth_header(token) if case.auth_header else f"Bearer {token}"
    return {"Authorization": value}


@pytest.mark.parametrize("case_name", list(BAD_CREDENTIALS))
async def test_bad_credentials_refused_on_upgrade_and_validate(
    server: RoostServer, case_name: str
) -> None:
    case = BAD_CREDENTIALS[case_name]
    token = case.token(server)
    headers = _headers(case, token)
    query = rtc_query()

    upgrade = await http_upgrade(server.url, f"/rtc?{query}", headers)
    assert upgrade.status == case.status, (case_name, upgrade)
    assert case.body in upgrade.body, (case_name, upgrade.body)

    status, _, body = _http("GET", f"{server.http_url}/rtc/validate?{query}", headers)
    assert status == case.status, f"{case_name}: validate said {status} {body!r}"
    assert case.body in body, (case_name, body)


async def test_token_in_query_param_joins(server: RoostServer) -> None:
    client = await RawClient.connect(server.url, _good(server), via="query", identity="alice")
    async with client:
        join = await client.join()
        assert join.participant.identity == "alice"


@pytest.mark.parametrize("claim", ["nbf", "exp"])
async def test_time_claims_within_leeway_accepted(server: RoostServer, claim: str) -> None:
    """60 s of leeway: nbf 30 s ahead, or exp 30 s past, still join."""
    change: dict[str, Any] = {"nbf": _now() + 30} if claim == "nbf" else {
        "nbf": _now() - 600, "exp": _now() - 30}
    token = resign(_good(server), server.api_secret, **change)
    async with await RawClient.connect(server.url, token, identity="alice") as client:
        join = await client.join()
        assert join.participant.identity == "alice"


def test_validate_accepts_good_token(server: RoostServer) -> None:
    token = _good(server)
    status, headers, body = _http(
        "GET", f"{server.http_url}/rtc/validate?{rtc_query()}",
        {"Authorization": f"Bearer {token}"})
    assert (status, body) == (200, "success")
    assert headers.get("access-control-allow-origin") == "*"
    status, _, body = _http("GET", f"{server.http_url}/rtc/validate?{rtc_query(token)}")
    assert (status, body) == (200, "success"), "token in ?access_token= must validate too"


@pytest.mark.parametrize("server", [("--no-single-pc",)], indirect=True)
async def test_v1_paths_404_so_clients_fall_back(server: RoostServer) -> None:
    token = _good(server)
    headers = {"Authorization": f"Bearer {token}"}
    upgrade = await http_upgrade(server.url, f"/rtc/v1?{rtc_query()}", headers)
    assert upgrade.status == 404, upgrade
    assert upgrade.headers.get("access-control-allow-origin") == "*"
    assert NOT_EXISTS not in upgrade.body

    status, resp_headers, body = _http(
        "GET", f"{server.http_url}/rtc/v1/validate?{rtc_query()}", headers)
    assert status == 404, body
    assert resp_headers.get("access-control-allow-origin") == "*"
    assert NOT_EXISTS not in body


def test_plain_get_on_rtc_is_404(server: RoostServer) -> None:
    status, _, _ = _http("GET", f"{server.http_url}/rtc?{rtc_query(_good(server))}")
    assert status == 404


def test_cors_preflight_on_twirp(server: RoostServer) -> None:
    status, headers, _ = _http(
        "OPTIONS", f"{server.http_url}/twirp/livekit.RoomService/ListRooms",
        {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
         "Access-Control-Request-Headers": "authorization, content-type"})
    assert 200 <= status < 300, status
    assert headers.get("access-control-allow-origin") in ("*", "https://app.example")
    assert "POST" in headers.get("access-control-allow-methods", "").upper()
    allowed = headers.get("access-control-allow-headers", "").lower()
    assert allowed == "*" or ("authorization" in allowed and "content-type" in allowed), allowed


def _serve_without_dev(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    cmd = [sys.executable, "-m", "roost", "serve", "--bind", "127.0.0.1",
           "--port", str(free_port()), *args]
    try:
        return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{' '.join(cmd)}` kept running: it must refuse to start\n{exc.stderr!r}")


def test_serve_refuses_to_start_without_keys() -> None:
    proc = _serve_without_dev()
    assert proc.returncode != 0
    assert "no API keys" in proc.stderr, proc.stderr


def test_serve_refuses_short_secret_outside_dev() -> None:
    proc = _serve_without_dev("--keys", "prodkey: tooshort")
    assert proc.returncode != 0
    assert "prodkey" in proc.stderr and "32" in proc.stderr, proc.stderr


async def test_join_refused_when_auto_create_disabled(
    start_server: Callable[..., RoostServer], tmp_path: Path
) -> None:
    config = tmp_path / "roost.yaml"
    config.write_text("room:\n  auto_create: false\n")
    server = start_server("--config", str(config))
    token = _good(server)
    headers = {"Authorization": f"Bearer {token}"}

    upgrade = await http_upgrade(server.url, f"/rtc?{rtc_query()}", headers)
    assert upgrade.status == 404, upgrade
    assert NOT_EXISTS in upgrade.body
    status, _, body = _http("GET", f"{server.http_url}/rtc/validate?{rtc_query()}", headers)
    assert status == 404 and NOT_EXISTS in body, (status, body)
    with pytest.raises(HandshakeRefused) as refused:
        await RawClient.connect(server.url, token)
    assert refused.value.status == 404

    # A token that may create rooms still creates it on join.
    creator = _good(server, identity="creator", room_create=True)
    async with await RawClient.connect(server.url, creator, identity="creator") as client:
        join = await client.join()
        assert join.room.name == ROOM

"""The compose API over HTTP and its WebSocket against a real roost, without media checks:
token validation, join info, each termination (ERROR, RATE, CLOSING: always the last text, then
an immediate close), DONE → STOP, keep-alives, isolation of sessions and release of rooms."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import numpy as np
import pytest
from livekit import api
from tests.avatar.compose_client import ComposeSocket, request_token
from tests.helpers.server import RoostServer

pytestmark = pytest.mark.timeout(60)
CLOSE_PROMPTLY = 0.5  # seconds between a termination message and the socket closing


@asynccontextmanager
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def open_session(http: aiohttp.ClientSession, server: RoostServer, **body: Any
                       ) -> ComposeSocket:
    status, answer = await request_token(http, server.http_url, **body)
    assert status == 200, answer
    return await ComposeSocket.open(http, server.http_url, answer["session_token"])


async def assert_terminated(sock: ComposeSocket, prefix: str, timeout: float = 10.0) -> str:
    """The session ended with a `prefix …` text that was the last one, then a prompt close."""
    at, text = await sock.wait_for(lambda t: t.startswith(prefix + " "), timeout, prefix)
    closed_at = await sock.wait_closed(5)
    assert sock.texts[-1] == (at, text), f"messages after {text!r}: {sock.messages()}"
    assert closed_at - at < CLOSE_PROMPTLY, f"closed {closed_at - at:.2f} s after {text!r}"
    return text


@pytest.fixture
def compose_server(start_server: Callable[..., RoostServer], monkeypatch: pytest.MonkeyPatch
                   ) -> Callable[..., RoostServer]:
    """A server with `ROOST_COMPOSE_*` limits set from keyword arguments."""

    def start(**limits: float) -> RoostServer:
        for name, value in limits.items():
            monkeypatch.setenv(f"ROOST_COMPOSE_{name.upper()}", str(value))
        return start_server()

    return start


# -- POST /compose/token ----------------------------------------------------------------

@pytest.mark.parametrize("key", ["", "wrong-key"])
async def test_token_needs_the_compose_api_key(server: RoostServer, key: str) -> None:
    async with http_session() as http:
        status, body = await request_token(http, server.http_url, key=key)
    assert status == 401
    assert body["session_token"] == "FAIL TOKEN" and "x-simli-api-key" in body["detail"]


async def test_configured_compose_key_replaces_the_dev_key(
        start_server: Callable[..., RoostServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_CONFIG", "compose_api_key: my-compose-key")
    server = start_server()
    async with http_session() as http:
        refused, _ = await request_token(http, server.http_url)
        accepted, body = await request_token(http, server.http_url, key="my-compose-key")
    assert (refused, accepted) == (401, 200) and body["session_token"] != "FAIL TOKEN"


@pytest.mark.parametrize(("body", "complaint"), [
    ({"faceId": None}, "faceId"),
    ({"faceId": "no-such-face"}, "unknown faceId"),
    ({"handleSilence": "yes"}, "handleSilence"),
    ({"maxSessionLength": -5}, "maxSessionLength"),
    ({"maxSessionLength": "long"}, "maxSessionLength"),
    ({"maxIdleTime": 0}, "maxIdleTime"),
    ({"startFrame": -1}, "startFrame"),
    ({"audioInputFormat": "mp3"}, "audioInputFormat"),
    ({"apiVersion": "v9"}, "apiVersion"),
])
async def test_bad_token_requests_fail_with_a_detail(server: RoostServer, body: dict[str, Any],
                                                     complaint: str) -> None:
    async with http_session() as http:
        status, answer = await request_token(http, server.http_url, **body)
    assert status == 400
    assert answer["session_token"] == "FAIL TOKEN"
    assert complaint in answer["detail"]


async def test_body_that_is_not_json_fails(server: RoostServer) -> None:
    async with http_session() as http, http.post(
            f"{server.http_url}/compose/token", data=b"{not json",
            headers={"x-simli-api-key": "simli-dev-key"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["session_token"] == "FAIL TOKEN"


async def test_simli_body_gets_a_session_token(server: RoostServer) -> None:
    body = {"faceId": "ben/92f24a0c-f046-45df-8df0-af7449c04571", "apiVersion": "v2",
            "sessionAggregator": None, "handleSilence": True, "maxSessionLength": 3600,
            "maxIdleTime": 300, "startFrame": 0, "audioInputFormat": "pcm16"}
    async with http_session() as http:
        status, answer = await request_token(http, server.http_url, **body)
    assert status == 200
    assert isinstance(answer["session_token"], str) and len(answer["session_token"]) > 20


# -- the WebSocket: join info, ERROR ----------------------------------------------------

async def test_join_info_comes_first_without_a_first_message(server: RoostServer) -> None:
    """The server speaks first: `{"livekit_url": …, "livekit_token": …}`, then START."""
    async with http_session() as http:
        sock = await open_session(http, server)
        try:
            info = await sock.join_info()
            assert sock.messages()[0].startswith('{"livekit_url"')
            assert list(info) == ["livekit_url", "livekit_token"]
            assert info["livekit_url"] == server.url
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the dev secret is short
                claims = api.TokenVerifier(server.api_key, server.api_secret).verify(
                    info["livekit_token"])
            assert claims.video.room_join and claims.video.room.startswith("compose-")
            await sock.wait_text("START", 15)
        finally:
            await sock.close()


@pytest.mark.parametrize("reuse", [False, True])
async def test_bad_or_reused_session_token_gets_error_then_close(server: RoostServer,
                                                                 reuse: bool) -> None:
    async with http_session() as http:
        token = "not-a-token"
        if reuse:
            _, answer = await request_token(http, server.http_url)
            token = answer["session_token"]
            first = await ComposeSocket.open(http, server.http_url, token)
            await first.join_info()
            await first.close()
        sock = await ComposeSocket.open(http, server.http_url, token)
        text = await assert_terminated(sock, "ERROR")
    assert ("already used" if reuse else "invalid session token") in text
    assert sock.messages() == [text]  # no join info


async def test_odd_byte_count_gets_error_then_close(server: RoostServer) -> None:
    async with http_session() as http:
        sock = await open_session(http, server)
        await sock.join_info()
        await sock.ws.send_bytes(b"\x01\x02\x03")
        text = await assert_terminated(sock, "ERROR")
    assert "3 bytes" in text


async def test_unknown_text_gets_error_then_close(server: RoostServer) -> None:
    async with http_session() as http:
        sock = await open_session(http, server)
        await sock.join_info()
        await sock.ws.send_str("HELLO")
        text = await assert_terminated(sock, "ERROR")
    assert "HELLO" in text


# -- RATE and CLOSING -----------------------------------------------------------------

async def test_audio_far_faster_than_real_time_gets_rate(
        compose_server: Callable[..., RoostServer]) -> None:
    server = compose_server(buffer_seconds=3)
    async with http_session() as http:
        sock = await open_session(http, server)
        await sock.join_info()
        second = np.zeros(16_000, dtype=np.int16).tobytes()
        await sock.ws.send_bytes(second * 2)  # within the bound: fine
        await sock.ws.send_bytes(second * 2)  # 4 s queued at once: beyond it
        text = await assert_terminated(sock, "RATE")
    assert "faster than real time" in text


async def test_client_that_never_joins_gets_closing(
        compose_server: Callable[..., RoostServer]) -> None:
    server = compose_server(join_timeout=2)
    async with http_session() as http:
        sock = await open_session(http, server)
        await sock.join_info()
        text = await assert_terminated(sock, "CLOSING", timeout=8)
    assert "did not join the room within 2 s" in text
    assert "START" in sock.messages()


async def test_max_session_length_gets_closing(server: RoostServer) -> None:
    async with http_session() as http:
        sock = await open_session(http, server, maxSessionLength=2)
        await sock.join_info()
        text = await assert_terminated(sock, "CLOSING", timeout=8)
    assert "max session length" in text


async def test_max_idle_time_gets_closing(server: RoostServer) -> None:
    async with http_session() as http:
        sock = await open_session(http, server, maxIdleTime=2)
        await sock.join_info()
        text = await assert_terminated(sock, "CLOSING", timeout=8)
    assert "max idle time" in text


async def test_server_shutdown_gets_closing(server: RoostServer) -> None:
    async with http_session() as http:
        sock = await open_session(http, server)
        await sock.join_info()
        await sock.wait_text("START", 15)
        await asyncio.to_thread(server.stop)
        text = await assert_terminated(sock, "CLOSING")
    assert "shutting down" in text or "disconnected" in text


# -- DONE, keep-alive, isolation, release -------------------------------------------------

async def test_done_with_nothing_queued_stops_and_closes(server: RoostServer) -> None:
    async with http_session() as http:
        sock = await open_session(http, server)
        await sock.join_info()
        await sock.wait_text("START", 15)
        await sock.ws.send_str("DONE")
        at = await sock.wait_text("STOP", 5)
        closed_at = await sock.wait_closed(5)
    assert sock.messages()[-1] == "STOP"
    assert closed_at - at < CLOSE_PROMPTLY


async def test_sessions_are_isolated_and_their_rooms_released(
        compose_server: Callable[..., RoostServer]) -> None:
    """One session failing ends only that session; both rooms are gone afterwards."""
    server = compose_server(ack_interval=0.5)
    async with http_session() as http:
        good = await open_session(http, server, faceId="cleo")
        bad = await open_session(http, server, faceId="ben")
        await good.join_info()
        await bad.join_info()
        await good.wait_text("START", 15)
        await bad.ws.send_bytes(b"\x00")
        await assert_terminated(bad, "ERROR")
        after = await good.wait_text("ACK", 5, after=bad.closed_at or 0.0)
        assert good.closed_at is None and after > 0
        await good.ws.send_bytes(np.zeros(3200, dtype=np.int16).tobytes())
        await good.ws.send_str("DONE")
        await good.wait_text("STOP", 5)
        await good.wait_closed(5)
    assert not await compose_rooms_after(server, 5.0), "compose rooms left behind"


async def compose_rooms_after(server: RoostServer, timeout: float) -> list[str]:
    """The `compose-*` rooms still listed by RoomService once `timeout` has passed (or none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dev secret is short
        lk = api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                listed = await lk.room.list_rooms(api.ListRoomsRequest())
                rooms = [r.name for r in listed.rooms if r.name.startswith("compose-")]
                if not rooms or loop.time() > deadline:
                    return rooms
                await asyncio.sleep(0.2)
        finally:
            await lk.aclose()

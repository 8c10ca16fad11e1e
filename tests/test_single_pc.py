"""Single peer connection signalling (v1, `--single-pc`): official SDKs and raw requests.

Every server here runs with `--single-pc`; the SDKs must join through `/rtc/v1` (the server
logs which path each join took) and never fall back to `/rtc`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from livekit.protocol import rtc
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer
from tests.helpers.wait import until
from tests.rawclient import http_upgrade
from tests.test_browser import _MISSING, Browser, _join, browser, python_side  # noqa: F401

V1_JOIN = "v1 (single PC) join on /rtc/v1"
V0_JOIN = "v0 join on"


@pytest.fixture
def v1_server(start_server: Callable[..., RoostServer]) -> RoostServer:
    return start_server("--single-pc")


def _log(server: RoostServer) -> str:
    return server.log_path.read_text("utf-8", "replace")


def _assert_only_v1(server: RoostServer, joins: int) -> None:
    text = _log(server)
    assert text.count(V1_JOIN) >= joins, f"expected {joins} v1 joins\n{server.log_tail()}"
    assert V0_JOIN not in text, "a client fell back to /rtc (two peer connections)"


# -- official Python SDK ---------------------------------------------------------------------
def test_python_sdk_joins_through_v1_and_exchanges_data(v1_server: RoostServer) -> None:
    run_scenario("tests.scenarios.data:reliable_packets_reach_destinations_only", v1_server.info)
    _assert_only_v1(v1_server, 3)


def test_python_sdk_tone_is_heard(v1_server: RoostServer) -> None:
    result = run_scenario("tests.scenarios.media:audio_track_is_heard", v1_server.info)
    print(result)
    _assert_only_v1(v1_server, 2)


def test_python_sdk_colour_is_seen(v1_server: RoostServer) -> None:
    result = run_scenario("tests.scenarios.media:video_track_is_seen", v1_server.info)
    print(result)
    _assert_only_v1(v1_server, 2)


async def test_more_tracks_than_sections_ask_for_sections(v1_server: RoostServer) -> None:
    """Four audio publishers: the subscriber is asked for sections and gets all four.

    The SDK hears each tone on an audio section of its own, all on its one connection
    (livekit 1.2.1's first offer has three). A raw v1 client that offered none is asked for
    audio sections once it is subscribed."""
    async with _sections_observer(v1_server, "four") as asked:
        result = await asyncio.to_thread(
            run_scenario, "tests.scenarios.single_pc:four_publishers_reach_one_subscriber",
            v1_server.info)
        print(result)
        await until(lambda: asked, 10, "a media sections requirement at the observer")
    for who, hz in {"p1": 440, "p2": 550, "p3": 660, "p4": 770}.items():
        assert abs(result[who] - hz) < 15, result
    assert len(set(result["audio_mids"])) == 4 and result["second_pc_audio_mids"] == [], result
    # asked when its first subscription came, for audio only (the next once it re-offers,
    # which it never does, or after roost's answer timeout)
    assert asked[0].num_audios > 0 and all(a.num_videos == 0 for a in asked), asked
    _assert_only_v1(v1_server, 5)


@contextlib.asynccontextmanager
async def _sections_observer(server: RoostServer, room: str
                             ) -> AsyncIterator[list[rtc.MediaSectionsRequirement]]:
    """A raw v1 client in `room` (aiortc's peer connection) that offers a data channel and no
    media section, subscribes to everything and never offers again: the
    MediaSectionsRequirements roost sends it."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("_reliable")
    await pc.setLocalDescription(await pc.createOffer())
    offer = rtc.SessionDescription(type="offer", sdp=pc.localDescription.sdp)
    query = "join_request=" + _join_request(
        compress=True, publisher_offer=offer,
        connection_settings=rtc.ConnectionSettings(auto_subscribe=True))
    asked: list[rtc.MediaSectionsRequirement] = []
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                f"{server.url}/rtc/v1?{query}",
                headers={"Authorization": f"Bearer {server.token('observer', room)}"}) as ws:
            first = rtc.SignalResponse.FromString(await ws.receive_bytes(timeout=5))
            assert first.WhichOneof("message") == "join", first

            async def read() -> None:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        response = rtc.SignalResponse.FromString(msg.data)
                        kind = response.WhichOneof("message")
                        if kind == "answer":  # connect, to become a subscriber
                            await pc.setRemoteDescription(RTCSessionDescription(
                                sdp=response.answer.sdp, type="answer"))
                        elif kind == "media_sections_requirement":
                            asked.append(response.media_sections_requirement)

            reader = asyncio.ensure_future(read())
            try:
                yield asked
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
    finally:
        await pc.close()


# -- raw requests ----------------------------------------------------------------------------
def _join_request(*, compress: bool, padded: bool = True, **fields: Any) -> str:
    join = rtc.JoinRequest(**fields)
    join.client_info.protocol = 16
    data = join.SerializeToString()
    wrapped = rtc.WrappedJoinRequest(
        compression=rtc.WrappedJoinRequest.Compression.GZIP if compress
        else rtc.WrappedJoinRequest.Compression.NONE,
        join_request=gzip.compress(data) if compress else data)
    text = base64.urlsafe_b64encode(wrapped.SerializeToString()).decode()
    return text if padded else text.rstrip("=")


@pytest.mark.parametrize(("compress", "padded"), [(True, True), (False, True), (False, False)],
                         ids=["gzip", "none", "unpadded"])
async def test_join_request_is_accepted(v1_server: RoostServer, compress: bool,
                                        padded: bool) -> None:
    token = v1_server.token("raw", "raw-v1")
    query = f"join_request={_join_request(compress=compress, padded=padded)}"
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"{v1_server.url}/rtc/v1?{query}",
            headers={"Authorization": f"Bearer {token}"}) as ws:
        msg = await ws.receive_bytes(timeout=5)
        first = rtc.SignalResponse.FromString(msg)
        assert first.WhichOneof("message") == "join", first
        assert not first.join.subscriber_primary
        assert first.join.participant.identity == "raw"
    status_ok = await http_upgrade(
        v1_server.url, f"/rtc/v1/validate?{query}&access_token={token}")
    assert status_ok.status == 200 and status_ok.body == "success", status_ok


@pytest.mark.parametrize("value", ["!!!", base64.urlsafe_b64encode(b"\xff\xff\xff").decode(),
                                   base64.urlsafe_b64encode(rtc.WrappedJoinRequest(
                                       compression=rtc.WrappedJoinRequest.Compression.GZIP,
                                       join_request=b"not gzip").SerializeToString()).decode()],
                         ids=["not-base64", "not-protobuf", "bad-gzip"])
async def test_malformed_join_request_is_400(v1_server: RoostServer, value: str) -> None:
    token = v1_server.token("raw", "raw-v1")
    answer = await http_upgrade(v1_server.url, f"/rtc/v1?join_request={value}",
                                {"Authorization": f"Bearer {token}"})
    assert answer.status == 400 and "join_request" in answer.body, answer


async def test_v1_needs_join_request_and_metadata_permission(v1_server: RoostServer) -> None:
    token = v1_server.token("raw", "raw-v1")
    headers = {"Authorization": f"Bearer {token}"}
    answer = await http_upgrade(v1_server.url, "/rtc/v1", headers)
    assert answer.status == 400, answer
    query = f"join_request={_join_request(compress=True, metadata='mine')}"
    answer = await http_upgrade(v1_server.url, f"/rtc/v1?{query}", headers)
    assert answer.status == 401, answer


# -- JS SDK in headless Chromium ----------------------------------------------------------
needs_browser = pytest.mark.skipif(
    _MISSING is not None, reason=f"browser tests need scripts/setup-browser: {_MISSING}")


def _browser_join(page: Browser, server: RoostServer, room: str) -> dict[str, Any]:
    joined = _join(page, server, room)
    sockets = [url.removeprefix(server.url) for url in joined["sockets"]]
    assert sockets == ["/rtc/v1"], joined
    return joined


@needs_browser
@pytest.mark.parametrize("server", [("--single-pc",)], indirect=True)
def test_browser_publishes_through_v1(
    browser: Browser,  # noqa: F811
    server: RoostServer,
    python_side: Callable[..., Future[Any]],  # noqa: F811
) -> None:
    """JS SDK on /rtc/v1 only: camera and microphone decode in the Python SDK."""
    python = python_side("receive_browser_media", server, "v1-browser-publish")
    _browser_join(browser, server, "v1-browser-publish")
    published = browser.call("publishCameraAndMicrophone", timeout=25)
    assert {t["kind"] for t in published} == {"audio", "video"}, published
    received = python.result(timeout=60)
    print("received by the Python SDK:", received)
    assert received["video_frames"] >= 10 and received["audio_frames"] >= 150, received
    _assert_only_v1(server, 2)


@needs_browser
@pytest.mark.parametrize("server", [("--single-pc",)], indirect=True)
def test_browser_hears_the_python_tone_through_v1(
    browser: Browser,  # noqa: F811
    server: RoostServer,
    python_side: Callable[..., Future[Any]],  # noqa: F811
) -> None:
    """JS SDK on /rtc/v1 only: the Python SDK's 440 Hz tone and red camera play in the page."""
    python = python_side("publish_media_to_browser", server, "v1-browser-subscribe")
    _browser_join(browser, server, "v1-browser-subscribe")
    media = browser.call("waitMedia", "python", 25_000, timeout=35)
    browser.call("publishData", "seen", {"reliable": True, "topic": "seen"})
    python.result(timeout=60)
    print("played in the browser:", media)
    video, audio = media["video"], media["audio"]
    assert video["frames"] >= 10, media
    r, g, b = video["rgb"]
    assert r > 150 and g < 80 and b < 80, media
    assert abs(audio["dominantHz"] - 440) < 20, media
    _assert_only_v1(server, 2)


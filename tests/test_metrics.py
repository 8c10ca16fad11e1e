"""`/metrics` parses as Prometheus text and follows joins and leaves; health endpoints answer."""

from __future__ import annotations

import asyncio
import gc
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from livekit.protocol import models, rtc
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer
from tests.rawclient import ClientPool

from roost import telemetry
from roost.config import Settings
from roost.edge.metrics import RoomCollector
from roost.edge.server import RoostServer as InProcessServer
from roost.media.types import MediaInfo
from roost.room.manager import RoomManager
from roost.room.participant import ClientParams, Participant

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def get(server: RoostServer, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(server.http_url + path, timeout=5) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


async def scrape(server: RoostServer) -> Samples:
    _, _, text = await asyncio.to_thread(get, server, "/metrics")
    return parse(text)


async def scrape_until(server: RoostServer, check: Callable[[Samples], bool],
                       timeout: float = 5.0) -> Samples:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        samples = await scrape(server)
        if check(samples) or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.1)


async def test_gauges_follow_a_join_and_a_leave(start_server: Callable[..., RoostServer],
                                                tmp_path: Path) -> None:
    """A raw client joins: one room, one participant; it leaves: none, then no room."""
    config = tmp_path / "livekit.yaml"
    config.write_text("room:\n  departure_timeout: 1\n")
    server = start_server("--config", str(config))
    status, ctype, text = await asyncio.to_thread(get, server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain"), ctype
    before = parse(text)
    assert value(before, "roost_rooms") == 0 and total(before, "roost_participants") == 0
    assert value(before, "roost_draining") == 0

    clients = ClientPool(server.url, server.api_key, server.api_secret)
    try:
        bob = await clients.join("bob", "gauges")
        during = await scrape(server)
        assert value(during, "roost_rooms") == 1
        assert total(during, "roost_participants") == 1
        assert value(during, "roost_participants", state="joined") == 1
        assert value(during, "roost_join_latency_seconds_count",
                     stage="ws_open_to_join_response") >= 1
        assert value(during, "roost_join_latency_seconds_sum",
                     stage="ws_open_to_join_response") < 5

        await bob.leave()
        after = await scrape_until(server, lambda s: total(s, "roost_participants") == 0)
        assert total(after, "roost_participants") == 0
        assert value(after, "roost_participants_left_total") == 1
        gone = await scrape_until(server, lambda s: value(s, "roost_rooms") == 0)
        assert value(gone, "roost_rooms") == 0, "room closes after departure_timeout"
    finally:
        await clients.close_all()

    for path in ("/healthz", "/readyz", "/"):
        status, _, _ = await asyncio.to_thread(get, server, path)
        assert status == 200, path


async def test_sdk_participant_is_active_and_its_data_is_counted(
        server: RoostServer, tmp_path: Path) -> None:
    """An SDK client publishes and sends data: ACTIVE, its track, joined and data counters."""
    result = await asyncio.to_thread(
        run_scenario, "tests.scenarios.webhooks:publish_then_leave", server.info, "counted",
        ['roost_data_packets_total{label="reliable"} 1.0', 'roost_tracks{kind="audio"} 1.0'],
        timeout=60.0, log_dir=tmp_path)
    during = parse(result["metrics"])
    assert value(during, "roost_participants", state="active") == 1
    assert value(during, "roost_participants_joined_total") == 1
    assert value(during, "roost_join_latency_seconds_count", stage="join_to_active") == 1
    assert value(during, "roost_data_packets_total", label="reliable") >= 1
    assert value(during, "roost_data_bytes_total", label="reliable") > 0
    assert value(during, "roost_tracks", kind="audio") == 1
    after = await scrape_until(server, lambda s: total(s, "roost_participants") == 0)
    assert value(after, "roost_participants_left_total") == 1
    assert value(after, "roost_tracks", kind="audio") == 0


async def test_readyz_fails_while_draining_and_healthz_does_not() -> None:
    node = InProcessServer(Settings(keys={"devkey": "secret"}, development=True))
    async with TestClient(TestServer(node.app)) as client:
        assert (await client.get("/readyz")).status == 200
        node.rooms.draining = True
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        metrics = await client.get("/metrics")
        assert value(parse(await metrics.text()), "roost_draining") == 1


def test_tracks_gauge_counts_published_tracks() -> None:
    """A publication bound to media counts in roost_tracks{kind} and is gone once unpublished."""

    class Up:
        kind, mid, mime_type, audio_level, loss_fraction = "video", "1", "video/VP8", 0.0, 0.0

        def request_keyframe(self) -> None:
            pass

    async def run() -> None:
        manager = RoomManager(Settings(keys={"devkey": "secret"}))
        room = manager.create_room("tracks")
        p = Participant(identity="cam", name="", metadata="", attributes={}, kind=0,
                        permission=models.ParticipantPermission(can_publish=True),
                        params=ClientParams(protocol=16), api_key="devkey")
        room.join(p)
        pub = p.publications.add(rtc.AddTrackRequest(cid="c1", type=models.TrackType.VIDEO,
                                                     source=models.TrackSource.CAMERA))
        room.media_arrived(p, MediaInfo(mid="1", kind="video", track_id="c1"), Up())
        collector = RoomCollector(manager)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in collector.collect() for s in family.samples}
        assert samples["roost_tracks", (("kind", "video"),)] == 1
        assert samples["roost_tracks", (("kind", "audio"),)] == 0
        room.unpublish(p, pub.sid)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in collector.collect() for s in family.samples}
        assert samples["roost_tracks", (("kind", "video"),)] == 0
        manager.delete_room("tracks")

    asyncio.run(run())


def test_media_counters_are_batched_and_never_go_backwards() -> None:
    """Plain int bumps on a MediaStats show at scrape time and survive the track's end."""
    base = telemetry.media_totals()
    up = telemetry.MediaStats("audio")
    down = telemetry.MediaStats("audio")
    for _ in range(10):
        up.packet_in(100)
        down.packet_out(90)
    down.nacks_in += 2
    up.plis_out += 1
    live = telemetry.media_totals()
    assert live["audio", "packets_in"] - base["audio", "packets_in"] == 10
    assert live["audio", "bytes_out"] - base["audio", "bytes_out"] == 900
    assert live["audio", "nacks_in"] - base["audio", "nacks_in"] == 2
    del up
    down.close()
    gc.collect()
    retired = telemetry.media_totals()
    assert retired == live
    text = parse(_exposition())
    assert value(text, "roost_media_packets_total", direction="in", kind="audio") >= 10
    assert value(text, "roost_media_plis_total", direction="out", kind="audio") >= 1


def test_count_error_is_exported() -> None:
    telemetry.count_error("test_kind")
    assert value(parse(_exposition()), "roost_errors_total", kind="test_kind") >= 1


def _exposition() -> str:
    from prometheus_client import generate_latest

    return generate_latest(telemetry.REGISTRY).decode()

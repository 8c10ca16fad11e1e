"""Webhooks reach a real HTTP receiver, verify with livekit-api, and arrive in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from google.protobuf.json_format import Parse
from livekit import api
from livekit.protocol import models, rtc, webhook
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer, free_port
from tests.helpers.wait import until, until_async
from tests.helpers.webhooks import WebhookSink, roost_config
from tests.rawclient import ClientPool

from roost import telemetry
from roost.api.webhooks import CONTENT_TYPE, DeliveryPolicy, WebhookNotifier
from roost.config import ConfigError, Settings
from roost.media.types import MediaInfo
from roost.room.manager import RoomManager
from roost.room.participant import ClientParams, Participant
from roost.room.room import Reason

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

SCENARIO = "tests.scenarios.webhooks:publish_then_leave"
LIFECYCLE = ["room_started", "participant_joined", "track_published", "track_unpublished",
             "participant_left", "room_finished"]


def _finished(names: list[str]) -> bool:
    return "room_finished" in names




async def _run_publisher(server: RoostServer, room: str, tmp_path: Path) -> dict[str, str]:
    """The SDK scenario in a child process, off the event loop so the receiver keeps serving."""
    result: dict[str, str] = await asyncio.to_thread(
        run_scenario, SCENARIO, server.info, room, timeout=60.0, log_dir=tmp_path)
    return result


async def test_lifecycle_events_are_signed_complete_and_in_order(
        start_server: Callable[..., RoostServer], tmp_path: Path) -> None:
    """A participant joins, publishes, unpublishes and leaves: six verified events, in order."""
    sink = await WebhookSink().start()
    try:
        config = roost_config(tmp_path / "livekit.yaml", [sink.url])
        server = start_server("--config", str(config))
        started = int(time.time())
        sids = await _run_publisher(server, "hooks", tmp_path)
        await sink.wait_for(_finished, 15, "room_finished")

        assert sink.invalid == []
        assert sink.names() == LIFECYCLE
        ids = [r.event.id for r in sink.events]
        assert all(i.startswith("EV_") for i in ids) and len(set(ids)) == len(ids), ids
        for r in sink.events:
            ev = r.event
            assert r.content_type == CONTENT_TYPE
            assert not r.auth.lower().startswith("bearer"), "the JWT goes bare in Authorization"
            assert started - 2 <= ev.created_at <= time.time() + 2, ev.created_at
            assert '"createdAt":"' in r.body, "int64 fields are JSON strings in protojson"
            assert ev.room.name == "hooks" and ev.room.sid == sids["room"], ev.room
        by_name = {r.event.event: r.event for r in sink.events}
        for name in ("participant_joined", "participant_left", "track_published",
                     "track_unpublished"):
            assert by_name[name].participant.sid == sids["participant"], name
            assert by_name[name].participant.identity == "alice"
        for name in ("track_published", "track_unpublished"):
            track = by_name[name].track
            assert track.sid == sids["track"], track
            assert track.source == models.TrackSource.MICROPHONE, track
        assert by_name["participant_joined"].participant.state == models.ParticipantInfo.ACTIVE
        assert not by_name["room_started"].HasField("participant")
        assert not by_name["participant_joined"].HasField("track")
    finally:
        await sink.stop()


async def test_receiver_downtime_then_everything_arrives_in_order(
        start_server: Callable[..., RoostServer], tmp_path: Path) -> None:
    """The receiver answers 503 while the room lives, then recovers: nothing lost, no reorder."""
    sink = WebhookSink(status=503)
    await sink.start()
    try:
        config = roost_config(tmp_path / "livekit.yaml", [sink.url])
        server = start_server("--config", str(config))
        await _run_publisher(server, "downtime", tmp_path)
        assert sink.refused > 0, "roost should have tried while the receiver was down"
        sink.status = 200
        await sink.wait_for(_finished, 30, "room_finished after the receiver came back")
        assert sink.invalid == []
        assert sink.names() == LIFECYCLE
    finally:
        await sink.stop()


async def test_receiver_not_listening_yet(start_server: Callable[..., RoostServer],
                                          tmp_path: Path) -> None:
    """Nothing listens on the webhook port at first; events arrive in order once it does."""
    sink = WebhookSink()  # not started: connections are refused
    config = roost_config(tmp_path / "livekit.yaml", [sink.url])
    server = start_server("--config", str(config))
    clients = ClientPool(server.url, server.api_key, server.api_secret)
    try:
        bob = await clients.join("bob", "refused")
        await bob.leave()
        # room_finished is emitted (~1-2 s after the leave) as the room is closed and unlisted
        async with api.LiveKitAPI(server.http_url, server.api_key, server.api_secret) as lk:
            async def closed() -> bool:
                listed = await lk.room.list_rooms(api.ListRoomsRequest(names=["refused"]))
                return not listed.rooms

            await until_async(closed, 10, "the room 'refused' to close", interval=0.1)
        await sink.start()
        await sink.wait_for(_finished, 30, "room_finished once the receiver listens")
        # bob never became ACTIVE (no peer connection), as LiveKit reports it
        assert sink.names() == ["room_started", "participant_connection_aborted",
                                "room_finished"]
        assert sink.events[1].event.participant.identity == "bob"
    finally:
        await clients.close_all()
        await sink.stop()


def test_unknown_webhook_key_is_a_startup_error() -> None:
    settings = Settings(keys={"devkey": "secret"}, development=True)
    settings.webhook.urls = ["http://127.0.0.1:9/hook"]
    settings.validate()  # the only key is used when webhook.api_key is unset
    settings.webhook.api_key = "nokey"
    with pytest.raises(ConfigError, match=r"webhook\.api_key"):
        settings.validate()


async def test_queue_is_bounded_drops_oldest_and_failures_are_counted() -> None:
    """One slow receiver, a queue of three: the oldest waiting events are dropped, in order."""

    release, arrived = asyncio.Event(), asyncio.Event()
    bodies: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        event = webhook.WebhookEvent()
        Parse(await request.text(), event)
        bodies.append(event.id)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    dropped = telemetry.WEBHOOK_DROPPED.labels("queue_full")
    before = dropped._value.get()
    notifier = WebhookNotifier([f"http://127.0.0.1:{port}/hook"], "devkey", "secret",
                               DeliveryPolicy(max_queue=3, request_timeout=5))
    try:
        sent = []
        for i in range(6):
            ev = webhook.WebhookEvent(event="room_started", id=f"EV_{i}", created_at=1)
            notifier.enqueue(ev, "r")
            sent.append(ev.id)
            if i == 0:  # the first one goes in flight
                await asyncio.wait_for(arrived.wait(), 5)
        assert dropped._value.get() - before == 2
        release.set()
        await until(lambda: len(bodies) == 4, 5, "four deliveries")
        assert bodies == ["EV_0", "EV_3", "EV_4", "EV_5"]
    finally:
        release.set()
        await notifier.stop(1.0)
        await runner.cleanup()


async def test_gives_up_after_bounded_attempts() -> None:
    """A receiver that always fails: retried with back-off, then counted as a failure."""

    sink = WebhookSink(status=500)
    await sink.start()
    failures = telemetry.WEBHOOK_DELIVERIES.labels("failure")
    before = failures._value.get()
    notifier = WebhookNotifier([sink.url], "devkey", "secret",
                               DeliveryPolicy(backoff_initial=0.02, max_attempts=4))
    try:
        notifier.enqueue(webhook.WebhookEvent(event="room_started", id="EV_x"), "r")
        await until(lambda: failures._value.get() > before, 5, "a counted failure")
        assert failures._value.get() - before == 1
        assert sink.refused == 4
    finally:
        await notifier.stop(1.0)
        await sink.stop()


class _Up:
    """The least an UpTrack needs to be for the room layer."""

    kind = "audio"
    mid = "0"
    mime_type = "audio/opus"
    audio_level = 0.0
    loss_fraction = 0.0

    def request_keyframe(self) -> None:
        pass


async def test_track_events_carry_the_track_info() -> None:
    """In process: a track bound then removed → track_published/unpublished with its info."""
    sink = await WebhookSink().start()
    settings = Settings(keys={"devkey": "secret"}, development=True)
    manager = RoomManager(settings)
    notifier = WebhookNotifier([sink.url], "devkey", "secret")
    manager.listeners.append(notifier.on_event)
    try:
        room = manager.create_room("tracks")
        p = Participant(identity="carol", name="Carol", metadata="", attributes={}, kind=0,
                        permission=models.ParticipantPermission(can_publish=True,
                                                                can_subscribe=True),
                        params=ClientParams(protocol=16), api_key="devkey")
        room.join(p)
        room.mark_joined(p)
        room.mark_active(p)
        pub = p.publications.add(rtc.AddTrackRequest(
            cid="mic-1", name="mic", type=models.TrackType.AUDIO,
            source=models.TrackSource.MICROPHONE))
        room.media_arrived(p, MediaInfo(mid="0", kind="audio", track_id="mic-1",
                                        mime_type="audio/opus"), _Up())
        room.unpublish(p, pub.sid)
        room.remove(p, Reason.CLIENT_INITIATED, send_leave=False)
        manager.delete_room("tracks")
        await sink.wait_for(_finished, 10, "room_finished")
        assert sink.names() == LIFECYCLE
        for r in sink.events[2:4]:
            assert r.event.track.sid == pub.sid and r.event.track.mime_type == "audio/opus"
            assert r.event.participant.identity == "carol"
        assert sink.events[-1].event.room.num_participants == 0
    finally:
        await notifier.stop(1.0)
        await sink.stop()

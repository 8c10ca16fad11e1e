"""RoomService calls seen by official-SDK participants: metadata, removal, data, RPC, mute."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import aiohttp
from google.protobuf.message import Message
from livekit import api, rtc
from livekit.api.twirp_client import TwirpClient
from livekit.protocol import models
from livekit.protocol import room as room_pb
from tests.helpers.sdk import EventLog, Rooms, ServerInfo, wait_until
from tests.helpers.wait import until_async

ROOM = "roomservice"
M = TypeVar("M", bound=Message)
EVENTS = (
    "participant_connected",
    "participant_disconnected",
    "participant_metadata_changed",
    "participant_name_changed",
    "participant_attributes_changed",
    "room_metadata_changed",
    "data_received",
    "track_muted",
    "track_subscribed",
    "disconnected",
)


@asynccontextmanager
async def lkapi(srv: dict[str, str]) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(srv["url"], srv["api_key"], srv["api_secret"])
    try:
        yield client
    finally:
        await client.aclose()


async def _join(rooms: Rooms, *identities: str) -> dict[str, tuple[rtc.Room, EventLog]]:
    """Join everyone and wait until each sees all the others."""
    joined: dict[str, tuple[rtc.Room, EventLog]] = {}
    for identity in identities:
        room = rooms.new()
        events = EventLog(room, *EVENTS, label=identity)
        await rooms.join(identity, ROOM, room=room)
        joined[identity] = (room, events)
    for identity, (room, _) in joined.items():
        others = [o for o in joined if o != identity]

        def sees_all(r: rtc.Room = room, o: list[str] = others) -> bool:
            return all(x in r.remote_participants for x in o)

        await wait_until(sees_all, what=f"{identity} to see {others}")
    return joined


async def api_changes_reach_sdk_participants(srv: dict[str, str]) -> None:
    """Room metadata, participant updates, removal and room deletion as SDK users see them."""
    rooms = Rooms(srv)
    try:
        joined = await _join(rooms, "alice", "bob")
        alice, alice_events = joined["alice"]
        bob, bob_events = joined["bob"]
        async with lkapi(srv) as lk:
            await lk.room.update_room_metadata(
                api.UpdateRoomMetadataRequest(room=ROOM, metadata="agenda")
            )
            for events in (alice_events, bob_events):
                (_, new) = await events.wait("room_metadata_changed")
                assert new == "agenda"
            assert bob.metadata == "agenda"

            await lk.room.update_participant(
                api.UpdateParticipantRequest(
                    room=ROOM,
                    identity="alice",
                    name="Alice",
                    metadata='{"role": "host"}',
                    attributes={"seat": "1"},
                )
            )
            (who, _, new) = await bob_events.wait("participant_metadata_changed")
            assert (who.identity, new) == ("alice", '{"role": "host"}')
            (who, _, new) = await bob_events.wait("participant_name_changed")
            assert (who.identity, new) == ("alice", "Alice")
            (changed, who) = await bob_events.wait("participant_attributes_changed")
            assert who.identity == "alice" and changed == {"seat": "1"}
            await wait_until(
                lambda: alice.local_participant.metadata == '{"role": "host"}',
                what="alice's own metadata to change",
            )
            assert alice.local_participant.name == "Alice"
            assert alice.local_participant.attributes == {"seat": "1"}

            await lk.room.remove_participant(api.RoomParticipantIdentity(room=ROOM, identity="bob"))
            (reason,) = await bob_events.wait("disconnected")
            assert reason == models.DisconnectReason.PARTICIPANT_REMOVED, reason
            (gone,) = await alice_events.wait("participant_disconnected")
            assert gone.identity == "bob"

            await lk.room.delete_room(api.DeleteRoomRequest(room=ROOM))
            (reason,) = await alice_events.wait("disconnected")
            assert reason == models.DisconnectReason.ROOM_DELETED, reason
    finally:
        await rooms.close()


async def server_data_reaches_destinations(srv: dict[str, str]) -> None:
    """SendData: no sender, topic kept, destinations honoured, a repeated nonce dropped."""
    rooms = Rooms(srv)
    try:
        joined = await _join(rooms, "alice", "bob", "carol")
        _, alice_events = joined["alice"]
        _, bob_events = joined["bob"]
        _, carol_events = joined["carol"]
        async with lkapi(srv) as lk:
            await lk.room.send_data(
                api.SendDataRequest(
                    room=ROOM,
                    data=b"for bob",
                    topic="private",
                    destination_identities=["bob"],
                    kind=models.DataPacket.Kind.RELIABLE,
                )
            )
            (packet,) = await bob_events.wait("data_received", lambda p: p.data == b"for bob")
            assert packet.topic == "private"
            assert packet.participant is None, "server-sent data has no sender"
            assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE

            # A retried call (same nonce) is delivered once. livekit-api sets a fresh nonce
            # on every call, so the retry goes through its Twirp client directly.
            retry = room_pb.SendDataRequest(room=ROOM, data=b"once", nonce=b"0123456789abcdef")
            for _ in range(2):
                await _twirp(srv, "SendData", retry, room_pb.SendDataResponse)
            await lk.room.send_data(
                api.SendDataRequest(room=ROOM, data=b"lossy", kind=models.DataPacket.Kind.LOSSY)
            )
            await lk.room.send_data(api.SendDataRequest(room=ROOM, data=b"barrier"))
            for events in (alice_events, bob_events, carol_events):
                await events.wait("data_received", lambda p: p.data == b"barrier")
                received = [p.data for (p,) in events.all("data_received")]
                assert received.count(b"once") == 1, received
            for events in (alice_events, carol_events):
                assert b"for bob" not in [p.data for (p,) in events.all("data_received")]
    finally:
        await rooms.close()


async def _twirp(srv: dict[str, str], method: str, request: Message, response_class: type[M]) -> M:
    """A RoomService call with a roomAdmin token, through livekit-api's Twirp client."""
    info = ServerInfo.from_dict(srv)
    token = (
        api.AccessToken(info.api_key, info.api_secret)
        .with_grants(api.VideoGrants(room_admin=True, room=ROOM))
        .to_jwt()
    )
    async with aiohttp.ClientSession() as session:
        client = TwirpClient(session, info.url, "livekit", failover=False)
        return await client.request(
            "RoomService", method, request, {"Authorization": f"Bearer {token}"}, response_class
        )


async def _perform_rpc(
    srv: dict[str, str], identity: str, method: str, payload: str, timeout_ms: int = 0
) -> str:
    resp = await _twirp(
        srv,
        "PerformRpc",
        room_pb.PerformRpcRequest(
            room=ROOM,
            destination_identity=identity,
            method=method,
            payload=payload,
            response_timeout_ms=timeout_ms,
        ),
        room_pb.PerformRpcResponse,
    )
    return resp.payload


async def server_rpc_round_trips(srv: dict[str, str]) -> None:
    """PerformRpc returns the handler's answer; handler errors and unknown methods fail."""
    rooms = Rooms(srv)
    try:
        joined = await _join(rooms, "alice")
        alice, _ = joined["alice"]
        calls: list[rtc.RpcInvocationData] = []

        async def echo(data: rtc.RpcInvocationData) -> str:
            calls.append(data)
            return json.dumps({"echo": data.payload})

        async def refuse(data: rtc.RpcInvocationData) -> str:
            raise rtc.RpcError(4042, "no such order", data="A-17")

        async def slow(data: rtc.RpcInvocationData) -> str:
            await asyncio.sleep(5)
            return "late"

        alice.local_participant.register_rpc_method("echo", echo)
        alice.local_participant.register_rpc_method("refuse", refuse)
        alice.local_participant.register_rpc_method("slow", slow)

        answer = await _perform_rpc(srv, "alice", "echo", "ping")
        assert json.loads(answer) == {"echo": "ping"}
        assert calls and calls[0].payload == "ping"

        try:
            await _perform_rpc(srv, "alice", "refuse", "x")
        except api.TwirpError as exc:
            assert exc.metadata.get("rpc_code") == "4042", exc
            assert "no such order" in exc.message
        else:
            raise AssertionError("PerformRpc should fail with the handler's error")

        try:
            await _perform_rpc(srv, "alice", "nope", "x")
        except api.TwirpError as exc:
            assert exc.metadata.get("rpc_code") == "1400", exc
        else:
            raise AssertionError("PerformRpc of an unregistered method should fail")

        try:
            await _perform_rpc(srv, "alice", "slow", "x", timeout_ms=1500)
        except api.TwirpError as exc:
            assert exc.metadata.get("rpc_code") == "1502", exc
        else:
            raise AssertionError("PerformRpc should time out")
    finally:
        await rooms.close()


async def admin_mute_reaches_publisher_and_subscriber(srv: dict[str, str]) -> None:
    """MutePublishedTrack mutes the publisher's track for everyone; remote unmute is refused."""
    rooms = Rooms(srv)
    try:
        joined = await _join(rooms, "alice", "bob")
        alice, _ = joined["alice"]
        _, bob_events = joined["bob"]
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await asyncio.wait_for(
            alice.local_participant.publish_track(track, options), 15
        )
        sid = publication.sid
        tone = asyncio.get_running_loop().create_task(_feed(source))
        async with lkapi(srv) as lk:
            async def listed() -> models.ParticipantInfo | None:
                info = await lk.room.get_participant(
                    api.RoomParticipantIdentity(room=ROOM, identity="alice")
                )
                return info if info.tracks else None

            # the server lists the track once its media arrived
            info = await until_async(listed, 10, "alice's track listed", interval=0.1)
            assert [t.sid for t in info.tracks] == [sid], info

            resp = await lk.room.mute_published_track(
                api.MuteRoomTrackRequest(room=ROOM, identity="alice", track_sid=sid, muted=True)
            )
            assert resp.track.sid == sid and resp.track.muted
            (who, pub) = await bob_events.wait("track_muted")
            assert (who.identity, pub.sid) == ("alice", sid)
            await wait_until(lambda: publication.muted, what="alice's publication to be muted")

            try:
                await lk.room.mute_published_track(
                    api.MuteRoomTrackRequest(
                        room=ROOM, identity="alice", track_sid=sid, muted=False
                    )
                )
            except api.TwirpError as exc:
                assert exc.code == "failed_precondition", exc
            else:
                raise AssertionError("remote unmute must be refused unless enabled")
        tone.cancel()
    finally:
        await rooms.close()


async def _feed(source: rtc.AudioSource) -> None:
    """Push 10 ms frames of quiet noise so RTP flows for the published track."""
    frame = rtc.AudioFrame.create(48000, 1, 480)
    samples = frame.data
    for i in range(len(samples)):
        samples[i] = (i * 37) % 200 - 100
    while True:
        await source.capture_frame(frame)

"""RoomService over Twirp against a real roost: livekit-api calls, raw protobuf/JSON requests.

Participants that only need signalling join through a raw WebSocket (`SignalPeer`); effects
that need the data channel or media (SendData, PerformRpc, MutePublishedTrack) run official-SDK
scenarios in a child process (tests/scenarios/roomservice.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from google.protobuf.message import Message
from livekit import api
from livekit.api.twirp_client import TwirpClient
from livekit.protocol import models, rtc
from livekit.protocol import room as room_pb
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer

SCENARIOS = "tests.scenarios.roomservice"
KIB = 1024
WAIT = 10.0


# -- helpers -----------------------------------------------------------------------------
@asynccontextmanager
async def lkapi(server: RoostServer) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
    try:
        yield client
    finally:
        await client.aclose()


def token(server: RoostServer, **grants: Any) -> str:
    """A token with exactly the given video grants (none at all if no keywords)."""
    at = api.AccessToken(server.api_key, server.api_secret).with_identity("api-user")
    if grants:
        at = at.with_grants(api.VideoGrants(**grants))
    return at.to_jwt()


async def twirp_call(server: RoostServer, method: str, request: Message,
                     response_class: type[Message], bearer: str) -> Message:
    """A RoomService call through livekit-api's own Twirp client with a chosen token."""
    async with aiohttp.ClientSession() as session:
        client = TwirpClient(session, server.http_url, "livekit", failover=False)
        return await client.request("RoomService", method, request,
                                    {"Authorization": f"Bearer {bearer}"}, response_class)


async def raw_post(server: RoostServer, method: str, body: bytes | str,
                   content_type: str, bearer: str | None) -> tuple[int, str, str]:
    """POST a body as-is; returns (status, content type, text)."""
    headers = {"Content-Type": content_type}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    url = f"{server.http_url}/twirp/livekit.RoomService/{method}"
    async with aiohttp.ClientSession() as session, \
            session.post(url, data=body, headers=headers) as resp:
        return resp.status, resp.content_type, await resp.text()


class SignalPeer:
    """A participant joined over a raw /rtc WebSocket that records every SignalResponse."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.messages: list[rtc.SignalResponse] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def join(self, server: RoostServer, room: str, **grants: Any) -> rtc.JoinResponse:
        jwt = server.token(self.identity, room, **grants)
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(
            f"{server.url}/rtc?protocol=15&sdk=python&auto_subscribe=1",
            headers={"Authorization": f"Bearer {jwt}"}, timeout=aiohttp.ClientWSTimeout(WAIT))
        self._reader = asyncio.get_running_loop().create_task(self._read())
        (msg,) = await self.wait(lambda m: m.WhichOneof("message") == "join", "join")
        return msg.join

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type == aiohttp.WSMsgType.BINARY:
                    self.messages.append(rtc.SignalResponse.FromString(frame.data))
                    self._changed.set()
        finally:
            self.closed.set()
            self._changed.set()

    async def wait(self, match: Callable[[rtc.SignalResponse], bool],
                   what: str = "message") -> list[rtc.SignalResponse]:
        """All messages so far for which `match` holds, once there is at least one."""
        deadline = time.monotonic() + WAIT
        while True:
            found = [m for m in self.messages if match(m)]
            if found:
                return found
            if time.monotonic() > deadline:
                kinds = [m.WhichOneof("message") for m in self.messages]
                raise TimeoutError(f"{self.identity}: no {what} within {WAIT} s; got {kinds}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), 0.2)
            except TimeoutError:
                pass

    async def update_for(self, identity: str,
                         match: Callable[[models.ParticipantInfo], bool]) -> models.ParticipantInfo:
        """The first ParticipantUpdate entry about `identity` satisfying `match`."""
        def ok(m: rtc.SignalResponse) -> bool:
            return m.WhichOneof("message") == "update" and any(
                p.identity == identity and match(p) for p in m.update.participants)

        msgs = await self.wait(ok, f"participant update for {identity}")
        return next(p for p in msgs[0].update.participants if p.identity == identity)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, WAIT)
        if self._session is not None:
            await self._session.close()


@asynccontextmanager
async def peers(server: RoostServer, room: str, *identities: str,
                **grants: Any) -> AsyncIterator[list[SignalPeer]]:
    joined: list[SignalPeer] = []
    try:
        for identity in identities:
            peer = SignalPeer(identity)
            joined.append(peer)
            await peer.join(server, room, **grants)
        yield joined
    finally:
        for peer in joined:
            await peer.close()


async def expect_error(code: str, call: Any) -> api.TwirpError:
    with pytest.raises(api.TwirpError) as info:
        await call
    assert info.value.code == code, str(info.value)
    return info.value


# -- rooms ---------------------------------------------------------------------------------
async def test_create_list_delete_room(server: RoostServer) -> None:
    async with lkapi(server) as lk:
        room = await lk.room.create_room(api.CreateRoomRequest(
            name="lobby", metadata="hello", empty_timeout=120, max_participants=7))
        assert (room.name, room.metadata, room.empty_timeout, room.max_participants) == (
            "lobby", "hello", 120, 7)
        assert room.sid.startswith("RM_") and room.creation_time > 0
        again = await lk.room.create_room(api.CreateRoomRequest(name="lobby"))
        assert again.sid == room.sid, "CreateRoom must be idempotent"
        await lk.room.create_room(api.CreateRoomRequest(name="attic"))

        listed = await lk.room.list_rooms(api.ListRoomsRequest())
        assert sorted(r.name for r in listed.rooms) == ["attic", "lobby"]
        only = await lk.room.list_rooms(api.ListRoomsRequest(names=["attic", "nowhere"]))
        assert [r.name for r in only.rooms] == ["attic"]

        await lk.room.delete_room(api.DeleteRoomRequest(room="lobby"))
        listed = await lk.room.list_rooms(api.ListRoomsRequest())
        assert [r.name for r in listed.rooms] == ["attic"]
        await expect_error("not_found", lk.room.delete_room(api.DeleteRoomRequest(room="lobby")))


async def test_create_room_limits(server: RoostServer) -> None:
    async with lkapi(server) as lk:
        await expect_error("invalid_argument", lk.room.create_room(
            api.CreateRoomRequest(name="r", metadata="x" * (512 * KIB + 1))))
        await expect_error("invalid_argument", lk.room.create_room(
            api.CreateRoomRequest(name="n" * 257)))
        await expect_error("invalid_argument", lk.room.create_room(api.CreateRoomRequest()))
        ok = await lk.room.create_room(
            api.CreateRoomRequest(name="n" * 256, metadata="x" * (512 * KIB)))
        assert len(ok.metadata) == 512 * KIB
        assert (await lk.room.list_rooms(api.ListRoomsRequest())).rooms[0].name == "n" * 256


async def test_update_room_metadata_reaches_participants(server: RoostServer) -> None:
    async with lkapi(server) as lk, peers(server, "meta", "alice") as (alice,):
        room = await lk.room.update_room_metadata(
            api.UpdateRoomMetadataRequest(room="meta", metadata='{"topic": "cats"}'))
        assert room.metadata == '{"topic": "cats"}'
        await alice.wait(lambda m: m.WhichOneof("message") == "room_update"
                         and m.room_update.room.metadata == '{"topic": "cats"}', "room_update")
        await expect_error("invalid_argument", lk.room.update_room_metadata(
            api.UpdateRoomMetadataRequest(room="meta", metadata="x" * (512 * KIB + 1))))
        await expect_error("not_found", lk.room.update_room_metadata(
            api.UpdateRoomMetadataRequest(room="nowhere", metadata="m")))


async def test_delete_room_disconnects_participants(server: RoostServer) -> None:
    async with lkapi(server) as lk, peers(server, "doomed", "alice", "bob") as (alice, bob):
        await lk.room.delete_room(api.DeleteRoomRequest(room="doomed"))
        for peer in (alice, bob):
            (leave,) = await peer.wait(lambda m: m.WhichOneof("message") == "leave", "leave")
            assert leave.leave.reason == models.DisconnectReason.ROOM_DELETED
            await asyncio.wait_for(peer.closed.wait(), WAIT)


# -- participants -------------------------------------------------------------------------------
async def test_list_and_get_participants(server: RoostServer) -> None:
    async with lkapi(server) as lk, peers(server, "hall", "alice", "bob",
                                          name="Someone"):
        listed = await lk.room.list_participants(api.ListParticipantsRequest(room="hall"))
        assert sorted(p.identity for p in listed.participants) == ["alice", "bob"]
        info = await lk.room.get_participant(
            api.RoomParticipantIdentity(room="hall", identity="alice"))
        assert info.identity == "alice" and info.name == "Someone"
        assert info.sid.startswith("PA_")
        await expect_error("not_found", lk.room.get_participant(
            api.RoomParticipantIdentity(room="hall", identity="nobody")))
        await expect_error("not_found", lk.room.get_participant(
            api.RoomParticipantIdentity(room="nowhere", identity="alice")))
        await expect_error("not_found", lk.room.list_participants(
            api.ListParticipantsRequest(room="nowhere")))


async def test_remove_participant(server: RoostServer) -> None:
    async with lkapi(server) as lk, peers(server, "hall", "alice", "bob") as (alice, bob):
        await lk.room.remove_participant(
            api.RoomParticipantIdentity(room="hall", identity="alice"))
        (leave,) = await alice.wait(lambda m: m.WhichOneof("message") == "leave", "leave")
        assert leave.leave.reason == models.DisconnectReason.PARTICIPANT_REMOVED
        gone = await bob.update_for(
            "alice", lambda p: p.state == models.ParticipantInfo.State.DISCONNECTED)
        assert gone.identity == "alice"
        listed = await lk.room.list_participants(api.ListParticipantsRequest(room="hall"))
        assert [p.identity for p in listed.participants] == ["bob"]
        await expect_error("not_found", lk.room.remove_participant(
            api.RoomParticipantIdentity(room="hall", identity="alice")))


async def test_update_participant(server: RoostServer) -> None:
    async with lkapi(server) as lk, peers(server, "hall", "alice", "bob",
                                          attributes={"keep": "1", "drop": "2"}) as (alice, bob):
        before = len([m for m in alice.messages if m.WhichOneof("message") == "refresh_token"])
        info = await lk.room.update_participant(api.UpdateParticipantRequest(
            room="hall", identity="alice", name="Alice", metadata="vip",
            attributes={"drop": "", "new": "3"},
            permission=models.ParticipantPermission(can_subscribe=True, can_publish=False,
                                                    can_publish_data=True)))
        assert (info.name, info.metadata) == ("Alice", "vip")
        assert dict(info.attributes) == {"keep": "1", "new": "3"}
        assert not info.permission.can_publish and info.permission.can_publish_data

        seen = await bob.update_for("alice", lambda p: p.metadata == "vip")
        assert seen.name == "Alice" and dict(seen.attributes) == {"keep": "1", "new": "3"}
        assert not seen.permission.can_publish
        await alice.update_for("alice", lambda p: p.metadata == "vip")
        refreshed = await alice.wait(lambda m: m.WhichOneof("message") == "refresh_token")
        assert len(refreshed) > before, "a permission/metadata change refreshes the token"

        # Empty name/metadata leave the current values alone.
        info = await lk.room.update_participant(api.UpdateParticipantRequest(
            room="hall", identity="alice", attributes={"x": "y"}))
        assert (info.name, info.metadata) == ("Alice", "vip") and info.attributes["x"] == "y"
        await expect_error("not_found", lk.room.update_participant(
            api.UpdateParticipantRequest(room="hall", identity="nobody", metadata="m")))


async def test_update_participant_limits(server: RoostServer) -> None:
    async with lkapi(server) as lk, peers(server, "hall", "alice"):
        for req in (
            api.UpdateParticipantRequest(room="hall", identity="alice",
                                         metadata="x" * (512 * KIB + 1)),
            api.UpdateParticipantRequest(room="hall", identity="alice", name="n" * 257),
            api.UpdateParticipantRequest(room="hall", identity="alice",
                                         attributes={"big": "v" * (64 * KIB)}),
        ):
            await expect_error("invalid_argument", lk.room.update_participant(req))
        info = await lk.room.get_participant(
            api.RoomParticipantIdentity(room="hall", identity="alice"))
        assert info.metadata == "" and info.name == "" and not info.attributes


async def test_mute_and_subscriptions_on_unknown_tracks(server: RoostServer) -> None:
    async with lkapi(server) as lk, peers(server, "hall", "alice"):
        await expect_error("not_found", lk.room.mute_published_track(api.MuteRoomTrackRequest(
            room="hall", identity="alice", track_sid="TR_nope", muted=True)))
        await expect_error("failed_precondition", lk.room.mute_published_track(
            api.MuteRoomTrackRequest(room="hall", identity="alice", track_sid="TR_nope",
                                     muted=False)))
        await expect_error("not_found", lk.room.mute_published_track(api.MuteRoomTrackRequest(
            room="hall", identity="nobody", track_sid="TR_nope", muted=True)))
        await expect_error("not_found", lk.room.update_subscriptions(
            api.UpdateSubscriptionsRequest(room="hall", identity="alice",
                                           track_sids=["TR_nope"], subscribe=True)))
        await lk.room.update_subscriptions(api.UpdateSubscriptionsRequest(
            room="hall", identity="alice", track_sids=[], subscribe=True))
        await expect_error("not_found", lk.room.update_subscriptions(
            api.UpdateSubscriptionsRequest(room="hall", identity="nobody")))


async def test_send_data_validation(server: RoostServer) -> None:
    bearer = token(server, room_admin=True, room="hall")
    async with lkapi(server) as lk, peers(server, "hall", "alice"):
        # livekit-api always sets a fresh 16-byte nonce, so the bad one goes through Twirp.
        with pytest.raises(api.TwirpError) as info:
            await twirp_call(server, "SendData", room_pb.SendDataRequest(
                room="hall", data=b"x", nonce=b"short"), room_pb.SendDataResponse, bearer)
        assert info.value.code == "invalid_argument" and "nonce" in info.value.message
        await twirp_call(server, "SendData", room_pb.SendDataRequest(room="hall", data=b"x"),
                         room_pb.SendDataResponse, bearer)
        await expect_error("not_found", lk.room.send_data(api.SendDataRequest(
            room="nowhere", data=b"x")))
        await lk.room.send_data(api.SendDataRequest(room="hall", data=b"x"))


async def test_forward_move_and_rpc_errors(server: RoostServer) -> None:
    bearer = token(server, room_admin=True, room="hall", destination_room="other")
    async with peers(server, "hall", "alice"):
        for method, cls in (("ForwardParticipant", room_pb.ForwardParticipantRequest),
                            ("MoveParticipant", room_pb.MoveParticipantRequest)):
            req = cls(room="hall", identity="alice", destination_room="other")
            with pytest.raises(api.TwirpError) as info:
                await twirp_call(server, method, req, room_pb.ForwardParticipantResponse, bearer)
            assert info.value.code == "unimplemented" and method in info.value.message
        with pytest.raises(api.TwirpError) as info:
            await twirp_call(server, "PerformRpc", room_pb.PerformRpcRequest(
                room="hall", destination_identity="nobody", method="m"),
                room_pb.PerformRpcResponse, bearer)
        assert info.value.code == "not_found"
        with pytest.raises(api.TwirpError) as info:
            await twirp_call(server, "PerformRpc", room_pb.PerformRpcRequest(
                room="hall", destination_identity="alice", method="m", payload="x" * 16_000),
                room_pb.PerformRpcResponse, bearer)
        assert info.value.code == "malformed" and "1402" in info.value.message


# -- authorisation ---------------------------------------------------------------------------
ADMIN_CALLS: list[tuple[str, Message, type[Message]]] = [
    ("ListParticipants", room_pb.ListParticipantsRequest(room="hall"),
     room_pb.ListParticipantsResponse),
    ("GetParticipant", room_pb.RoomParticipantIdentity(room="hall", identity="alice"),
     models.ParticipantInfo),
    ("RemoveParticipant", room_pb.RoomParticipantIdentity(room="hall", identity="alice"),
     room_pb.RemoveParticipantResponse),
    ("MutePublishedTrack", room_pb.MuteRoomTrackRequest(room="hall", identity="alice",
                                                        track_sid="TR_x", muted=True),
     room_pb.MuteRoomTrackResponse),
    ("UpdateParticipant", room_pb.UpdateParticipantRequest(room="hall", identity="alice",
                                                           metadata="m"),
     models.ParticipantInfo),
    ("UpdateSubscriptions", room_pb.UpdateSubscriptionsRequest(room="hall", identity="alice"),
     room_pb.UpdateSubscriptionsResponse),
    ("SendData", room_pb.SendDataRequest(room="hall", data=b"x"), room_pb.SendDataResponse),
    ("UpdateRoomMetadata", room_pb.UpdateRoomMetadataRequest(room="hall", metadata="m"),
     models.Room),
    ("PerformRpc", room_pb.PerformRpcRequest(room="hall", destination_identity="alice",
                                             method="m"), room_pb.PerformRpcResponse),
    ("ForwardParticipant", room_pb.ForwardParticipantRequest(
        room="hall", identity="alice", destination_room="b"), room_pb.ForwardParticipantResponse),
    ("MoveParticipant", room_pb.MoveParticipantRequest(
        room="hall", identity="alice", destination_room="b"), room_pb.MoveParticipantResponse),
]


async def test_calls_without_the_grant_are_unauthenticated(server: RoostServer) -> None:
    no_grant = token(server)
    join_only = token(server, room_join=True, room="hall")
    other_room_admin = token(server, room_admin=True, room="elsewhere")
    create_only = token(server, room_create=True)
    async with peers(server, "hall", "alice") as (alice,):
        calls: list[tuple[str, Message, type[Message], str]] = [
            ("CreateRoom", room_pb.CreateRoomRequest(name="x"), models.Room, no_grant),
            ("CreateRoom", room_pb.CreateRoomRequest(name="x"), models.Room, join_only),
            ("ListRooms", room_pb.ListRoomsRequest(), room_pb.ListRoomsResponse, create_only),
            ("DeleteRoom", room_pb.DeleteRoomRequest(room="hall"), room_pb.DeleteRoomResponse,
             no_grant),
        ]
        for method, req, cls in ADMIN_CALLS:
            calls += [(method, req, cls, bearer)
                      for bearer in (no_grant, join_only, other_room_admin, create_only)]
        for method, req, cls, bearer in calls:
            with pytest.raises(api.TwirpError) as info:
                await twirp_call(server, method, req, cls, bearer)
            assert (info.value.code, info.value.status, info.value.message) == (
                "unauthenticated", 401, "permissions denied"), method
        # Nothing happened to the participant or the room.
        assert not any(m.WhichOneof("message") == "leave" for m in alice.messages)
        async with lkapi(server) as lk:
            listed = await lk.room.list_rooms(api.ListRoomsRequest())
            assert [r.name for r in listed.rooms] == ["hall"] and listed.rooms[0].metadata == ""


async def test_bad_tokens_get_plain_text_401(server: RoostServer) -> None:
    body = room_pb.ListRoomsRequest().SerializeToString()
    forged = api.AccessToken(server.api_key, "not-the-secret").with_grants(
        api.VideoGrants(room_list=True)).to_jwt()
    unknown_key = api.AccessToken("nokey", "secret").with_grants(
        api.VideoGrants(room_list=True)).to_jwt()
    for bearer in ("garbage", forged, unknown_key):
        status, ctype, text = await raw_post(server, "ListRooms", body,
                                             "application/protobuf", bearer)
        assert status == 401 and ctype == "text/plain", (status, ctype, text)
        assert "invalid" in text
    url = f"{server.http_url}/twirp/livekit.RoomService/ListRooms"
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body, headers={"Authorization": "Basic abc",
                                     "Content-Type": "application/protobuf"}) as resp:
        assert resp.status == 401
        assert (await resp.text()).startswith("invalid authorization header")
    status, _, text = await raw_post(server, "ListRooms", body, "application/protobuf", None)
    assert status == 401 and json.loads(text)["code"] == "unauthenticated"


# -- transport -------------------------------------------------------------------------------
async def test_json_requests_get_json_answers(server: RoostServer) -> None:
    bearer = token(server, room_create=True, room_list=True)
    status, ctype, text = await raw_post(
        server, "CreateRoom", json.dumps({"name": "jsonroom", "metadata": "m",
                                          "maxParticipants": 3}), "application/json", bearer)
    assert (status, ctype) == (200, "application/json"), text
    room = json.loads(text)
    assert room["name"] == "jsonroom" and room["max_participants"] == 3
    assert isinstance(room["creation_time"], str), "int64 travels as a JSON string"
    assert room["num_participants"] == 0, "defaults are emitted, as livekit-server does"

    status, _, text = await raw_post(server, "ListRooms", '{"names": ["jsonroom"]}',
                                     "application/json; charset=utf-8", bearer)
    assert status == 200 and [r["name"] for r in json.loads(text)["rooms"]] == ["jsonroom"]

    status, _, text = await raw_post(server, "ListRooms", "{not json", "application/json",
                                     bearer)
    assert status == 400 and json.loads(text)["code"] == "malformed"
    status, _, text = await raw_post(server, "ListRooms", b"\xff\xff\xff",
                                     "application/protobuf", bearer)
    assert status == 400 and json.loads(text)["code"] == "malformed"


async def test_routing_errors(server: RoostServer) -> None:
    bearer = token(server, room_list=True)
    status, ctype, text = await raw_post(server, "NoSuchMethod", b"", "application/protobuf",
                                         bearer)
    assert (status, ctype) == (404, "application/json")
    assert json.loads(text)["code"] == "bad_route"
    status, _, text = await raw_post(server, "ListRooms", b"", "text/plain", bearer)
    assert status == 404 and json.loads(text)["code"] == "bad_route"
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.http_url}/twirp/livekit.Nope/ListRooms", data=b"",
            headers={"Content-Type": "application/protobuf",
                     "Authorization": f"Bearer {bearer}"}) as resp:
        assert resp.status == 404 and (await resp.json())["code"] == "bad_route"


async def test_oversized_body_is_refused(server: RoostServer) -> None:
    bearer = token(server, room_create=True)
    big = room_pb.CreateRoomRequest(name="big", metadata="x" * (10 * 1024 * KIB + 1))
    status, _, _ = await raw_post(server, "CreateRoom", big.SerializeToString(),
                                  "application/protobuf", bearer)
    assert status == 413


# -- with the official SDK (child process) ---------------------------------------------------------
def test_sdk_participant_sees_api_changes(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:api_changes_reach_sdk_participants", server.info)


def test_sdk_send_data_from_the_server(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:server_data_reaches_destinations", server.info)


def test_sdk_perform_rpc_from_the_server(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:server_rpc_round_trips", server.info)


def test_sdk_mute_published_track(server: RoostServer) -> None:
    run_scenario(f"{SCENARIOS}:admin_mute_reaches_publisher_and_subscriber", server.info)

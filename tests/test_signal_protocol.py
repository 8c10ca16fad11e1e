"""The signalling protocol on the wire, driven by raw clients (no WebRTC, no SDK).

Each test is a scenario: a client joins, says something, and we assert what a LiveKit client
would observe: the JoinResponse and what follows it, pongs, RequestResponses, participant
updates, leaves, resume and room deletion.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import jwt
import pytest
from livekit import api
from livekit.protocol import models, rtc
from tests.helpers.server import RoostServer
from tests.rawclient import ClientPool, kind_of

ROOM = "proto"
RR = rtc.RequestResponse.Reason
Action = rtc.LeaveRequest.Action
Reason = models.DisconnectReason
State = models.ParticipantInfo.State

# The dev secret is short by design; PyJWT (ours and livekit-api's) would warn on every use.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.fixture
async def pool(server: RoostServer) -> AsyncIterator[ClientPool]:
    clients = ClientPool(server.url, server.api_key, server.api_secret)
    yield clients
    await clients.close_all()


def _semver(text: str) -> tuple[int, int, int]:
    found = re.match(r"^(\d+)\.(\d+)\.(\d+)", text)
    assert found, f"server_info.version {text!r} is not semver"
    major, minor, patch = (int(x) for x in found.groups())
    return major, minor, patch


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- join -------------------------------------------------------------------------------------
async def test_join_response_then_refresh_token_and_subscriber_offer(
    server: RoostServer, pool: ClientPool
) -> None:
    alice = await pool.join("alice", ROOM)
    join = alice.join_response
    assert join is not None
    assert join.room.name == ROOM and join.room.sid.startswith("RM_"), join.room
    assert join.participant.sid.startswith("PA_"), join.participant
    assert join.participant.identity == "alice"
    assert join.server_info.version, "JS refuses a server without server_info.version"
    assert _semver(join.server_info.version) >= (1, 8, 0), join.server_info.version
    assert join.ping_interval > 0 and join.ping_timeout > 0, (join.ping_interval,
                                                             join.ping_timeout)
    assert join.subscriber_primary, "protocol >= 3 with canSubscribe: subscriber is primary"
    assert not join.other_participants

    refresh = (await alice.recv_until("refresh_token")).refresh_token
    claims = jwt.decode(refresh, server.api_secret, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["iss"] == server.api_key
    assert claims["video"]["room"] == ROOM and claims["video"]["roomJoin"] is True, claims
    assert claims["exp"] > time.time() + 5 * 60, "refreshed tokens live at least 10 minutes"

    offer = (await alice.recv_until("offer")).offer
    assert offer.type == "offer"
    assert offer.sdp.startswith("v=0")
    assert "\nm=application " in offer.sdp, "the subscriber offer must carry the data m-line"


@pytest.mark.parametrize(("protocol", "grants"), [(2, {}), (16, {"can_subscribe": False})],
                         ids=["protocol 2", "no canSubscribe"])
async def test_subscriber_not_primary(pool: ClientPool, protocol: int,
                                      grants: dict[str, bool]) -> None:
    client = await pool.join("publisher-only", ROOM, protocol=protocol, **grants)
    assert client.join_response is not None
    assert not client.join_response.subscriber_primary


async def test_hidden_participant_not_listed(pool: ClientPool) -> None:
    await pool.join("recorder", ROOM, hidden=True)
    bob = await pool.join("bob", ROOM)
    assert bob.join_response is not None
    assert not bob.join_response.other_participants, "hidden participants are not listed"


# -- ping ---------------------------------------------------------------------------------
async def test_ping_answered_with_pong_in_milliseconds(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    await alice.send(rtc.SignalRequest(ping=_now_ms()))
    pong = (await alice.recv_until("pong")).pong
    assert abs(pong - _now_ms()) < 10_000, f"pong {pong} is not Unix milliseconds"


async def test_ping_req_answered_with_pong_resp_echoing_timestamp(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    sent = _now_ms() - 1234
    pong = await alice.ping(sent)
    assert pong.last_ping_timestamp == sent
    assert abs(pong.timestamp - _now_ms()) < 10_000, f"timestamp {pong.timestamp} is not ms"


async def test_json_client_gets_json_back(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    assert not alice.last_frame_was_text, "the JoinResponse is binary"
    pong = await alice.ping(424242, as_json=True)
    assert pong.last_ping_timestamp == 424242
    assert alice.last_frame_was_text, "after a text frame the server must answer in protojson"

    mute = rtc.SignalRequest()
    mute.mute.sid = "TR_nosuchtrack"
    mute.mute.muted = True
    await alice.send(mute, as_json=True)
    rr = await alice.request_response()
    assert alice.last_frame_was_text
    assert rr.reason == RR.NOT_FOUND and rr.mute.sid == "TR_nosuchtrack", rr

    await alice.ping(7)  # a binary frame flips the answers back to protobuf
    assert not alice.last_frame_was_text


# -- presence -----------------------------------------------------------------------------
async def test_second_client_sees_first_and_first_sees_second(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    bob = await pool.join("bob", ROOM)
    assert bob.join_response is not None
    others = {p.identity: p for p in bob.join_response.other_participants}
    assert set(others) == {"alice"}
    assert others["alice"].sid == alice.sid
    seen = await alice.participant_update(lambda p: p.identity == "bob")
    assert seen.sid == bob.sid
    assert seen.state in (State.JOINED, State.ACTIVE)


# -- update_metadata ----------------------------------------------------------------------
def _update_metadata(request_id: int, metadata: str = "", name: str = "",
                     **attributes: str) -> rtc.SignalRequest:
    req = rtc.SignalRequest()
    req.update_metadata.request_id = request_id
    req.update_metadata.metadata = metadata
    req.update_metadata.name = name
    req.update_metadata.attributes.update(attributes)
    return req


async def test_update_metadata_without_permission_not_allowed(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    await alice.send(_update_metadata(11, metadata="nope"))
    rr = await alice.request_response()
    assert rr.reason == RR.NOT_ALLOWED, rr
    assert rr.request_id == 11
    assert rr.update_metadata.metadata == "nope", "the refused request is echoed"


async def test_update_metadata_with_permission_updates_everyone(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM, can_update_own_metadata=True)
    bob = await pool.join("bob", ROOM)
    await alice.participant_update(lambda p: p.identity == "bob")

    await alice.send(_update_metadata(21, metadata="m1", name="Alice A.", mood="happy"))
    me = await alice.participant_update(lambda p: p.identity == "alice" and p.metadata == "m1")
    assert me.name == "Alice A." and dict(me.attributes) == {"mood": "happy"}, me
    rr = await alice.request_response(match=lambda r: r.request_id == 21)
    assert rr.reason == RR.OK, "protocol 15+ gets OK RequestResponses"
    seen = await bob.participant_update(lambda p: p.identity == "alice" and p.metadata == "m1")
    assert seen.name == "Alice A." and dict(seen.attributes) == {"mood": "happy"}
    # A refreshed token carries the new claims for reconnects.
    refresh = (await alice.recv_until(
        "refresh_token", match=lambda m: "metadata" in jwt.decode(
            m.refresh_token, options={"verify_signature": False}))).refresh_token
    assert jwt.decode(refresh, options={"verify_signature": False})["metadata"] == "m1"

    too_big = "x" * (512 * 1024 + 1)
    await alice.send(_update_metadata(22, metadata=too_big))
    rr = await alice.request_response(match=lambda r: r.request_id == 22)
    assert rr.reason == RR.LIMIT_EXCEEDED, rr
    await alice.ping()
    assert not [
        p for m in alice.seen if kind_of(m) == "update" for p in m.update.participants
        if p.metadata == too_big
    ], "over-limit metadata must not be applied"


# -- tracks and subscriptions -----------------------------------------------------------
async def test_no_ok_request_responses_below_protocol_15(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM, protocol=14, can_update_own_metadata=True)
    await alice.send(_update_metadata(41, metadata="quiet"))
    await alice.participant_update(lambda p: p.identity == "alice" and p.metadata == "quiet")
    await alice.barrier()
    oks = [m.request_response for m in alice.seen if kind_of(m) == "request_response"
           and m.request_response.reason == RR.OK]
    assert not oks, f"protocol 14 must not get OK RequestResponses: {oks}"


async def test_mute_unknown_track_not_found(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    req = rtc.SignalRequest()
    req.mute.sid = "TR_AMunknown1234"
    req.mute.muted = True
    await alice.send(req)
    rr = await alice.request_response()
    assert rr.reason == RR.NOT_FOUND, rr
    assert rr.mute.sid == "TR_AMunknown1234"


async def test_add_track_with_source_outside_grant_not_allowed(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM, can_publish_sources=["microphone"])
    req = rtc.SignalRequest()
    req.add_track.cid = "camera-cid"
    req.add_track.name = "camera"
    req.add_track.type = models.TrackType.VIDEO
    req.add_track.source = models.TrackSource.CAMERA
    req.add_track.width, req.add_track.height = 640, 480
    await alice.send(req)
    rr = await alice.request_response()
    assert rr.reason == RR.NOT_ALLOWED, rr
    assert rr.add_track.cid == "camera-cid", "the AddTrack is echoed so clients can match it"

    mic = rtc.SignalRequest()
    mic.add_track.cid = "mic-cid"
    mic.add_track.type = models.TrackType.AUDIO
    mic.add_track.source = models.TrackSource.MICROPHONE
    await alice.send(mic)
    published = (await alice.recv_until("track_published")).track_published
    assert published.cid == "mic-cid"
    assert published.track.sid.startswith("TR_"), published.track


async def test_subscription_to_unknown_track_answers_not_found(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    req = rtc.SignalRequest()
    req.subscription.subscribe = True
    req.subscription.track_sids.append("TR_VCnosuchtrack")
    await alice.send(req)
    resp = (await alice.recv_until("subscription_response")).subscription_response
    assert resp.track_sid == "TR_VCnosuchtrack"
    assert resp.err == models.SubscriptionError.SE_TRACK_NOTFOUND


def _other_requests() -> dict[str, rtc.SignalRequest]:
    """One of every remaining SignalRequest variant, naming things that do not exist."""
    reqs: dict[str, rtc.SignalRequest] = {}

    r = rtc.SignalRequest()
    r.update_layers.track_sid = "TR_VCunknown"
    r.update_layers.layers.add(quality=models.VideoQuality.LOW, width=320, height=180)
    reqs["update_layers"] = r

    r = rtc.SignalRequest()
    r.subscription_permission.all_participants = False
    r.subscription_permission.track_permissions.add(participant_identity="bob", all_tracks=True)
    reqs["subscription_permission"] = r

    r = rtc.SignalRequest()
    r.sync_state.answer.type = "answer"
    r.sync_state.subscription.subscribe = False
    r.sync_state.track_sids_disabled.append("TR_VCunknown")
    reqs["sync_state"] = r

    r = rtc.SignalRequest()
    r.simulate.speaker_update = 3
    reqs["simulate"] = r

    r = rtc.SignalRequest()
    r.track_setting.track_sids.append("TR_VCunknown")
    r.track_setting.disabled = True
    reqs["track_setting"] = r

    r = rtc.SignalRequest()
    r.update_audio_track.track_sid = "TR_AMunknown"
    r.update_audio_track.features.append(models.AudioTrackFeature.TF_STEREO)
    reqs["update_audio_track"] = r

    r = rtc.SignalRequest()
    r.update_video_track.track_sid = "TR_VCunknown"
    r.update_video_track.width, r.update_video_track.height = 1280, 720
    reqs["update_video_track"] = r

    r = rtc.SignalRequest()
    r.publish_data_track_request.pub_handle = 7
    r.publish_data_track_request.name = "telemetry"
    reqs["publish_data_track_request"] = r

    r = rtc.SignalRequest()
    r.unpublish_data_track_request.pub_handle = 7
    reqs["unpublish_data_track_request"] = r

    r = rtc.SignalRequest()
    r.update_data_subscription.SetInParent()
    reqs["update_data_subscription"] = r

    r = rtc.SignalRequest()
    r.store_data_blob_request.request_id = 31
    reqs["store_data_blob_request"] = r

    r = rtc.SignalRequest()
    r.get_data_blob_request.request_id = 32
    r.get_data_blob_request.participant_identity = "bob"
    reqs["get_data_blob_request"] = r
    return reqs


OTHER_REQUESTS = _other_requests()
# Which RequestResponse oneof echoes which request (variants absent here echo nothing).
_ECHO = {
    "update_audio_track": "update_audio_track",
    "update_video_track": "update_video_track",
    "publish_data_track_request": "publish_data_track",
    "unpublish_data_track_request": "unpublish_data_track",
}


@pytest.mark.parametrize("variant", list(OTHER_REQUESTS))
async def test_other_request_variants_answered_or_ignored(
    pool: ClientPool, variant: str
) -> None:
    alice = await pool.join("alice", ROOM)
    request = OTHER_REQUESTS[variant]
    assert request.WhichOneof("message") == variant
    before = len(alice.seen)
    await alice.send(request)
    await alice.barrier()  # every answer to `request` has arrived by now
    await alice.ping(99_000)  # and the session is still alive
    answers = [m for m in alice.seen[before:] if kind_of(m) == "request_response"
               and not m.request_response.mute.sid.startswith("TR_barrier")]
    assert not [m for m in alice.seen if kind_of(m) == "leave"], f"{variant} made us leave"
    for msg in answers:
        rr = msg.request_response
        assert rr.reason in RR.values(), rr
        if rr.reason != RR.OK:
            assert rr.message, f"a refusal of {variant} should say why: {rr}"
        echo = _ECHO.get(variant)
        if echo is not None:
            assert rr.WhichOneof("request") == echo, rr
            assert getattr(rr, echo) == getattr(request, variant)
        if variant.endswith("data_blob_request"):
            assert rr.request_id == getattr(request, variant).request_id


# -- leaving ----------------------------------------------------------------------------
async def test_client_leave_gets_disconnect_leave_and_others_see_it(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    bob = await pool.join("bob", ROOM)
    await alice.participant_update(lambda p: p.identity == "bob")

    await alice.leave()
    leave = (await alice.recv_until("leave")).leave
    assert leave.action == Action.DISCONNECT
    assert leave.reason == Reason.CLIENT_INITIATED
    closed = await alice.expect_close()
    assert closed.code == 1000, closed

    gone = await bob.participant_update(
        lambda p: p.identity == "alice" and p.state == State.DISCONNECTED)
    assert gone.sid == alice.sid


async def test_duplicate_identity_replaces_first_session(pool: ClientPool) -> None:
    first = await pool.join("alice", ROOM)
    second = await pool.join("alice", ROOM)
    assert second.sid != first.sid
    leave = (await first.recv_until("leave")).leave
    assert leave.reason == Reason.DUPLICATE_IDENTITY, leave
    assert leave.action == Action.DISCONNECT
    await first.expect_close()
    await second.ping()


async def test_room_deleted_via_room_service(server: RoostServer, pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    bob = await pool.join("bob", ROOM)
    lk = api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
    try:
        await lk.room.delete_room(api.DeleteRoomRequest(room=ROOM))
    finally:
        await lk.aclose()
    for client in (alice, bob):
        leave = (await client.recv_until("leave")).leave
        assert leave.reason == Reason.ROOM_DELETED, (client.identity, leave)
        assert leave.action == Action.DISCONNECT
        await client.expect_close()


# -- resume -------------------------------------------------------------------------------
async def test_resume_after_socket_drop(pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    bob = await pool.join("bob", ROOM)
    await bob.ping()
    sid = alice.sid
    await alice.close()  # the network went away: no leave

    resumed = await pool.connect("alice", ROOM, reconnect=1, sid=sid, reconnect_reason=1)
    first = await resumed.recv()
    assert kind_of(first) == "reconnect", f"first message on resume is {kind_of(first)}"
    assert first.reconnect.server_info.version
    me = await resumed.participant_update(lambda p: p.identity == "alice")
    assert me.sid == sid, "resume keeps the participant"
    assert not [m for m in resumed.seen if kind_of(m) == "join"]
    await resumed.ping()

    # Bob never saw Alice leave.
    await bob.ping()
    assert not [p for m in bob.seen if kind_of(m) == "update" for p in m.update.participants
                if p.identity == "alice" and p.state == State.DISCONNECTED]


async def test_resume_of_unknown_session_asks_for_full_reconnect(pool: ClientPool) -> None:
    client = await pool.connect("ghost", ROOM, reconnect=1, sid="PA_doesnotexist",
                                reconnect_reason=1)
    first = await client.recv()
    assert kind_of(first) == "leave", f"expected a leave, got {first}"
    assert first.leave.action == Action.RECONNECT, first.leave
    await client.expect_close()


async def test_refresh_token_is_a_valid_join_token(server: RoostServer,
                                                   pool: ClientPool) -> None:
    alice = await pool.join("alice", ROOM)
    refresh = (await alice.recv_until("refresh_token")).refresh_token
    again = await pool.connect("alice", ROOM, token=refresh)
    join = await again.join()
    assert join.participant.identity == "alice"
    assert again.sid != alice.sid  # a new session replaces the old one (duplicate identity)


async def test_resume_reports_participants_that_left_while_away(pool: ClientPool) -> None:
    """Protocol > 8: after a resume, those who left meanwhile come as DISCONNECTED updates."""
    alice = await pool.join("alice", ROOM)
    bob = await pool.join("bob", ROOM)
    await alice.participant_update(lambda p: p.identity == "bob")
    sid = alice.sid
    await alice.close()

    carol = await pool.join("carol", ROOM)
    await bob.leave()
    await carol.participant_update(lambda p: p.identity == "bob" and p.state == State.DISCONNECTED)

    resumed = await pool.connect("alice", ROOM, reconnect=1, sid=sid, reconnect_reason=1)
    first = await resumed.recv()
    assert kind_of(first) == "reconnect", first
    await resumed.participant_update(lambda p: p.identity == "carol")
    await resumed.barrier()
    states = {p.identity: p.state for m in resumed.seen if kind_of(m) == "update"
              for p in m.update.participants}
    assert states.get("bob") == State.DISCONNECTED, (
        f"bob left while alice was away; after resuming alice saw {states}")


async def test_resume_while_old_socket_still_open(pool: ClientPool) -> None:
    """The client gave up on a socket the server still thinks is fine: the new one wins."""
    alice = await pool.join("alice", ROOM)
    bob = await pool.join("bob", ROOM)
    resumed = await pool.connect("alice", ROOM, reconnect=1, sid=alice.sid, reconnect_reason=1)
    first = await resumed.recv()
    assert kind_of(first) == "reconnect", first
    await alice.expect_close()
    await resumed.ping()
    await resumed.barrier()
    await bob.ping()
    assert not [p for m in bob.seen if kind_of(m) == "update" for p in m.update.participants
                if p.identity == "alice" and p.state == State.DISCONNECTED]


async def test_resume_refusal_for_old_protocol_uses_can_reconnect(pool: ClientPool) -> None:
    client = await pool.connect("ghost", ROOM, protocol=12, reconnect=1, sid="PA_doesnotexist")
    first = await client.recv()
    assert kind_of(first) == "leave", first
    assert first.leave.can_reconnect, "protocol < 13 learns it may reconnect from can_reconnect"

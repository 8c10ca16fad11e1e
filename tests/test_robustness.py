"""Hostile and clumsy clients: each gets a clear error, and nobody else notices.

For every hostile input the offending client must get a close code with a reason, or a
RequestResponse, and afterwards the server must still serve: fresh clients join another room
(raw clients after each case; the official SDK exchanging data after all of them at once).
A neighbour in the same room as a misbehaving client keeps receiving every update in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from livekit.protocol import models, rtc
from tests.helpers.scenario import run_scenario
from tests.helpers.server import RoostServer
from tests.rawclient import ClientPool, RawClient, kind_of

ROOM = "storm"
RR = rtc.RequestResponse.Reason
Action = rtc.LeaveRequest.Action
State = models.ParticipantInfo.State

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_TEXT = 1007
CLOSE_MESSAGE_TOO_BIG = 1009


@pytest.fixture
async def pool(server: RoostServer) -> AsyncIterator[ClientPool]:
    clients = ClientPool(server.url, server.api_key, server.api_secret)
    yield clients
    await clients.close_all()


# -- hostile inputs ---------------------------------------------------------------------------
def _trickle(candidate_init: str, target: int = rtc.SignalTarget.SUBSCRIBER) -> rtc.SignalRequest:
    req = rtc.SignalRequest()
    req.trickle.candidateInit = candidate_init
    req.trickle.target = target  # type: ignore[assignment]
    return req


def _offer(sdp: str) -> rtc.SignalRequest:
    req = rtc.SignalRequest()
    req.offer.type = "offer"
    req.offer.sdp = sdp
    req.offer.id = 1
    return req


def _truncated_protobuf() -> bytes:
    whole = _offer("v=0\r\n" + "a=x-padding\r\n" * 200).SerializeToString()
    return whole[: len(whole) // 2]


_SDP_HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
HOSTILE_SDPS = {
    "garbage": "\x00garbage\x7f" * 50,
    "300 KB": _SDP_HEAD + ("a=x-junk:" + "z" * 90 + "\r\n") * 3100,
    "no ICE credentials": _SDP_HEAD + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=setup:actpass\r\n",
}


async def _expect_close(client: RawClient, code: int) -> None:
    closed = await client.expect_close()
    assert closed.code == code, f"closed with {closed.code} {closed.reason!r}, wanted {code}"
    if code == CLOSE_UNSUPPORTED_DATA:  # protocol-level codes (1007, 1009) say it all
        assert closed.reason, "the close frame should say what was wrong"


async def _expect_trickle_error(client: RawClient, sent: rtc.SignalRequest) -> None:
    rr = await client.request_response(match=lambda r: r.WhichOneof("request") == "trickle")
    assert rr.reason == RR.UNCLASSIFIED_ERROR, rr
    assert rr.message, rr
    assert rr.trickle == sent.trickle, "the offending trickle is echoed"
    await client.ping()  # the session survived


async def _expect_full_reconnect(client: RawClient) -> None:
    """A broken offer: one LeaveRequest(action=RECONNECT), then the socket closes.

    The reference (`IssueFullReconnect`) sends exactly one leave and closes the signal
    connection without a second (DISCONNECT) leave, which would contradict the first.
    """
    await client.expect_close()
    leaves = [m.leave for m in client.seen if kind_of(m) == "leave"]
    assert leaves, "a broken offer must be answered with a leave"
    assert leaves[0].action == Action.RECONNECT, leaves[0]
    assert len(leaves) == 1, f"expected one RECONNECT leave, got {[str(x) for x in leaves]}"


@dataclass(frozen=True)
class Hostile:
    """Something a broken or malicious client sends, and how it must be answered."""

    send: Callable[[RawClient], Awaitable[rtc.SignalRequest | None]]
    outcome: Callable[[RawClient, rtc.SignalRequest | None], Awaitable[None]]


def _bytes_case(data: bytes, code: int) -> Hostile:
    async def send(client: RawClient) -> None:
        try:
            await client.send_bytes(data)
        except ConnectionError:
            pass  # the server may drop us mid-frame (oversized); its close frame is queued

    async def outcome(client: RawClient, _: rtc.SignalRequest | None) -> None:
        await _expect_close(client, code)

    return Hostile(send, outcome)


def _text_case(data: str, code: int) -> Hostile:
    async def send(client: RawClient) -> None:
        await client.send_text(data)

    async def outcome(client: RawClient, _: rtc.SignalRequest | None) -> None:
        await _expect_close(client, code)

    return Hostile(send, outcome)


def _raw_text_case(payload: bytes, code: int) -> Hostile:
    async def send(client: RawClient) -> None:
        await client.send_raw_text_frame(payload)

    async def outcome(client: RawClient, _: rtc.SignalRequest | None) -> None:
        await _expect_close(client, code)

    return Hostile(send, outcome)


def _harmless_case(data: bytes) -> Hostile:
    """Odd but valid input: ignored, and the session carries on."""

    async def send(client: RawClient) -> None:
        await client.send_bytes(data)

    async def outcome(client: RawClient, _: rtc.SignalRequest | None) -> None:
        await client.barrier()
        await client.ping()
        assert not [m for m in client.seen if kind_of(m) == "leave"]

    return Hostile(send, outcome)


def _request_case(request: rtc.SignalRequest,
                  outcome: Callable[[RawClient, rtc.SignalRequest], Awaitable[None]]) -> Hostile:
    async def send(client: RawClient) -> rtc.SignalRequest:
        await client.send(request)
        return request

    async def check(client: RawClient, sent: rtc.SignalRequest | None) -> None:
        assert sent is not None
        await outcome(client, sent)

    return Hostile(send, check)


async def _full_reconnect_outcome(client: RawClient, _: rtc.SignalRequest) -> None:
    await _expect_full_reconnect(client)


HOSTILE: dict[str, Hostile] = {
    "garbage binary frame": _bytes_case(b"\xff" * 64, CLOSE_UNSUPPORTED_DATA),
    "truncated protobuf": _bytes_case(_truncated_protobuf(), CLOSE_UNSUPPORTED_DATA),
    "invalid JSON text frame": _text_case('{"offer": {"sdp": ', CLOSE_UNSUPPORTED_DATA),
    "JSON of the wrong shape": _text_case('{"offer": 12, "pingReq": []}', CLOSE_UNSUPPORTED_DATA),
    "deeply nested JSON": _text_case('{"offer":' * 50_000 + "{}" + "}" * 50_000,
                                     CLOSE_UNSUPPORTED_DATA),
    "text frame not UTF-8": _raw_text_case(b'{"ping": "\xff\xfe"}', CLOSE_INVALID_TEXT),
    "5 MB frame": _bytes_case(b"\x00" * (5 * 1024 * 1024), CLOSE_MESSAGE_TOO_BIG),
    "protobuf with unknown fields only": _harmless_case(b"\xa8\x1f\x01\xb2\x1f\x03abc"),
    "trickle candidateInit not JSON": _request_case(_trickle("{not json"),
                                                    _expect_trickle_error),
    "trickle candidateInit not an object": _request_case(_trickle("[1, 2, 3]"),
                                                         _expect_trickle_error),
    "trickle with garbage candidate": _request_case(
        _trickle(json.dumps({"candidate": "candidate:garbage ~~ !!", "sdpMid": "0",
                             "sdpMLineIndex": 0})), _expect_trickle_error),
    **{f"offer with {name} SDP": _request_case(_offer(sdp), _full_reconnect_outcome)
       for name, sdp in HOSTILE_SDPS.items()},
}


async def _server_still_serves(server: RoostServer, pool: ClientPool, room: str) -> None:
    """Two fresh raw clients join another room, see each other and get pongs."""
    assert server.process is not None and server.process.poll() is None, "server died"
    first = await pool.join("fresh-1", room)
    second = await pool.join("fresh-2", room)
    assert second.join_response is not None
    assert [p.identity for p in second.join_response.other_participants] == ["fresh-1"]
    await first.participant_update(lambda p: p.identity == "fresh-2")
    await first.ping()
    await second.ping()


def _no_tracebacks(server: RoostServer) -> None:
    log = server.log_path.read_text("utf-8", "replace")
    assert "Traceback" not in log, "the server logged an unexpected exception:\n" + log[-4000:]


@pytest.mark.parametrize("case_name", list(HOSTILE))
async def test_hostile_input_gets_clear_error_and_server_keeps_serving(
    server: RoostServer, pool: ClientPool, case_name: str
) -> None:
    case = HOSTILE[case_name]
    bystander = await pool.join("bystander", ROOM)
    offender = await pool.join("offender", ROOM)
    await bystander.participant_update(lambda p: p.identity == "offender")

    sent = await case.send(offender)
    await asyncio.wait_for(case.outcome(offender, sent), 10)

    await bystander.ping()  # the neighbour's session is untouched
    await _server_still_serves(server, pool, f"after-{case_name.replace(' ', '-')}")
    _no_tracebacks(server)


async def fresh_pair_exchanges_data(srv: dict[str, str], room_name: str) -> dict[str, str]:
    """Scenario (child process, official SDK): two new participants exchange reliable data."""
    from tests.helpers.sdk import EventLog, Rooms

    rooms = Rooms(srv)
    try:
        first = rooms.new()
        first_events = EventLog(first, "data_received", "participant_connected", label="first")
        await rooms.join("sdk-first", room_name, room=first)
        second = rooms.new()
        second_events = EventLog(second, "data_received", label="second")
        await rooms.join("sdk-second", room_name, room=second)
        if "sdk-second" not in first.remote_participants:
            await first_events.wait("participant_connected",
                                    lambda p: p.identity == "sdk-second")

        await second.local_participant.publish_data(b"still standing", reliable=True,
                                                    topic="storm")
        (packet,) = await first_events.wait("data_received",
                                            lambda p: p.data == b"still standing")
        assert packet.participant is not None and packet.participant.identity == "sdk-second"
        await first.local_participant.publish_data(b"me too", reliable=True,
                                                   destination_identities=["sdk-second"])
        (packet,) = await second_events.wait("data_received", lambda p: p.data == b"me too")
        assert packet.participant is not None and packet.participant.identity == "sdk-first"
        return {"first": first.local_participant.sid, "second": second.local_participant.sid}
    finally:
        await rooms.close()


async def test_after_every_hostile_input_sdk_clients_still_exchange_data(
    server: RoostServer, pool: ClientPool, tmp_path: Path
) -> None:
    for i, (name, case) in enumerate(HOSTILE.items()):
        offender = await pool.join(f"offender-{i}", ROOM)
        sent = await case.send(offender)
        try:
            await asyncio.wait_for(case.outcome(offender, sent), 10)
        except AssertionError as exc:  # judged by the per-case test; here we want the aftermath
            print(f"{name}: {exc}")
    result = run_scenario("tests.test_robustness:fresh_pair_exchanges_data", server.info,
                          "after-storm", timeout=60, log_dir=tmp_path)
    assert result["first"].startswith("PA_") and result["second"].startswith("PA_")


# -- floods and unknown names ----------------------------------------------------------------
async def test_rapid_ping_reqs_all_answered_in_order(pool: ClientPool) -> None:
    client = await pool.join("pinger", ROOM)
    for ts in range(1, 201):
        await client.send(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=ts)))
    echoed: list[int] = []
    while len(echoed) < 200:
        msg = await client.recv_until("pong_resp", timeout=10)
        echoed.append(msg.pong_resp.last_ping_timestamp)
    assert echoed == list(range(1, 201))


async def test_unknown_sids_answered_and_session_lives(pool: ClientPool) -> None:
    client = await pool.join("confused", ROOM)

    mute = rtc.SignalRequest()
    mute.mute.sid, mute.mute.muted = "TR_AMghost", True
    await client.send(mute)
    rr = await client.request_response(match=lambda r: r.mute.sid == "TR_AMghost")
    assert rr.reason == RR.NOT_FOUND

    sub = rtc.SignalRequest()
    sub.subscription.subscribe = True
    sub.subscription.participant_tracks.add(participant_sid="PA_ghost",
                                            track_sids=["TR_VCghost"])
    await client.send(sub)
    resp = (await client.recv_until("subscription_response")).subscription_response
    assert (resp.track_sid, resp.err) == ("TR_VCghost", models.SubscriptionError.SE_TRACK_NOTFOUND)

    audio = rtc.SignalRequest()
    audio.update_audio_track.track_sid = "TR_AMghost"
    await client.send(audio)
    rr = await client.request_response(match=lambda r: r.WhichOneof("request") ==
                                       "update_audio_track")
    assert rr.reason == RR.NOT_FOUND and rr.update_audio_track.track_sid == "TR_AMghost"

    video = rtc.SignalRequest()
    video.update_video_track.track_sid = "TR_VCghost"
    video.update_video_track.width = 640
    await client.send(video)
    rr = await client.request_response(match=lambda r: r.WhichOneof("request") ==
                                       "update_video_track")
    assert rr.reason == RR.NOT_FOUND and rr.update_video_track.track_sid == "TR_VCghost"

    for req in (rtc.SignalRequest(track_setting=rtc.UpdateTrackSettings(
                    track_sids=["TR_VCghost"], disabled=True)),
                rtc.SignalRequest(update_layers=rtc.UpdateVideoLayers(track_sid="TR_VCghost")),
                rtc.SignalRequest(subscription=rtc.UpdateSubscription(
                    track_sids=["TR_VCghost"], subscribe=False))):
        await client.send(req)
    await client.barrier()
    await client.ping()
    assert not [m for m in client.seen if kind_of(m) == "leave"]


# -- a neighbour's view ----------------------------------------------------------------------
async def test_neighbour_keeps_every_update_while_another_client_misbehaves(
    pool: ClientPool,
) -> None:
    observer = await pool.join("observer", ROOM)
    writer = await pool.join("writer", ROOM, can_update_own_metadata=True)
    rogue = await pool.join("rogue", ROOM)
    await observer.participant_update(lambda p: p.identity == "rogue")

    expected = []
    for i in range(25):
        # The rogue: pings in bursts, refused metadata, bad trickles, ghosts, a huge value.
        for ts in range(10):
            await rogue.send(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=i * 100 + ts)))
        await rogue.send(_trickle("nope"))
        over = rtc.SignalRequest()
        over.update_metadata.metadata = "r" * (600 * 1024)
        await rogue.send(over)
        ghost = rtc.SignalRequest()
        ghost.mute.sid = f"TR_ghost{i}"
        await rogue.send(ghost)
        # The writer: one metadata change per round.
        update = rtc.SignalRequest()
        update.update_metadata.request_id = i + 1
        update.update_metadata.metadata = f"m{i}"
        await writer.send(update)
        expected.append(f"m{i}")
    await rogue.send_bytes(b"\xff" * 32)  # and finally a frame that gets it thrown out
    closed = await rogue.expect_close(timeout=10)
    assert closed.code == CLOSE_UNSUPPORTED_DATA, closed

    final = rtc.SignalRequest()
    final.update_metadata.request_id = 99
    final.update_metadata.metadata = "final"
    await writer.send(final)
    expected.append("final")

    seen: list[str] = []
    while not seen or seen[-1] != "final":
        info = await observer.participant_update(
            lambda p: p.identity == "writer" and p.metadata != "", timeout=10)
        seen.append(info.metadata)
    assert seen == expected, "the observer must see every metadata change, in order"

    answers: list[tuple[int, int]] = []
    while len(answers) < len(expected):
        rr = await writer.request_response(timeout=10)
        answers.append((rr.request_id, rr.reason))
    assert answers == [(i + 1, RR.OK) for i in range(25)] + [(99, RR.OK)]

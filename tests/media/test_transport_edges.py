"""PeerTransport edge cases: ICE restart, hostile SDP and candidates, cleanup, SDK-shaped offers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection
from tests.helpers.server import free_port
from tests.helpers.wait import until
from tests.media.peers import Inbox, client_pc, negotiate_client_offer, within

from roost.media import PeerTransport, SdpError
from roost.media.icemux import IceMux
from roost.media.sdp import MAX_SDP_SIZE, parse

FIXTURES = Path(__file__).parent / "fixtures"


Pair = tuple[PeerTransport, PeerTransport]


@pytest.fixture(params=["own sockets", "shared udp_port"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """Two PeerTransports: `offerer` plays the server's subscriber PC, `answerer` the client;
    the offerer binds its own sockets, or sits on a shared UDP port (rtc.udp_port) with ICE-TCP."""
    mux = None
    if request.param == "shared udp_port":
        mux = IceMux(addresses=["127.0.0.1"], udp_port=free_port(), tcp_port=free_port())
        await mux.start()
    offerer = PeerTransport(addresses=["127.0.0.1"], label="offerer", mux=mux)
    answerer = PeerTransport(addresses=["127.0.0.1"], label="answerer")
    yield offerer, answerer
    await within(offerer.close())
    await within(answerer.close())
    if mux is not None:
        assert not mux._connections, "every ICE connection left the shared registry"
        await mux.stop()


async def exchange(offerer: PeerTransport, answerer: PeerTransport, **kw: bool) -> None:
    offer = await within(offerer.create_offer(**kw))
    answer = await within(answerer.handle_offer(offer))
    await within(offerer.handle_answer(answer))


async def test_ice_restart_keeps_dtls_and_data(pair: tuple[PeerTransport, PeerTransport]) -> None:
    """create_offer(ice_restart=True): fresh ICE credentials and sockets, same DTLS session."""
    offerer, answerer = pair
    up, down = Inbox(), Inbox()
    offerer.on_data, offerer.on_state = up.on_data, up.on_state
    answerer.on_data, answerer.on_state = down.on_data, down.on_state
    await exchange(offerer, answerer)
    await until(lambda: offerer.connected and answerer.connected)
    assert offerer.send_data("_reliable", b"one")
    await down.wait_for("_reliable", b"one")
    assert offerer.dtls is not None and answerer.dtls is not None
    old_offer = parse(await within(offerer.create_offer()))  # plain renegotiation first
    await within(offerer.handle_answer(await within(answerer.handle_offer(str(old_offer)))))

    restart = parse(await within(offerer.create_offer(ice_restart=True)))
    assert restart.media[0].ice_ufrag != old_offer.media[0].ice_ufrag
    answer = parse(await within(answerer.handle_offer(str(restart))))
    await within(offerer.handle_answer(str(answer)))
    links = [t._ice for t in pair]
    await until(lambda: all(link is not None and link._pending is None for link in links))
    assert offerer.send_data("_lossy", b"after-restart")
    assert answerer.send_data("_reliable", b"back")
    await down.wait_for("_lossy", b"after-restart")
    await up.wait_for("_reliable", b"back")
    assert up.states == ["connected"] and down.states == ["connected"]


def rust_offer(name: str = "rust_sdk_publisher_offer_initial.sdp") -> str:
    return (FIXTURES / name).read_text()


async def test_answers_the_rust_sdk_publisher_offer(transport: PeerTransport) -> None:
    """The official SDK's offer shape (3 audio + 3 video recvonly + data) gets a valid answer."""
    offer = parse(rust_offer())
    answer = parse(await within(transport.handle_offer(str(offer))))
    assert [m.mid for m in answer.media] == [m.mid for m in offer.media]
    assert [m.kind for m in answer.media] == [m.kind for m in offer.media]
    assert answer.bundle() == [m.mid for m in offer.media]
    for m in answer.media:
        assert m.port == 9 and m.setup == "active" and m.candidates and m.end_of_candidates
        assert m.ice_ufrag and m.ice_pwd and m.fingerprints
    data = answer.media[-1]
    assert data.is_datachannel and data.sctp_port == 5000 and data.max_message_size
    audio = answer.media[0]
    assert audio.direction == "inactive" and audio.codecs[0].name == "opus" and audio.rtcp_mux
    assert "urn:ietf:params:rtp-hdrext:sdes:mid" in {e.uri for e in audio.extmaps}

    # The re-offer after publish_track(audio) adds a sendonly m-line: roost receives it,
    # RED first (so the publisher sends RED), Opus with NACK, no transport-cc.
    again = parse(await within(transport.handle_offer(rust_offer(
        "rust_sdk_publisher_offer_audio.sdp"))))
    assert [m.mid for m in again.media] == [*[m.mid for m in offer.media], "14"]
    published = again.media[-1]
    assert published.kind == "audio" and published.direction == "recvonly"
    assert [(c.name, c.payload_type) for c in published.codecs] == [("red", 63), ("opus", 111)]
    assert published.codecs[1].rtcp_fb == []  # the offer has no nack for opus
    assert "draft-holmer" not in " ".join(e.uri for e in published.extmaps)
    assert [up.track_id for up in transport.up_tracks] == ["b2d7e859-55a5-44d9-b81b-d070d7420af0"]
    assert again.media[0].ice_ufrag == audio.ice_ufrag  # same ICE session


def without(sdp: str, prefix: str) -> str:
    return "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith(prefix))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: "garbage",
        lambda s: s + "a=x:" + "y" * MAX_SDP_SIZE + "\r\n",
        lambda s: without(s, "a=fingerprint"),
        lambda s: without(s, "a=ice-ufrag"),
        lambda s: without(s, "a=ice-pwd"),
        lambda s: without(s, "a=mid"),
        lambda s: s.replace("a=mid:8", "a=mid:7"),
        lambda s: s.replace("a=fingerprint:sha-256", "a=fingerprint:md5"),
        lambda s: s.replace("a=setup:actpass", "a=setup:bogus"),
        lambda s: s.replace("m=application 9", "m=application 0")
        .replace("m=audio 9", "m=audio 0").replace("m=video 9", "m=video 0"),
    ],
)
async def test_hostile_offer_raises_sdp_error(transport: PeerTransport, mangle: object) -> None:
    assert callable(mangle)
    with pytest.raises(SdpError):
        await within(transport.handle_offer(mangle(rust_offer())))
    # The transport is still usable afterwards.
    answer = parse(await within(transport.handle_offer(rust_offer())))
    assert len(answer.media) == 7


async def test_renegotiation_must_keep_mids(transport: PeerTransport) -> None:
    await within(transport.handle_offer(rust_offer()))
    with pytest.raises(SdpError):
        await within(transport.handle_offer(rust_offer().replace("a=mid:7", "a=mid:70")))
    first = parse(rust_offer()).media[0].fingerprints[0].value
    changed = rust_offer().replace(first, "00" + first[2:])
    with pytest.raises(SdpError):
        await within(transport.handle_offer(changed))


async def test_answer_without_offer_is_refused(transport: PeerTransport) -> None:
    with pytest.raises(SdpError):
        await within(transport.handle_answer(rust_offer()))


@pytest.mark.parametrize(
    "init",
    [
        None,
        "candidate:1 1 udp 1 127.0.0.1 9 typ host",
        {},
        {"candidate": 5},
        {"candidate": "garbage"},
        {"candidate": "candidate:1 1 udp 1 not-an-ip 9 typ host"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 99999 typ host"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ weird"},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": 0},
        {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMLineIndex": "0"},
        {"candidate": "x" * 5000},
    ],
)
async def test_bad_candidates_raise_value_error(transport: PeerTransport, init: object) -> None:
    await within(transport.handle_offer(rust_offer()))
    with pytest.raises(ValueError):
        await within(transport.add_remote_candidate(init))  # type: ignore[arg-type]


async def test_good_and_final_candidates_are_accepted(transport: PeerTransport) -> None:
    early = {"candidate": "candidate:1 1 udp 2122194687 127.0.0.1 40000 typ host",
             "sdpMid": "7", "sdpMLineIndex": 0}
    await within(transport.add_remote_candidate(early))  # before the offer: kept for later
    await within(transport.handle_offer(rust_offer()))
    await within(transport.add_remote_candidate({**early, "candidate":
        "candidate:2 1 udp 2122194687 127.0.0.1 40001 typ host"}))
    await within(transport.add_remote_candidate({"candidate": "", "sdpMid": "7"}))
    assert transport._ice is not None
    conn = transport._ice._local  # the aioice connection checks run on
    ports = sorted(c.port for c in conn._remote_candidates)
    assert 40000 in ports and 40001 in ports, ports  # the early one was replayed
    assert conn._remote_candidates_end  # "" ended the candidates


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_close_releases_sockets_and_tasks() -> None:
    """After close() no socket or task of the transport (or its client) is left behind."""
    await asyncio.sleep(0)
    baseline_fds = open_fds()
    baseline_tasks = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    transport = PeerTransport(addresses=["127.0.0.1"], label="leak")
    inbox = Inbox()
    transport.on_data, transport.on_state = inbox.on_data, inbox.on_state
    client: RTCPeerConnection = client_pc()
    channel = client.createDataChannel("_reliable")
    await negotiate_client_offer(client, transport)
    await until(lambda: channel.readyState == "open")
    channel.send(b"x")
    await inbox.wait_for("_reliable", b"x")
    await within(transport.close())
    await within(transport.close())  # idempotent
    assert inbox.states == ["connected", "closed"]
    assert not transport.send_data("_reliable", b"late")
    await within(client.close())

    def leftovers() -> set[asyncio.Task[object]]:
        tasks = {t for t in asyncio.all_tasks() if not t.done()}
        return tasks - baseline_tasks - {asyncio.current_task()}  # type: ignore[operator]

    await until(lambda: not leftovers(), 5, lambda: f"no leftover tasks: {leftovers()}")
    await until(lambda: open_fds() <= baseline_fds, timeout=5)


async def test_close_before_connecting_is_clean() -> None:
    baseline = open_fds()
    transport = PeerTransport(addresses=["127.0.0.1"], label="early-close")
    await within(transport.handle_offer(rust_offer()))
    await within(transport.close())
    with pytest.raises(ConnectionError):
        await transport.handle_offer(rust_offer())
    await until(lambda: open_fds() <= baseline, timeout=5)


async def test_ice_restart_rescues_a_dead_path(pair: tuple[PeerTransport, PeerTransport]) -> None:
    """The old ICE path dies while a restart is negotiated: DTLS waits, then resumes on it."""
    offerer, answerer = pair
    up, down = Inbox(), Inbox()
    offerer.on_data, offerer.on_state = up.on_data, up.on_state
    answerer.on_data, answerer.on_state = down.on_data, down.on_state
    await exchange(offerer, answerer)
    await until(lambda: offerer.connected and answerer.connected)
    # The answerer learns the offerer's channels in-band (DCEP), just after connecting.
    await until(lambda: "_reliable" in answerer._channels.labels())
    assert answerer.send_data("_reliable", b"one")
    await up.wait_for("_reliable", b"one")

    offer = await within(offerer.create_offer(ice_restart=True))
    answer = await within(answerer.handle_offer(offer))
    assert offerer._ice is not None and answerer._ice is not None
    await within(offerer._ice._conn.close())  # the network path is lost mid-negotiation
    await asyncio.sleep(0.05)  # a wait for nothing: the offerer must not fail meanwhile
    assert offerer.connected  # not failed: a restart is pending
    await within(offerer.handle_answer(answer))
    await until(lambda: offerer._ice is not None and offerer._ice._pending is None)
    assert offerer.send_data("_reliable", b"two")
    assert answerer.send_data("_reliable", b"three")
    await down.wait_for("_reliable", b"two")
    await up.wait_for("_reliable", b"three")
    assert up.states == ["connected"] and down.states == ["connected"]

"""PeerTransport against aiortc's RTCPeerConnection playing the LiveKit client, on loopback."""

from __future__ import annotations

import time
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection
from tests.helpers.wait import until
from tests.media.peers import (
    Inbox,
    channel_inbox,
    negotiate_client_offer,
    negotiate_server_offer,
)

from roost.media import PeerTransport
from roost.media.sdp import parse


async def test_client_offer_data_flows_both_ways(
    transport: PeerTransport, client: RTCPeerConnection
) -> None:
    """Publisher PC: client creates _reliable/_lossy and offers; data flows both ways."""
    inbox = Inbox()
    transport.on_data, transport.on_state = inbox.on_data, inbox.on_state
    reliable = client.createDataChannel("_reliable", ordered=True)
    lossy = client.createDataChannel("_lossy", ordered=False, maxRetransmits=0)
    received: list[Any] = []
    channel_inbox(reliable, received)
    channel_inbox(lossy, received)

    started = time.monotonic()
    answer = await negotiate_client_offer(client, transport)
    desc = parse(answer)
    assert desc.media[0].setup == "active"
    assert any("127.0.0.1" in c for c in desc.media[0].candidates)

    await until(
        lambda: transport.connected and reliable.readyState == "open" and lossy.readyState == "open"
    )
    connect_time = time.monotonic() - started
    assert inbox.states == ["connected"]

    reliable.send(b"to-server-reliable")
    lossy.send(b"to-server-lossy")
    await inbox.wait_for("_reliable", b"to-server-reliable")
    await inbox.wait_for("_lossy", b"to-server-lossy")

    assert transport.send_data("_reliable", b"to-client-reliable")
    assert transport.send_data("_lossy", b"to-client-lossy")
    await until(lambda: ("_reliable", b"to-client-reliable") in received)
    await until(lambda: ("_lossy", b"to-client-lossy") in received)
    assert not transport.send_data("_nope", b"x")
    assert connect_time < 5.0, connect_time


async def test_server_offer_creates_channels(
    transport: PeerTransport, client: RTCPeerConnection
) -> None:
    """Subscriber PC: the server offers; the client adopts _reliable/_lossy via ondatachannel."""
    inbox = Inbox()
    transport.on_data, transport.on_state = inbox.on_data, inbox.on_state
    channels: dict[str, RTCDataChannel] = {}
    received: list[Any] = []

    @client.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        channels[channel.label] = channel
        channel_inbox(channel, received)

    # Queued before the channel opens: delivered once it does.
    offer_sdp = await negotiate_server_offer(client, transport)
    assert transport.send_data("_reliable", b"early")
    offer = parse(offer_sdp)
    assert offer.media[0].setup == "actpass" and offer.media[0].kind == "application"
    await until(lambda: {"_reliable", "_lossy"} <= set(channels))
    assert channels["_reliable"].ordered
    assert not channels["_lossy"].ordered and channels["_lossy"].maxRetransmits == 0
    await until(lambda: ("_reliable", b"early") in received)

    assert transport.send_data("_lossy", b"lossy-down")
    await until(lambda: ("_lossy", b"lossy-down") in received)
    await until(lambda: channels["_reliable"].readyState == "open")
    channels["_reliable"].send(b"up")
    channels["_lossy"].send("text-up")
    await inbox.wait_for("_reliable", b"up")
    await inbox.wait_for("_lossy", b"text-up")
    assert inbox.states == ["connected"]


async def test_client_renegotiation_keeps_connection(
    transport: PeerTransport, client: RTCPeerConnection
) -> None:
    """A second client offer (adding a sending audio m-line) is answered; data keeps flowing."""
    inbox = Inbox()
    transport.on_data, transport.on_state = inbox.on_data, inbox.on_state
    reliable = client.createDataChannel("_reliable")
    await negotiate_client_offer(client, transport)
    await until(lambda: reliable.readyState == "open")
    reliable.send(b"before")
    await inbox.wait_for("_reliable", b"before")

    client.addTransceiver("audio", direction="sendonly")
    answer = parse(await negotiate_client_offer(client, transport))
    assert [m.kind for m in answer.media] == ["application", "audio"]
    assert answer.media[1].direction == "recvonly" and answer.media[1].port != 0
    assert answer.bundle() == [m.mid for m in answer.media]

    reliable.send(b"after")
    await inbox.wait_for("_reliable", b"after")
    assert transport.connected and inbox.states == ["connected"]


async def test_server_renegotiation_keeps_connection(
    transport: PeerTransport, client: RTCPeerConnection
) -> None:
    """A second server offer keeps ICE/DTLS credentials and the data channels."""
    channels: dict[str, RTCDataChannel] = {}
    received: list[Any] = []

    @client.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        channels[channel.label] = channel
        channel_inbox(channel, received)

    first = parse(await negotiate_server_offer(client, transport))
    await until(lambda: "_reliable" in channels and channels["_reliable"].readyState == "open")
    second = parse(await negotiate_server_offer(client, transport))
    assert second.media[0].ice_ufrag == first.media[0].ice_ufrag
    assert second.media[0].fingerprints == first.media[0].fingerprints
    assert second.origin.split()[2] == "2"  # session version incremented
    assert transport.send_data("_reliable", b"after-renegotiation")
    await until(lambda: ("_reliable", b"after-renegotiation") in received)
    assert transport.connected


async def test_answerer_queues_for_channels_the_client_will_open(
    transport: PeerTransport, client: RTCPeerConnection
) -> None:
    """Single-PC case: server→client data sent before the client's DCEP OPEN is not lost."""
    reliable = client.createDataChannel("_reliable")
    received: list[Any] = []
    channel_inbox(reliable, received)
    await negotiate_client_offer(client, transport)
    assert transport.send_data("_reliable", b"sent-before-open")
    assert not transport.send_data("_custom", b"unknown label")
    await until(lambda: ("_reliable", b"sent-before-open") in received)

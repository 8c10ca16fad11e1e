"""Helpers for media transport tests: a bounded await and an aiortc peer as the LiveKit client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from tests.helpers.wait import WAIT, until

from roost.media import PeerTransport

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout: float = WAIT) -> T:
    """Await with a bound, so a broken transport fails the test instead of hanging it."""
    return await asyncio.wait_for(awaitable, timeout)


class Inbox:
    """Collects (label, bytes) from a PeerTransport and lets a test wait for them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.states: list[str] = []

    def on_data(self, label: str, data: bytes) -> None:
        self.items.append((label, data))

    def on_state(self, state: str) -> None:
        self.states.append(state)

    async def wait_for(self, label: str, data: bytes) -> None:
        await until(lambda: (label, data) in self.items, WAIT, f"{label}: {data!r}")


def client_pc() -> RTCPeerConnection:
    """An aiortc peer connection with no STUN server (this machine has no internet)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def channel_inbox(channel: RTCDataChannel, sink: list[Any]) -> None:
    @channel.on("message")
    def _on_message(message: Any) -> None:
        sink.append((channel.label, message))


async def negotiate_client_offer(pc: RTCPeerConnection, transport: PeerTransport) -> str:
    """Client offers, PeerTransport answers; returns the answer SDP."""
    await pc.setLocalDescription(await pc.createOffer())
    answer = await within(transport.handle_offer(pc.localDescription.sdp))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return answer


async def negotiate_server_offer(pc: RTCPeerConnection, transport: PeerTransport) -> str:
    """PeerTransport offers, the client answers; returns the offer SDP."""
    offer = await within(transport.create_offer())
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await within(transport.handle_answer(pc.localDescription.sdp))
    return offer

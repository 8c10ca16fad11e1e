"""Fixtures for media transport tests: a PeerTransport on loopback and an aiortc client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection
from tests.media.peers import client_pc, within

from roost.media import PeerTransport


@pytest.fixture
async def transport() -> AsyncIterator[PeerTransport]:
    t = PeerTransport(addresses=["127.0.0.1"], label="test")
    yield t
    await within(t.close())


@pytest.fixture
async def client() -> AsyncIterator[RTCPeerConnection]:
    pc = client_pc()
    yield pc
    await within(pc.close())

"""The contracts the room layer holds with the signal and media layers."""

from __future__ import annotations

from typing import Protocol

from livekit.protocol import rtc


class SignalSink(Protocol):
    """Where a participant's SignalResponses go (one WebSocket session, or a relay)."""

    def send(self, response: rtc.SignalResponse) -> None:
        """Queue a message for the client; must not block."""

    def close(self, reason: str = "") -> None:
        """End the signalling connection after flushing what is queued."""


class Transport(Protocol):
    """The room layer's view of a peer connection (implemented by media.PeerTransport)."""

    @property
    def connected(self) -> bool: ...

    def send_data(self, label: str, payload: bytes) -> bool: ...

    async def close(self) -> None: ...

"""The room layer's contract with the signal layer; the media contract is media/types.py."""

from __future__ import annotations

from typing import Protocol

from livekit.protocol import rtc


class SignalSink(Protocol):
    """Where a participant's SignalResponses go (one WebSocket session, or a relay)."""

    def send(self, response: rtc.SignalResponse) -> None:
        """Queue a message for the client; must not block."""

    def close(self, reason: str = "") -> None:
        """End the signalling connection after flushing what is queued."""

"""What a SignalSession talks through: the SignalConnection protocol and its close codes.

The edge gives a client's WebSocket (`edge/websocket.py`); the relay gives a bus stream.
"""

from __future__ import annotations

from typing import Protocol

Frame = bytes | str  # a binary (protobuf) or text (protojson) signalling message

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011


class SignalConnection(Protocol):
    """A full-duplex stream of signalling frames with one client."""

    @property
    def closed(self) -> bool:
        """True once either side ended the connection."""
        ...

    async def receive(self) -> Frame | None:
        """The client's next frame, or None once the connection is closed."""
        ...

    async def send(self, frame: Frame) -> None:
        """Write one frame; raises ConnectionError when it cannot be delivered."""
        ...

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """End the connection with a WebSocket close code and reason (idempotent)."""
        ...

    def describe_error(self) -> str:
        """What broke the connection, for logs ('' if nothing did)."""
        ...

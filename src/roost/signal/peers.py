"""The signal layer's view of a participant's transports: the PeerTransports it made."""

from __future__ import annotations

from roost.media.transport import PeerTransport
from roost.media.types import Transport


def peer(transport: Transport | None) -> PeerTransport | None:
    """A participant's transport as the signal layer made it: a PeerTransport, which
    negotiates (offers, answers, candidates) beyond what the room sees of it."""
    if transport is not None and not isinstance(transport, PeerTransport):
        raise TypeError(f"expected a PeerTransport, got {type(transport).__name__}")
    return transport

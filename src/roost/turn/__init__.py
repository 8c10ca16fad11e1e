"""roost's embedded TURN server (RFC 8656 essentials: UDP relays over UDP, TCP and TLS)."""

from roost.turn.credentials import CredentialStatus, TurnCredentials
from roost.turn.server import TurnServer

__all__ = ["CredentialStatus", "TurnCredentials", "TurnServer"]

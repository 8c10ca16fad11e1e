"""Identifiers in LiveKit's shape: a type prefix and 12 base57 characters."""

from __future__ import annotations

import secrets

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

ROOM = "RM_"
PARTICIPANT = "PA_"
TRACK = "TR_"
NODE = "ND_"
WEBHOOK_EVENT = "EV_"
CONNECTION = "CO_"


def new_id(prefix: str, length: int = 12) -> str:
    """Return a fresh random identifier such as `PA_3kd8sJq2mZx9`."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))

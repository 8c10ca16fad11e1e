"""Identifiers in LiveKit's shape: a type prefix and 12 base57 characters."""

from __future__ import annotations

import secrets
from typing import NewType

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


# Typed identifiers: each is a str at run time; the type says which kind a signature wants.
RoomName = NewType("RoomName", str)  # the room's name, as tokens and RoomService name it
Identity = NewType("Identity", str)  # a participant's identity, unique within its room
ParticipantSid = NewType("ParticipantSid", str)  # PA_…, one per participant session
TrackSid = NewType("TrackSid", str)  # TR_…, one per published track
NodeId = NewType("NodeId", str)  # ND_…, one per roost process


def participant_sid() -> ParticipantSid:
    return ParticipantSid(new_id(PARTICIPANT))


def track_sid(tag: str = "") -> TrackSid:
    """A track sid; `tag` (LiveKit's A/V/… kind letters) follows the prefix."""
    return TrackSid(new_id(TRACK + tag, 12 - len(tag)))


def node_id() -> NodeId:
    return NodeId(new_id(NODE))

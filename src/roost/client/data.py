"""Records handed to data event listeners: user packets, SIP DTMF and transcriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .types import DataPacketKind

if TYPE_CHECKING:
    from .participant import RemoteParticipant


@dataclass
class DataPacket:
    """A user packet received from another participant (or from the server API)."""

    data: bytes
    kind: DataPacketKind
    participant: RemoteParticipant | None
    topic: str | None = None


@dataclass
class SipDTMF:
    """A DTMF tone event."""

    code: int
    digit: str
    participant: RemoteParticipant | None = None


@dataclass
class TranscriptionSegment:
    """One piece of transcribed speech."""

    id: str
    text: str
    start_time: int = 0
    end_time: int = 0
    language: str = ""
    final: bool = False


@dataclass
class Transcription:
    """Segments transcribed from one participant's track."""

    participant_identity: str
    track_sid: str
    segments: list[TranscriptionSegment] = field(default_factory=list)

"""Enums and option records of the client API, named and numbered like `livekit.rtc`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from livekit.protocol import models

DisconnectReason = models.DisconnectReason


class TrackKind(IntEnum):
    """Audio or video (the `livekit.rtc` numbering, not the wire's `TrackType`)."""

    KIND_UNKNOWN = 0
    KIND_AUDIO = 1
    KIND_VIDEO = 2


class TrackSource(IntEnum):
    """What a track carries; same numbers as the wire's `TrackSource`."""

    SOURCE_UNKNOWN = 0
    SOURCE_CAMERA = 1
    SOURCE_MICROPHONE = 2
    SOURCE_SCREENSHARE = 3
    SOURCE_SCREENSHARE_AUDIO = 4


class ConnectionState(IntEnum):
    """The room's connection state."""

    CONN_DISCONNECTED = 0
    CONN_CONNECTED = 1
    CONN_RECONNECTING = 2


class DataPacketKind(IntEnum):
    """Delivery of a data packet (the `livekit.rtc` numbering)."""

    KIND_LOSSY = 0
    KIND_RELIABLE = 1


class ConnectionQuality(IntEnum):
    """Connection quality the server reports for a participant."""

    QUALITY_UNKNOWN = -1
    QUALITY_POOR = 0
    QUALITY_GOOD = 1
    QUALITY_EXCELLENT = 2
    QUALITY_LOST = 3


class StreamState(IntEnum):
    """Whether the server currently forwards a subscribed track."""

    STATE_UNKNOWN = 0
    STATE_ACTIVE = 1
    STATE_PAUSED = 2


class ParticipantKind(IntEnum):
    """Kind of participant (standard, agent, SIP, ...)."""

    PARTICIPANT_KIND_STANDARD = 0
    PARTICIPANT_KIND_INGRESS = 1
    PARTICIPANT_KIND_EGRESS = 2
    PARTICIPANT_KIND_SIP = 3
    PARTICIPANT_KIND_AGENT = 4
    PARTICIPANT_KIND_CONNECTOR = 5
    PARTICIPANT_KIND_BRIDGE = 6


_KIND_FROM_WIRE = {
    models.ParticipantInfo.Kind.STANDARD: ParticipantKind.PARTICIPANT_KIND_STANDARD,
    models.ParticipantInfo.Kind.INGRESS: ParticipantKind.PARTICIPANT_KIND_INGRESS,
    models.ParticipantInfo.Kind.EGRESS: ParticipantKind.PARTICIPANT_KIND_EGRESS,
    models.ParticipantInfo.Kind.SIP: ParticipantKind.PARTICIPANT_KIND_SIP,
    models.ParticipantInfo.Kind.AGENT: ParticipantKind.PARTICIPANT_KIND_AGENT,
}


def participant_kind(wire: int) -> ParticipantKind:
    """Map `ParticipantInfo.kind` to `ParticipantKind`."""
    return _KIND_FROM_WIRE.get(wire, ParticipantKind.PARTICIPANT_KIND_STANDARD)  # type: ignore[call-overload,no-any-return]


class ParticipantState(IntEnum):
    """Join state of a participant; same numbers as the wire."""

    PARTICIPANT_STATE_JOINING = 0
    PARTICIPANT_STATE_JOINED = 1
    PARTICIPANT_STATE_ACTIVE = 2
    PARTICIPANT_STATE_DISCONNECTED = 3


class VideoCodec(IntEnum):
    """Video codec to publish with (only VP8 and H264 are available through aiortc)."""

    VP8 = 0
    H264 = 1
    AV1 = 2
    VP9 = 3
    H265 = 4


class VideoQuality(IntEnum):
    """Simulcast layer quality; same numbers as the wire."""

    VIDEO_QUALITY_LOW = 0
    VIDEO_QUALITY_MEDIUM = 1
    VIDEO_QUALITY_HIGH = 2


class SimulateScenarioKind(IntEnum):
    """Failure scenarios `Room.simulate_scenario` can trigger (for tests)."""

    SIGNAL_RECONNECT = 0
    """Drop the signal WebSocket without a leave: the client resumes."""
    SERVER_LEAVE = 1
    """Ask the server to send a leave (SimulateScenario.server_leave)."""
    FULL_RECONNECT = 2
    """Ask the server for a RECONNECT leave: the client rejoins as a new session."""


@dataclass
class VideoEncoding:
    """Bitrate and frame-rate caps for a published video track."""

    max_bitrate: int = 0
    max_framerate: float = 0.0


@dataclass
class AudioEncoding:
    """Bitrate cap for a published audio track."""

    max_bitrate: int = 0


@dataclass
class TrackPublishOptions:
    """How to publish a track (the fields of `livekit.rtc.TrackPublishOptions` that apply)."""

    source: int = TrackSource.SOURCE_UNKNOWN
    simulcast: bool = False
    video_codec: int = VideoCodec.VP8
    video_encoding: VideoEncoding | None = None
    audio_encoding: AudioEncoding | None = None
    dtx: bool = True
    red: bool = False
    stream: str = ""


@dataclass
class IceServer:
    """A STUN/TURN server for the peer connections."""

    urls: list[str] = field(default_factory=list)
    username: str = ""
    password: str = ""


@dataclass
class RtcConfiguration:
    """Peer-connection settings; empty `ice_servers` means the ones the server sends."""

    ice_servers: list[IceServer] = field(default_factory=list)


@dataclass
class RoomOptions:
    """Connection options; `single_peer_connection` is accepted but always dual-PC here."""

    auto_subscribe: bool = True
    dynacast: bool = False
    adaptive_stream: bool = False
    single_peer_connection: bool | None = None
    connect_timeout: float | None = None
    rtc_config: RtcConfiguration | None = None
    max_reconnect_attempts: int = 10
    client_protocol: int = 1
    """1: RPC over data streams when the peer supports it; 0: RPC v1 packets only."""

"""roost.client: a pure-Python LiveKit client (signalling over aiohttp, WebRTC via aiortc),
shaped like `livekit.rtc` — `Room`, participants, tracks, sources and streams, data packets,
RPC and text/byte streams."""

from .data import DataPacket, SipDTMF, Transcription, TranscriptionSegment
from .events import EventEmitter
from .frames import AudioFrame, AudioResampler, VideoBufferType, VideoFrame, combine_audio_frames
from .media import AudioFrameEvent, AudioStream, VideoFrameEvent, VideoStream
from .participant import (
    LocalParticipant,
    Participant,
    PublishDataError,
    PublishTrackError,
    RemoteParticipant,
    UnpublishTrackError,
)
from .room import Room, RtcStats
from .rpc import RpcError, RpcInvocationData
from .signal import ConnectError
from .sources import AudioSource, VideoSource
from .streams import (
    ByteStreamInfo,
    ByteStreamReader,
    ByteStreamWriter,
    StreamError,
    TextStreamInfo,
    TextStreamReader,
    TextStreamWriter,
)
from .track import (
    LocalAudioTrack,
    LocalTrack,
    LocalTrackPublication,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteTrack,
    RemoteTrackPublication,
    RemoteVideoTrack,
    Track,
    TrackPublication,
)
from .types import (
    AudioEncoding,
    ConnectionQuality,
    ConnectionState,
    DataPacketKind,
    DisconnectReason,
    IceServer,
    ParticipantKind,
    ParticipantState,
    RoomOptions,
    RtcConfiguration,
    SimulateScenarioKind,
    StreamState,
    TrackKind,
    TrackPublishOptions,
    TrackSource,
    VideoCodec,
    VideoEncoding,
    VideoQuality,
)

__all__ = [
    "AudioEncoding", "AudioFrame", "AudioFrameEvent", "AudioResampler", "AudioSource",
    "AudioStream", "ByteStreamInfo", "ByteStreamReader", "ByteStreamWriter", "ConnectError",
    "ConnectionQuality", "ConnectionState", "DataPacket", "DataPacketKind", "DisconnectReason",
    "EventEmitter", "IceServer", "LocalAudioTrack", "LocalParticipant", "LocalTrack",
    "LocalTrackPublication", "LocalVideoTrack", "Participant", "ParticipantKind",
    "ParticipantState", "PublishDataError", "PublishTrackError", "RemoteAudioTrack",
    "RemoteParticipant", "RemoteTrack", "RemoteTrackPublication", "RemoteVideoTrack", "Room",
    "RoomOptions", "RpcError", "RpcInvocationData", "RtcConfiguration", "RtcStats",
    "SimulateScenarioKind", "SipDTMF", "StreamError", "StreamState", "TextStreamInfo",
    "TextStreamReader", "TextStreamWriter", "Track", "TrackKind", "TrackPublication",
    "TrackPublishOptions", "TrackSource", "Transcription", "TranscriptionSegment",
    "UnpublishTrackError", "VideoBufferType", "VideoCodec", "VideoEncoding", "VideoFrame",
    "VideoFrameEvent", "VideoQuality", "VideoSource", "VideoStream", "combine_audio_frames",
]

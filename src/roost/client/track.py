"""Tracks (local ones wrap an aiortc source track, remote ones an aiortc receiver track)
and track publications, shaped like `livekit.rtc`'s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from livekit.protocol import models, rtc

from .sources import AudioSource, AudioSourceTrack, VideoSource, VideoSourceTrack
from .types import StreamState, TrackKind, TrackSource

log = logging.getLogger("roost.client.track")

FrameSink = Callable[[Any], None]


def kind_from_wire(track_type: int) -> TrackKind:
    """`TrackType` (AUDIO 0 / VIDEO 1) → `TrackKind`."""
    if track_type == models.TrackType.AUDIO:
        return TrackKind.KIND_AUDIO
    if track_type == models.TrackType.VIDEO:
        return TrackKind.KIND_VIDEO
    return TrackKind.KIND_UNKNOWN


class Track:
    """A media track: a sid once published or subscribed, a name, a kind and a mute state."""

    def __init__(self, name: str, kind: TrackKind, sid: str = "", muted: bool = False) -> None:
        self._sid = sid
        self._name = name
        self._kind = kind
        self._muted = muted
        self._stream_state = StreamState.STATE_ACTIVE

    @property
    def sid(self) -> str:
        return self._sid

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> TrackKind:
        return self._kind

    @property
    def stream_state(self) -> StreamState:
        return self._stream_state

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def rtc_track(self) -> MediaStreamTrack | None:
        """The underlying aiortc track."""
        return None

    async def get_stats(self) -> list[dict[str, Any]]:
        """RTP statistics of this track's sender or receiver, where aiortc provides them."""
        return []


class LocalTrack(Track):
    """A track this participant publishes."""

    def __init__(self, name: str, kind: TrackKind, rtc_track: AudioSourceTrack | VideoSourceTrack
                 ) -> None:
        super().__init__(name, kind)
        self._rtc_track = rtc_track
        self._on_mute: Callable[[LocalTrack, bool], None] | None = None
        self._sender: Any = None

    @property
    def rtc_track(self) -> MediaStreamTrack:
        return self._rtc_track

    def mute(self) -> None:
        """Send silence (or black) and tell the room the track is muted."""
        self._set_muted(True)

    def unmute(self) -> None:
        """Send the source again and tell the room."""
        self._set_muted(False)

    def _set_muted(self, muted: bool) -> None:
        self._muted = muted
        self._rtc_track.muted = muted
        if self._on_mute is not None:
            self._on_mute(self, muted)

    async def get_stats(self) -> list[dict[str, Any]]:
        if self._sender is None:
            return []
        report = await self._sender.getStats()
        return [vars(stat) for stat in report.values()]


class LocalAudioTrack(LocalTrack):
    """Audio from an `AudioSource`."""

    def __init__(self, name: str, source: AudioSource) -> None:
        super().__init__(name, TrackKind.KIND_AUDIO, AudioSourceTrack(source))
        self.source = source

    @staticmethod
    def create_audio_track(name: str, source: AudioSource) -> LocalAudioTrack:
        """A new audio track fed by `source`."""
        return LocalAudioTrack(name, source)

    def __repr__(self) -> str:
        return f"LocalAudioTrack(sid={self.sid}, name={self.name})"


class LocalVideoTrack(LocalTrack):
    """Video from a `VideoSource`."""

    def __init__(self, name: str, source: VideoSource) -> None:
        super().__init__(name, TrackKind.KIND_VIDEO, VideoSourceTrack(source))
        self.source = source

    @staticmethod
    def create_video_track(name: str, source: VideoSource) -> LocalVideoTrack:
        """A new video track fed by `source`."""
        return LocalVideoTrack(name, source)

    def __repr__(self) -> str:
        return f"LocalVideoTrack(sid={self.sid}, name={self.name})"


class RemoteTrack(Track):
    """A subscribed track: one reader task pulls decoded frames and fans them out to sinks."""

    def __init__(self, info: models.TrackInfo, rtc_track: MediaStreamTrack) -> None:
        super().__init__(info.name, kind_from_wire(info.type), info.sid, info.muted)
        self._rtc_track = rtc_track
        self._sinks: list[FrameSink] = []
        self._ended: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._receiver: Any = None

    @property
    def rtc_track(self) -> MediaStreamTrack:
        return self._rtc_track

    def _add_sink(self, sink: FrameSink, on_end: Callable[[], None]) -> None:
        self._sinks.append(sink)
        self._ended.append(on_end)

    def _remove_sink(self, sink: FrameSink, on_end: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._sinks.remove(sink)
        with contextlib.suppress(ValueError):
            self._ended.remove(on_end)

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                frame = await self._rtc_track.recv()
                for sink in list(self._sinks):
                    try:
                        sink(frame)
                    except Exception:
                        log.exception("frame sink failed on %s", self.sid)
        except MediaStreamError:
            pass
        finally:
            for on_end in list(self._ended):
                on_end()

    def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        else:
            for on_end in list(self._ended):
                on_end()

    async def get_stats(self) -> list[dict[str, Any]]:
        if self._receiver is None:
            return []
        report = await self._receiver.getStats()
        return [vars(stat) for stat in report.values()]


class RemoteAudioTrack(RemoteTrack):
    """A subscribed audio track."""

    def __repr__(self) -> str:
        return f"RemoteAudioTrack(sid={self.sid}, name={self.name})"


class RemoteVideoTrack(RemoteTrack):
    """A subscribed video track."""

    def __repr__(self) -> str:
        return f"RemoteVideoTrack(sid={self.sid}, name={self.name})"


class TrackPublication:
    """What the room knows about a published track (from its `TrackInfo`)."""

    def __init__(self, info: models.TrackInfo) -> None:
        self._info = info
        self._track: Track | None = None

    @property
    def track(self) -> Track | None:
        return self._track

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def kind(self) -> TrackKind:
        return kind_from_wire(self._info.type)

    @property
    def source(self) -> TrackSource:
        try:
            return TrackSource(self._info.source)
        except ValueError:
            return TrackSource.SOURCE_UNKNOWN

    @property
    def simulcasted(self) -> bool:
        return self._info.simulcast

    @property
    def width(self) -> int:
        return self._info.width

    @property
    def height(self) -> int:
        return self._info.height

    @property
    def mime_type(self) -> str:
        return self._info.mime_type

    @property
    def muted(self) -> bool:
        return self._info.muted

    @property
    def encryption_type(self) -> int:
        return self._info.encryption


class LocalTrackPublication(TrackPublication):
    """A track this participant published."""

    def __init__(self, info: models.TrackInfo, track: LocalTrack) -> None:
        super().__init__(info)
        self._track = track
        self._first_subscription: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future())
        self._options: Any = None  # the TrackPublishOptions it was published with

    @property
    def track(self) -> LocalTrack | None:
        return self._track  # type: ignore[return-value]

    async def wait_for_subscription(self) -> None:
        """Return once a remote participant subscribed to this track."""
        await asyncio.shield(self._first_subscription)

    def __repr__(self) -> str:
        return f"LocalTrackPublication(sid={self.sid}, name={self.name}, kind={self.kind.name})"


class RemoteTrackPublication(TrackPublication):
    """A track another participant published; subscribe, enable or size it."""

    def __init__(self, info: models.TrackInfo, participant_sid: str,
                 send: Callable[[rtc.SignalRequest], None]) -> None:
        super().__init__(info)
        self._participant_sid = participant_sid
        self._send = send
        self._subscribed = False
        self._desired = True
        self._enabled = True

    @property
    def track(self) -> RemoteTrack | None:
        return self._track  # type: ignore[return-value]

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_subscribed(self, subscribed: bool) -> None:
        """Ask the server to (un)subscribe this participant to the track."""
        self._desired = subscribed
        req = rtc.SignalRequest()
        req.subscription.subscribe = subscribed
        tracks = req.subscription.participant_tracks.add()
        tracks.participant_sid = self._participant_sid
        tracks.track_sids.append(self.sid)
        req.subscription.track_sids.append(self.sid)
        self._send(req)

    def set_enabled(self, enabled: bool) -> None:
        """Pause (False) or resume forwarding of a subscribed track."""
        self._enabled = enabled
        self._settings(disabled=not enabled)

    def set_video_quality(self, quality: int) -> None:
        """Prefer a simulcast layer (VideoQuality)."""
        self._settings(quality=quality)

    def set_video_dimensions(self, width: int, height: int) -> None:
        """Tell the server the size the track is shown at (picks the layer)."""
        self._settings(width=width, height=height)

    def _settings(self, **fields: Any) -> None:
        req = rtc.SignalRequest()
        req.track_setting.track_sids.append(self.sid)
        req.track_setting.disabled = not self._enabled
        for key, value in fields.items():
            setattr(req.track_setting, key, value)
        self._send(req)

    def __repr__(self) -> str:
        return f"RemoteTrackPublication(sid={self.sid}, name={self.name}, kind={self.kind.name})"

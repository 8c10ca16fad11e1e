"""The avatar participant: joins a LiveKit room through `roost.client` (so any LiveKit server
will do), publishes a 48 kHz audio track and a 512x512 25 fps video track, and runs the playout
that keeps them in step."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import numpy as np

from roost import client as rc
from roost.avatar.animation import Animator
from roost.avatar.audio import OUTPUT_RATE
from roost.avatar.faces import Face
from roost.avatar.playout import Playout
from roost.avatar.renderer import HEIGHT, WIDTH, Renderer, face_layers

log = logging.getLogger("roost.avatar")

AUDIO_QUEUE_MS = 1000  # AudioSource bound; the playout keeps ~60 ms in it
AUDIO_TRACK = "avatar-audio"
VIDEO_TRACK = "avatar-video"
MEDIA_STREAM = "avatar"


class _SourceAudio:
    """The playout's audio output over a `roost.client.AudioSource`."""

    def __init__(self, source: rc.AudioSource) -> None:
        self.source = source

    async def write(self, pcm: np.ndarray) -> None:
        await self.source.capture_frame(rc.AudioFrame(pcm.tobytes(), OUTPUT_RATE, 1, pcm.size))

    def queued(self) -> float:
        return self.source.queued_duration

    def clear(self) -> None:
        self.source.clear_queue()


class _SourceVideo:
    """The playout's video output over a `roost.client.VideoSource`."""

    def __init__(self, source: rc.VideoSource) -> None:
        self.source = source

    def write(self, i420: np.ndarray) -> None:
        self.source.capture_frame(rc.VideoFrame(WIDTH, HEIGHT, rc.VideoBufferType.I420, i420.data))


class Avatar:
    """One talking face in one room; `create`, then `join`, then `aclose`."""

    def __init__(self, face: Face, renderer: Renderer, *, handle_silence: bool = True,
                 start_frame: int = 0, seed: int = 0) -> None:
        self.face = face
        self.audio_source = rc.AudioSource(OUTPUT_RATE, 1, queue_size_ms=AUDIO_QUEUE_MS)
        self.video_source = rc.VideoSource(WIDTH, HEIGHT)
        self.playout = Playout(renderer, Animator(seed, start_frame),
                               _SourceAudio(self.audio_source), _SourceVideo(self.video_source),
                               handle_silence=handle_silence)
        self.room = rc.Room()
        self.on_participant_connected: Callable[[str], None] = lambda identity: None
        self.on_participant_disconnected: Callable[[str], None] = lambda identity: None
        self.on_disconnected: Callable[[], None] = lambda: None
        self.on_failed: Callable[[str], None] = lambda reason: None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.room.on("participant_connected", self._participant_connected)
        self.room.on("participant_disconnected", self._participant_disconnected)
        self.room.on("disconnected", self._disconnected)

    @classmethod
    async def create(cls, face: Face, *, handle_silence: bool = True, start_frame: int = 0,
                     seed: int = 0) -> Avatar:
        """An avatar for `face`; its still layers are painted off the event loop (once)."""
        await asyncio.to_thread(face_layers, face)
        return cls(face, Renderer(face), handle_silence=handle_silence,
                   start_frame=start_frame, seed=seed)

    @property
    def identity(self) -> str:
        return self.room.local_participant.identity if self.room.isconnected() else ""

    def remote_identities(self) -> list[str]:
        return list(self.room.remote_participants) if self.room.isconnected() else []

    async def join(self, url: str, token: str) -> None:
        """Connect, publish audio and video, start the playout clock."""
        await self.room.connect(url, token, rc.RoomOptions(auto_subscribe=False))
        local = self.room.local_participant
        audio = rc.LocalAudioTrack.create_audio_track(AUDIO_TRACK, self.audio_source)
        video = rc.LocalVideoTrack.create_video_track(VIDEO_TRACK, self.video_source)
        # one `stream` for both: servers that map it into the msid let receivers lip-sync them
        await local.publish_track(audio, rc.TrackPublishOptions(
            source=rc.TrackSource.SOURCE_MICROPHONE, dtx=False, stream=MEDIA_STREAM))
        await local.publish_track(video, rc.TrackPublishOptions(
            source=rc.TrackSource.SOURCE_CAMERA, video_codec=rc.VideoCodec.VP8,
            stream=MEDIA_STREAM))
        if not self._closed:
            self._task = asyncio.create_task(self.playout.run(), name="avatar-playout")
            self._task.add_done_callback(self._playout_ended)
        log.info("avatar joined and published", extra={"room": self.room.name,
                                                       "participant": local.identity})

    def _playout_ended(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None and not self._closed:
            log.error("avatar playout failed", exc_info=error, extra={"room": self.room.name})
            self.on_failed(f"playout failed: {error!r}")

    def _participant_connected(self, participant: rc.RemoteParticipant) -> None:
        self.on_participant_connected(participant.identity)

    def _participant_disconnected(self, participant: rc.RemoteParticipant) -> None:
        self.on_participant_disconnected(participant.identity)

    def _disconnected(self, reason: int) -> None:
        if not self._closed:
            self.on_disconnected()

    async def aclose(self) -> None:
        """Stop the clock, leave the room, release the sources (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.playout.stop()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.room.disconnect(), 5.0)
        await self.audio_source.aclose()
        await self.video_source.aclose()

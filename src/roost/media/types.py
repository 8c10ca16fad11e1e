"""The media layer's contract with the layers above it: what a peer connection, an
incoming track and a forwarded subscription look like from the outside."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class MediaInfo:
    """What the publisher's offer says about one incoming media section."""

    mid: str
    kind: str  # "audio" | "video"
    track_id: str  # second token of a=msid (the client's cid)
    stream_id: str = ""
    mime_type: str = ""  # e.g. "audio/opus", "video/VP8" (the first negotiated codec)
    rids: list[str] = field(default_factory=list)  # simulcast layers, in offer order
    ssrcs: list[int] = field(default_factory=list)


class UpTrack(Protocol):
    """Encoded media arriving from a publisher for one track (media layer)."""

    kind: str
    mid: str
    mime_type: str
    speaking: bool  # room: the publisher is an active speaker (its video is allocated first)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (throttled)."""

    @property
    def audio_level(self) -> float:
        """Smoothed linear level 0..1 for active-speaker detection (0 for video)."""
        ...

    @property
    def loss_fraction(self) -> float:
        """Recent fraction of the publisher's packets lost on the way in (0..1)."""
        ...


PRIORITY_SCREEN_SHARE = 2  # allocation priority of a screen share (higher goes first)
PRIORITY_SPEAKER = 1  # ... added to an active speaker's video


class DownTrack(Protocol):
    """One subscription's outgoing RTP stream on a subscriber transport (media layer)."""

    track_sid: str
    # media → room: the track was paused (False) / resumed (True) for lack of bandwidth
    on_stream_state: Callable[[bool], None] | None
    allow_pause: bool  # may bandwidth pause it (else it stays on the lowest layer)
    priority: int  # in bandwidth allocation: PRIORITY_SCREEN_SHARE, else 0

    @property
    def mid(self) -> str:
        """The subscriber-side mid, known once the offer carrying it was built ('' before)."""
        ...

    def set_enabled(self, enabled: bool) -> None:
        """Stop/resume forwarding (subscriber disabled it, or the publisher muted)."""

    def set_max_quality(self, spatial: int) -> None:
        """Highest simulcast layer (0 low, 1 medium, 2 high) this subscriber wants."""


class Transport(Protocol):
    """A peer connection as the room layer sees it (media.transport.PeerTransport)."""

    on_track: Callable[[MediaInfo, UpTrack], None] | None
    on_track_ended: Callable[[str], None] | None  # mid of a section the publisher removed

    @property
    def connected(self) -> bool: ...

    def send_data(self, label: str, payload: bytes) -> bool: ...

    def add_track(self, up: UpTrack, *, track_sid: str, stream_id: str) -> DownTrack:
        """Subscriber side: forward `up` on a new sendonly section (in the next offer)."""
        ...

    def remove_track(self, down: DownTrack) -> None:
        """Subscriber side: stop forwarding; the section goes inactive in the next offer."""

    async def close(self) -> None: ...

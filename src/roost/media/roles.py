"""The SFU's two roles: a published track received once (TrackReceiver), and each
subscription it is sent on (TrackSender). `MediaUpTrack` and `SubscriberDownTrack` play
them; each sees the other, and the RTP session its senders, only through these."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from roost.media.allocator import VideoDemand
from roost.media.extensions import ExtensionRewriter
from roost.media.forward import Forwarder, SenderReportStore
from roost.media.sdp import Codec

Send = Callable[[bytes | bytearray], None]


class TrackReceiver(Protocol):
    """A published track, as the subscriptions forwarding it use it (MediaUpTrack)."""

    kind: str
    codecs: list[Codec]  # the publisher's, primary first
    mime_type: str
    clock_rate: int
    red: bool  # audio arrives as RED (RFC 2198) around Opus
    extensions: dict[str, int]  # header-extension URI → the publisher's id
    clocks: SenderReportStore  # the publisher's sender reports, per layer
    speaking: bool  # the publisher is an active speaker: its video comes first in allocation

    @property
    def simulcast(self) -> bool:
        """Whether the track arrives in more than one spatial layer."""
        ...

    def available_layers(self, now: float) -> list[int]:
        """Spatial layers that delivered media recently, lowest first."""
        ...

    def layer_bitrates(self) -> dict[int, float]:
        """Measured bits/s of each spatial layer."""
        ...

    def request_keyframe(self, layer: int | None = None) -> None:
        """Ask the publisher for a keyframe of `layer` (every layer when None)."""
        ...

    def nack_upstream(self, layer: int, seqs: list[int], now: float) -> None:
        """Ask the publisher again for packets a subscriber missed and roost never had."""
        ...

    def rewriter(self, mapping: dict[int, int], abs_send_time_id: int) -> ExtensionRewriter:
        """A header-extension rewriter for a subscriber's extension ids (shared)."""
        ...

    def attach(self, sender: TrackSender) -> None:
        """Start forwarding to `sender` (once it has a forwarder)."""
        ...

    def detach(self, sender: TrackSender) -> None:
        """Stop forwarding to `sender`."""
        ...

    def refresh(self) -> None:
        """A sender was enabled, disabled or bound: rebuild the forwarding list."""
        ...


class TrackSender(Protocol):
    """One subscription of a track, as its receiver and the subscriber's RTP session use it
    (SubscriberDownTrack)."""

    kind: str
    up: TrackReceiver  # the published track it forwards
    ssrc: int  # the media SSRC roost sends it with
    rtx_ssrc: int  # 0 without RTX
    forwarder: Forwarder | None  # None until the subscriber's answer is applied
    send: Send  # to the subscriber's connection
    bandwidth_share: float | None  # bits/s it may use; None: no estimate

    @property
    def forwarding(self) -> bool:
        """Enabled, bound and not removed: packets should be forwarded."""
        ...

    def demand(self, now: float) -> VideoDemand:
        """What this video asks of the bandwidth (layer rates the client allows, priority)."""
        ...

    def confirm_upgrade(self) -> None:
        """A probe got through: a pending layer raise may happen without its hold."""
        ...

    def select_layer(self, now: float) -> None:
        """Choose the forwarded spatial layer again (share or max quality changed)."""
        ...

    def on_nack(self, lost: list[int], now: float, max_bytes: float = ...) -> int:
        """The subscriber reported these sequence numbers lost: retransmit what the cache
        has, at most `max_bytes`; returns the bytes resent."""
        ...

    def on_pli(self) -> None:
        """The subscriber asked for a keyframe."""
        ...

    def sync_stats(self) -> None:
        """Copy the forwarder's counters into the metrics."""
        ...

    def summary(self) -> str:
        """Its counters, for the log line when the connection ends."""
        ...

    def close(self) -> None:
        """Stop forwarding for good."""
        ...

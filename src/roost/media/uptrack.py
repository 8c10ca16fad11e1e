"""MediaUpTrack: one published media section, received once and fanned out to down-tracks.

Per publisher packet (`receive`): inspect once, account reception statistics, the upstream
NACK generator and the audio level, then hand the same plaintext to every forwarding
down-track (`forward.Forwarder.forward`) and send what comes back on the subscriber's
connection. Nothing on that path logs, allocates per subscriber beyond the rewritten packet,
or touches a dict. RTCP towards the publisher (NACK, PLI, RR, REMB) is built here and sent
by the publisher's `RtpSession`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from roost.media.audiolevel import AudioLevel
from roost.media.codecs import mime_of
from roost.media.extensions import ExtensionRewriter
from roost.media.forward import (
    CODEC_OPUS,
    CODEC_RED,
    Forwarder,
    SenderReportStore,
    codec_of,
    inspect,
)
from roost.media.nack import NackGenerator, PliThrottle, ReceptionStats
from roost.media.roles import TrackSender
from roost.media.rtcp import RtcpReportBlock, RtcpSenderReport, build_nack, build_pli
from roost.media.rtp import (
    EXT_AUDIO_LEVEL,
    opus_duration_ms,
    parse_header,
    read_audio_level,
    red_primary,
    unwrap_rtx,
)
from roost.media.sdp import Codec
from roost.telemetry import MediaStats

if TYPE_CHECKING:
    from roost.media.rtpsession import RtpSession

Send = Callable[[bytes | bytearray], None]

# Simulcast rids LiveKit clients use, and the spatial layer each one is.
RID_LAYERS = {"q": 0, "h": 1, "f": 2}
LAYER_TIMEOUT = 1.0  # a layer silent this long is treated as stopped
UPSTREAM_NACK_INTERVAL = 0.1  # a sequence number is NACKed upstream at most this often
RATE_WINDOW = 1.0  # seconds of received bytes a layer's bitrate is measured over
RATE_SAMPLE = 0.25  # how often the byte counters are sampled into that window


def layer_indexes(rids: list[str]) -> list[int]:
    """Spatial layer of each rid: q/h/f by name, anything else by offer order."""
    if rids and all(r in RID_LAYERS for r in rids):
        return [RID_LAYERS[r] for r in rids]
    return list(range(len(rids)))


class UpLayer:
    """One RTP stream of a published track: a simulcast layer, or the only stream."""

    __slots__ = ("bitrate", "forwarded_nacks", "index", "last_at", "nack", "octets", "packets",
                 "rid", "rtx_ssrc", "samples", "ssrc", "stats", "track")

    def __init__(self, track: MediaUpTrack, index: int, rid: str = "") -> None:
        self.track = track
        self.index = index
        self.rid = rid
        self.ssrc = 0
        self.rtx_ssrc = 0
        self.stats = ReceptionStats(track.clock_rate)
        self.nack = NackGenerator()
        self.packets = 0
        self.octets = 0
        self.last_at = 0.0
        self.forwarded_nacks: dict[int, float] = {}  # seq -> when a subscriber's NACK went up
        self.samples: deque[tuple[float, int]] = deque()  # (when, octets) over RATE_WINDOW
        self.bitrate = 0.0  # bits/s received over the last RATE_WINDOW

    def sample_rate(self, now: float) -> None:
        """Record the byte counter and update `bitrate` (sliding RATE_WINDOW, no hot-path cost)."""
        samples = self.samples
        samples.append((now, self.octets))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        t0, o0 = samples[0]
        self.bitrate = (self.octets - o0) * 8 / (now - t0) if now > t0 else 0.0

    def on_rtp(self, plain: bytes) -> None:
        """Route target for this layer's SSRC."""
        self.track.receive(plain, self, time.monotonic())

    def on_sender_report(self, sr: RtcpSenderReport, now: float) -> None:
        self.track.clocks.update(self.index, sr.ntp_timestamp, sr.rtp_timestamp, now)
        self.stats.on_sender_report(sr.ntp_timestamp, now)


class RtxRoute:
    """Route target for a layer's RTX SSRC: unwrap (RFC 4588) and receive as the original."""

    __slots__ = ("layer",)

    def __init__(self, layer: UpLayer) -> None:
        self.layer = layer

    def on_rtp(self, plain: bytes) -> None:
        layer = self.layer
        track = layer.track
        if not layer.ssrc:
            return
        try:
            h = parse_header(plain)
            if h.payload_end - h.payload_offset < 2:
                track.padding_in += 1  # RTX padding (bandwidth probing): nothing to forward
                return
            original = unwrap_rtx(plain, h, layer.ssrc, track.payload_type)
        except ValueError:
            track.malformed += 1
            return
        track.rtx_in += 1
        track.receive(original, layer, time.monotonic(), True)

    def on_sender_report(self, sr: RtcpSenderReport, now: float) -> None:
        return None


class MediaUpTrack:
    """Encoded media of one publisher section (`media.types.UpTrack` for the room, and
    `roles.TrackReceiver` for its subscriptions)."""

    def __init__(
        self,
        session: RtpSession,
        *,
        kind: str,
        mid: str,
        track_id: str,
        stream_id: str,
        codecs: list[Codec],
        extensions: dict[str, int],
        rids: list[str] | None = None,
    ) -> None:
        if not codecs:
            raise ValueError("an up-track needs a codec")
        self.session = session
        self.kind = kind
        self.mid = mid
        self.track_id = track_id
        self.stream_id = stream_id
        self.codecs = codecs
        primary = codecs[0]
        self.mime_type = mime_of(kind, primary)
        self.payload_type = primary.payload_type
        self.clock_rate = primary.clock_rate or (48000 if kind == "audio" else 90000)
        self.codec = codec_of(self.mime_type)
        self.red = self.codec == CODEC_RED
        self._inspect_codec = CODEC_OPUS if self.red else self.codec
        rtx = next((c for c in codecs if c.name.lower() == "rtx"), None)
        self.rtx_payload_type = rtx.payload_type if rtx is not None else -1
        self.extensions = dict(extensions)  # uri -> publisher's id
        self._audio_level_id = extensions.get(EXT_AUDIO_LEVEL, 0) if kind == "audio" else 0
        self.rids = list(rids or [])
        indexes = layer_indexes(self.rids) or [0]
        self.layers = [UpLayer(self, i, r) for i, r in zip(indexes, self.rids or [""],
                                                            strict=False)]
        self.clocks = SenderReportStore()
        self.speaking = False  # room: the publisher is an active speaker (allocation priority)
        self.pli = PliThrottle()
        self._level = AudioLevel()
        self.downs: list[TrackSender] = []
        self._sinks: list[tuple[Forwarder, Send]] = []
        self._rewriters: dict[tuple[object, ...], ExtensionRewriter] = {}
        self.closed = False
        self._rate_at = 0.0
        # plain counters: `stats` is summed into /metrics (packets/bytes in, NACKs and PLIs
        # sent upstream); the rest are for logs and tests
        self.stats = MediaStats(kind)
        self.rtx_in = 0
        self.padding_in = 0
        self.rtx_duplicates = 0  # RTX of packets that had arrived already (uplink probing)
        self.malformed = 0
        self.other_payload = 0

    # -- the room's view (media.types.UpTrack) ------------------------------------------
    @property
    def audio_level(self) -> float:
        if not self._audio_level_id:
            return 0.0
        return self._level.get_level(time.monotonic())[0]

    @property
    def loss_fraction(self) -> float:
        return max((la.stats.loss_fraction for la in self.layers if la.packets), default=0.0)

    def request_keyframe(self, layer: int | None = None) -> None:
        """PLI upstream for `layer` (every layer when None), throttled per layer."""
        if self.kind != "video" or self.closed:
            return
        now = time.monotonic()
        for la in self.layers:
            if (layer is None or la.index == layer) and la.ssrc and self.pli.allow(la.index, now):
                self.session.send_rtcp(build_pli(self.session.ssrc, la.ssrc))
                self.stats.plis_out += 1

    def nack_upstream(self, layer: int, seqs: list[int], now: float) -> None:
        """Ask the publisher for packets a subscriber missed and roost never had."""
        la = self.layer(layer)
        if la is None or not la.ssrc:
            return
        recent = la.forwarded_nacks
        due = [s for s in seqs if now - recent.get(s, -1.0) >= UPSTREAM_NACK_INTERVAL]
        if not due:
            return
        if len(recent) > 256:
            recent.clear()
        for s in due:
            recent[s] = now
        self.session.send_rtcp(build_nack(self.session.ssrc, la.ssrc, due))
        self.stats.nacks_out += 1

    @property
    def packets_in(self) -> int:
        return self.stats.packets_in

    @property
    def nacks_sent(self) -> int:
        return self.stats.nacks_out

    @property
    def plis_sent(self) -> int:
        return self.stats.plis_out

    # -- layers ------------------------------------------------------------------------
    def layer(self, index: int) -> UpLayer | None:
        for la in self.layers:
            if la.index == index:
                return la
        return None

    def layer_for_rid(self, rid: str | None) -> UpLayer | None:
        if not rid:
            return self.layers[0] if len(self.layers) == 1 else None
        for la in self.layers:
            if la.rid == rid:
                return la
        return None

    @property
    def simulcast(self) -> bool:
        return len(self.layers) > 1

    def available_layers(self, now: float) -> list[int]:
        """Spatial layers that delivered media recently, lowest first."""
        return sorted(la.index for la in self.layers
                      if la.packets and now - la.last_at < LAYER_TIMEOUT)

    def layer_bitrates(self) -> dict[int, float]:
        """Measured bits/s of each spatial layer (over the last ~RATE_WINDOW)."""
        return {la.index: la.bitrate for la in self.layers}

    # -- hot path ----------------------------------------------------------------------
    def receive(self, plain: bytes, layer: UpLayer, now: float, repaired: bool = False) -> None:
        """One decrypted publisher packet of `layer`: account it and forward it.

        `repaired`: it came over RTX. Neither that nor padding counts towards the layer's
        bitrate, which the allocator compares with subscribers' bandwidth: libwebrtc probes
        its uplink with padding or by resending recent packets over RTX, which would make a
        layer look several times costlier than what a subscriber receives of it."""
        try:
            info = inspect(plain, self._inspect_codec, layer.index)
        except ValueError:
            self.malformed += 1
            return
        if info.payload_type != self.payload_type:
            self.other_payload += 1
            return
        seq = info.sequence_number
        if repaired and not layer.nack.needed(seq) and seq not in layer.forwarded_nacks:
            self.rtx_duplicates += 1  # not missing: forwarding it again only adds load
            return
        layer.stats.update(seq, info.timestamp, now)
        layer.nack.push(seq, now)
        layer.packets += 1
        if not (repaired or info.padding_only):  # media only (padding is uplink probing)
            layer.octets += len(plain)
        layer.last_at = now
        stats = self.stats
        stats.packets_in += 1
        stats.bytes_in += info.payload_end - info.payload_offset
        if self._audio_level_id:
            level = read_audio_level(plain, info, self._audio_level_id)
            if level >= 0:
                off, end = info.payload_offset, info.payload_end
                try:
                    if self.red:
                        _, off, end = red_primary(plain, off, end)
                    duration = opus_duration_ms(plain, off, end)
                except ValueError:
                    duration = 0.0
                self._level.observe(level, duration or 20.0, now)
        for dt, send in self._sinks:
            out = dt.forward(plain, info, now)
            if out is not None:
                send(out)

    # -- down-tracks --------------------------------------------------------------------
    def rewriter(self, mapping: dict[int, int], abs_send_time_id: int) -> ExtensionRewriter:
        """A header-extension rewriter, shared by down-tracks with the same id mapping."""
        key = (tuple(sorted(mapping.items())), abs_send_time_id)
        rw = self._rewriters.get(key)
        if rw is None:
            rw = self._rewriters[key] = ExtensionRewriter(mapping, abs_send_time_id)
        return rw

    def attach(self, down: TrackSender) -> None:
        if self.closed:
            return
        if down not in self.downs:
            self.downs.append(down)
        self.refresh()

    def detach(self, down: TrackSender) -> None:
        if down in self.downs:
            self.downs.remove(down)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the list the hot path iterates (after enable/disable/bind/remove)."""
        self._sinks = [(d.forwarder, d.send) for d in self.downs
                       if d.forwarder is not None and d.forwarding]

    # -- periodic RTCP -----------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Every ~20 ms: NACK upstream gaps; keyframes for down-tracks waiting for one."""
        session = self.session
        if now - self._rate_at >= RATE_SAMPLE:
            self._rate_at = now
            for la in self.layers:
                la.sample_rate(now)
        for la in self.layers:
            if la.ssrc and la.nack.outstanding:
                pkt = la.nack.build(session.ssrc, la.ssrc, now)
                if pkt is not None:
                    session.send_rtcp(pkt)
                    self.stats.nacks_out += 1
        if self.kind == "video":
            for dt, _ in self._sinks:
                want = dt.keyframe_request(now)
                if want is not None:
                    self.request_keyframe(want)

    def report_blocks(self, now: float) -> list[RtcpReportBlock]:
        return [la.stats.report_block(la.ssrc, now) for la in self.layers if la.packets]

    def media_ssrcs(self) -> list[int]:
        return [la.ssrc for la in self.layers if la.ssrc]

    def close(self) -> None:
        """The publisher's section ended: stop forwarding (down-tracks stay until removed)."""
        self.closed = True
        self._sinks = []
        self.stats.close()

"""SubscriberDownTrack: one subscription's sendonly section and its forwarding state.

Created by `PeerTransport.add_track`; its m-line is built by the next `create_offer`
(`offer_section`), and forwarding starts once the subscriber's answer says which codecs and
header extensions it accepted (`bind`). The packet munging itself is `forward.Forwarder`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Callable

from roost.media.allocator import KEEP, PAUSE, LayerAllocator, VideoDemand
from roost.media.codecs import (
    FORWARDED_EXTENSIONS,
    SUBSCRIBE_EXTENSIONS,
    PayloadTypes,
    answer_subscribe_codecs,
    subscribe_codecs,
)
from roost.media.forward import CODEC_OPUS, CODEC_RED, Forwarder, codec_of
from roost.media.roles import Send, TrackReceiver
from roost.media.rtp import EXT_ABS_SEND_TIME, EXT_MID, EXT_TRANSPORT_CC
from roost.media.sdp import Codec, Extmap, MediaSection
from roost.media.sections import DISCARD
from roost.media.types import PRIORITY_SPEAKER
from roost.telemetry import MediaStats

log = logging.getLogger(__name__)

PROTO = "UDP/TLS/RTP/SAVPF"


def random_ssrc(taken: set[int]) -> int:
    while True:
        ssrc = secrets.randbits(32)
        if ssrc and ssrc not in taken:
            return ssrc


class SubscriberDownTrack:
    """A published track forwarded on one subscriber connection (`media.types.DownTrack` for
    the room, `roles.TrackSender` for the up-track and the RTP session)."""

    def __init__(
        self,
        send: Send,
        up: TrackReceiver,
        *,
        track_sid: str,
        stream_id: str,
        ssrc: int,
        rtx_ssrc: int,
        cname: str,
    ) -> None:
        self.up = up
        self.kind = up.kind
        self.track_sid = track_sid
        self.stream_id = stream_id
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.cname = cname
        self.section: MediaSection | None = None
        self.forwarder: Forwarder | None = None
        self.send = send
        self.enabled = True
        self.removed = False
        self.rejected = False
        self.offered_inactive = False  # an offer carried this section as inactive
        self.inactive_acked = False  # ...and the subscriber answered it: the mid is reusable
        self.max_quality = 2
        # Bandwidth (protocol notes §9.6): the session sets `bandwidth_share` (bits/s this
        # track may use, None without an estimate); the allocator picks the layer it allows.
        self.bandwidth_share: float | None = None
        self.allocator = LayerAllocator()
        self.priority = 0  # room: allocator.PRIORITY_SCREEN_SHARE for a screen share
        self.paused = False
        self.allow_pause = False  # room: may bandwidth pause this track (else: lowest layer)
        # rtc.congestion_control.enabled: offer transport-cc (stamped by the RtpSession)
        self.transport_cc = False
        self.on_stream_state: Callable[[bool], None] | None = None  # room: True = ACTIVE
        self.retransmitted = 0
        # summed into /metrics: NACKs/PLIs from the subscriber, packets/bytes forwarded
        # (copied from the forwarder's own counters by `sync_stats`, not per packet)
        self.stats = MediaStats(up.kind)

    # -- media.types.DownTrack ----------------------------------------------------------
    @property
    def mid(self) -> str:
        return self.section.mid or "" if self.section is not None else ""

    @property
    def forwarding(self) -> bool:
        return self.enabled and not self.removed and not self.rejected

    def set_enabled(self, enabled: bool) -> None:
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if self.forwarder is not None:
            self.forwarder.set_muted(not enabled)
        self.up.refresh()
        if enabled and not self.paused:
            self.up.request_keyframe(self.target_layer())

    def set_max_quality(self, spatial: int) -> None:
        self.max_quality = max(0, min(2, spatial))
        self.select_layer(time.monotonic())

    # -- simulcast ---------------------------------------------------------------------
    def target_layer(self) -> int | None:
        return self.forwarder.target_layer if self.forwarder is not None else None

    def demand(self, now: float) -> VideoDemand:
        """What this video asks of the subscriber's bandwidth: the measured rates of the
        arriving layers `max_quality` allows, and its priority (screen share, speaker)."""
        up = self.up
        arriving = up.available_layers(now)
        layers = [la for la in arriving if la <= self.max_quality] or arriving[:1]
        rates = up.layer_bitrates()
        priority = self.priority + (PRIORITY_SPEAKER if up.speaking else 0)
        return VideoDemand(priority, [rates.get(la, 0.0) for la in layers], self.track_sid)

    def confirm_upgrade(self) -> None:
        self.allocator.confirm()

    def select_layer(self, now: float) -> None:
        """Forward the best arriving layer within `max_quality` and the bandwidth share."""
        forwarder = self.forwarder
        if forwarder is None or self.kind != "video":
            return
        up = self.up
        choice = self.allocator.choose(
            up.available_layers(now), up.layer_bitrates(), self.bandwidth_share,
            max_quality=self.max_quality, allow_pause=self.allow_pause, paused=self.paused,
            simulcast=up.simulcast, now=now)
        if choice == KEEP:
            return
        if choice == PAUSE:
            self._set_paused(True)
            return
        resumed = self._set_paused(False)
        if choice != forwarder.target_layer or resumed:
            forwarder.set_target(choice)
            up.request_keyframe(choice)

    def _set_paused(self, paused: bool) -> bool:
        """Pause/resume for bandwidth; tells the room (StreamStateUpdate). True if changed."""
        if paused == self.paused or self.forwarder is None:
            return False
        self.paused = paused
        if paused:
            self.forwarder.set_target(None)
        log.info("%s %s for bandwidth (share %s bps)", self.track_sid,
                 "paused" if paused else "resumed", self.bandwidth_share)
        callback = self.on_stream_state
        if callback is not None:
            callback(not paused)
        return True

    # -- negotiation -------------------------------------------------------------------
    def offer_section(self, mid: str, table: PayloadTypes) -> MediaSection:
        """The sendonly m-line carrying this track (first offered in the next offer)."""
        codecs = self._feedback(subscribe_codecs(self.kind, self.up.codecs, table))
        extmaps = [Extmap(i, uri) for uri, i in SUBSCRIBE_EXTENSIONS[self.kind]
                   if uri != EXT_TRANSPORT_CC or self.transport_cc]
        self.section = self._section(mid, codecs, extmaps)
        return self.section

    def answer_section(self, offer: MediaSection) -> MediaSection | None:
        """Single PC: answer the client's recvonly `offer` sendonly with this track, and start.

        Payload types and header-extension ids are the offer's. None when the section
        offers no codec this track can be forwarded in.
        """
        codecs = self._feedback(answer_subscribe_codecs(self.kind, self.up.codecs, offer))
        if not codecs:
            return None
        wanted = {uri for uri, _ in SUBSCRIBE_EXTENSIONS[self.kind]
                  if uri != EXT_TRANSPORT_CC or self.transport_cc}
        extmaps = [Extmap(e.id, e.uri) for e in offer.extmaps if e.uri in wanted]
        self.section = self._section(offer.mid or "", codecs, extmaps)
        # What the client will receive is exactly this answer: bind to it as if accepted.
        self.bind(dataclasses.replace(self.section, direction="recvonly"))
        return self.section

    def _feedback(self, codecs: list[Codec]) -> list[Codec]:
        """Without congestion control the subscriber is not asked for TWCC feedback."""
        if not self.transport_cc:
            for c in codecs:
                c.rtcp_fb = [f for f in c.rtcp_fb if f != "transport-cc"]
        return codecs

    def _section(self, mid: str, codecs: list[Codec], extmaps: list[Extmap]) -> MediaSection:
        msid = f"{self.stream_id} {self.track_sid}"
        ssrcs: list[tuple[int, str, str | None]] = []
        groups: list[tuple[str, list[int]]] = []
        if self.kind == "video" and self.rtx_ssrc:
            groups.append(("FID", [self.ssrc, self.rtx_ssrc]))
            sources = [self.ssrc, self.rtx_ssrc]
        else:
            sources = [self.ssrc]
        for s in sources:
            ssrcs += [(s, "cname", self.cname), (s, "msid", msid)]
        return MediaSection(
            kind=self.kind,
            port=9,
            proto=PROTO,
            fmt=[str(c.payload_type) for c in codecs],
            connection=DISCARD,
            mid=mid,
            direction="sendonly",
            rtcp_mux=True,
            rtcp_rsize=True,
            msid=[(self.stream_id, self.track_sid)],
            codecs=codecs,
            extmaps=extmaps,
            ssrcs=ssrcs,
            ssrc_groups=groups,
        )

    def deactivate(self) -> None:
        """The track was removed: its section goes inactive in the next offer."""
        s = self.section
        if s is not None:
            s.direction = "inactive"
            s.msid = []
            s.ssrcs = []
            s.ssrc_groups = []

    def bind(self, answer: MediaSection) -> None:
        """Apply the subscriber's answer for this section: start forwarding what it accepted."""
        if self.forwarder is not None or self.section is None or self.removed:
            return
        if answer.port == 0 or answer.direction in ("sendonly", "inactive"):
            self.rejected = True
            log.info("subscriber refused the section for %s (mid %s)", self.track_sid, self.mid)
            return
        accepted = {int(f) for f in answer.fmt if f.isdigit()}
        offered = [c for c in self.section.codecs if c.payload_type in accepted]
        by_name = {c.name.lower(): c for c in offered}
        strip_red = False
        if self.kind == "audio":
            main = by_name.get("red") if self.up.red else None
            if main is None:
                main = by_name.get("opus")
                strip_red = self.up.red
            codec = CODEC_RED if main is not None and main.name.lower() == "red" else CODEC_OPUS
        else:
            main = next((c for c in offered if c.name.lower() != "rtx"), None)
            codec = codec_of(self.up.mime_type)
        if main is None:
            self.rejected = True
            log.info("subscriber accepted no forwardable codec for %s", self.track_sid)
            return
        rtx = by_name.get("rtx") if self.kind == "video" else None
        ext = {e.uri: e.id for e in answer.extmaps}
        mapping = {self.up.extensions[uri]: ext[uri] for uri in FORWARDED_EXTENSIONS
                   if uri in self.up.extensions and uri in ext}
        rewriter = self.up.rewriter(mapping, ext.get(EXT_ABS_SEND_TIME, 0))
        transport_cc = ext.get(EXT_TRANSPORT_CC, 0)
        if transport_cc > 14 and not rewriter.two_byte:
            transport_cc = 0  # its element cannot join this one-byte block
        self.forwarder = Forwarder(
            self.ssrc,
            main.payload_type,
            self.up.clock_rate,
            codec,
            video=self.kind == "video",
            rewriter=rewriter,
            mid=self.mid,
            mid_ext_id=ext.get(EXT_MID, 0),
            transport_cc_ext_id=transport_cc,
            rtx_ssrc=self.rtx_ssrc if rtx is not None else 0,
            rtx_payload_type=rtx.payload_type if rtx is not None else -1,
            strip_red=strip_red,
            clocks=self.up.clocks,
            cname=self.cname,
        )
        if not self.enabled:
            self.forwarder.set_muted(True)
        self.up.attach(self)
        self.select_layer(time.monotonic())

    @property
    def nacks_in(self) -> int:
        return self.stats.nacks_in

    @property
    def plis_in(self) -> int:
        return self.stats.plis_in

    def sync_stats(self) -> None:
        """Copy the forwarder's packet/byte counts into the metrics object."""
        forwarder = self.forwarder
        if forwarder is not None:
            self.stats.packets_out = forwarder.packets_sent + self.retransmitted
            self.stats.bytes_out = forwarder.octets_sent

    def summary(self) -> str:
        out = self.forwarder.packets_sent if self.forwarder is not None else 0
        return (f"{self.track_sid}@{self.mid} out={out} nack={self.nacks_in} "
                f"rtx={self.retransmitted} pli={self.plis_in}")

    def close(self) -> None:
        """Stop forwarding for good (the subscription ended)."""
        if not self.removed:
            self.removed = True
            self.sync_stats()
            self.stats.close()
        self.up.detach(self)

    # -- RTCP from the subscriber ------------------------------------------------------
    def on_nack(self, lost: list[int], now: float, max_bytes: float = math.inf) -> int:
        self.stats.nacks_in += 1
        forwarder = self.forwarder
        if forwarder is None or not self.forwarding:
            return 0
        sent = forwarder.on_nack(lost, now, max_bytes)
        used = 0
        for pkt in sent:
            self.send(pkt)
            used += len(pkt)
            self.retransmitted += 1
        if len(sent) < len(lost):
            missing = [s for s in lost if forwarder.cache.get(s) is None]
            upstream: dict[int, list[int]] = {}
            for seq in missing:
                source = forwarder.source_sequence(seq)
                if source is not None:
                    upstream.setdefault(source[0], []).append(source[1])
            for layer, seqs in upstream.items():
                self.up.nack_upstream(layer, seqs, now)
        return used

    def on_pli(self) -> None:
        self.stats.plis_in += 1
        forwarder = self.forwarder
        if forwarder is None or not self.forwarding:
            return
        layer = forwarder.on_pli()
        if layer is not None:
            self.up.request_keyframe(layer)

"""TrackBook: the media sections of one PeerTransport and the tracks behind them.

Publisher side (`apply_offer`): every section the client sends on becomes a
`MediaUpTrack` (registered with the `RtpSession` for demultiplexing); a re-offer that stops
sending on a section, or sends a different track on it, ends it. Subscriber side:
`add_down` queues a `SubscriberDownTrack`, `offer_sections` gives it a sendonly m-line in
the next offer, `apply_answer` binds it to what the subscriber accepted.
"""

from __future__ import annotations

import logging
import secrets
import time

from roost.media.codecs import PayloadTypes
from roost.media.downtrack import SubscriberDownTrack, random_ssrc
from roost.media.rtp import EXT_TRANSPORT_CC
from roost.media.rtpsession import RtpSession
from roost.media.sdp import MediaSection, SessionDescription
from roost.media.twcc_feedback import FeedbackRecorder
from roost.media.types import DownTrack, MediaInfo, UpTrack
from roost.media.uptrack import MediaUpTrack

log = logging.getLogger(__name__)


def section_msid(m: MediaSection) -> tuple[str, str]:
    """(stream id, track id) of an offered section: `a=msid`, else `a=ssrc ... msid:`."""
    if m.msid:
        return m.msid[0]
    for _, name, value in m.ssrcs:
        if name == "msid" and value:
            stream, _, track = value.partition(" ")
            return stream, track.strip()
    return "", ""


def section_ssrcs(m: MediaSection) -> tuple[list[int], dict[int, int]]:
    """Media SSRCs announced by a section (in order) and their RTX SSRCs (FID groups)."""
    rtx = {group[0]: group[1] for sem, group in m.ssrc_groups if sem == "FID" and len(group) == 2}
    repair = set(rtx.values())
    media: list[int] = []
    for ssrc, _, _ in m.ssrcs:
        if ssrc not in repair and ssrc not in media:
            media.append(ssrc)
    return media, rtx


class TrackBook:
    """Up-tracks a client publishes and down-tracks forwarded to it, on one transport."""

    def __init__(self, rtp: RtpSession, prefix: str = "") -> None:
        self.rtp = rtp
        self.prefix = prefix
        self.cname = "roost-" + secrets.token_hex(6)
        self.payload_types = PayloadTypes()
        self.pending: list[SubscriberDownTrack] = []  # waiting for their section
        self.by_mid: dict[str, SubscriberDownTrack] = {}  # offered sections
        self.free = {"audio": 0, "video": 0}  # single PC: unused recvonly sections

    # -- publisher side ---------------------------------------------------------------------
    def apply_offer(
        self, offer: SessionDescription, answer: SessionDescription
    ) -> tuple[list[str], list[tuple[MediaInfo, UpTrack]]]:
        """Start/end up-tracks for a client offer and roost's answer to it."""
        rtp = self.rtp
        extensions: dict[str, int] = {}
        for a in answer.media:
            if a.direction == "recvonly":
                for e in a.extmaps:
                    extensions.setdefault(e.uri, e.id)
        rtp.extensions = extensions
        tcc = extensions.get(EXT_TRANSPORT_CC, 0) if rtp.congestion_control else 0
        if not tcc:
            rtp.twcc_feedback = None
        elif rtp.twcc_feedback is None or rtp.twcc_feedback.ext_id != tcc:
            rtp.twcc_feedback = FeedbackRecorder(tcc, rtp.ssrc, time.monotonic())
        ended: list[str] = []
        started: list[tuple[MediaInfo, UpTrack]] = []
        for m, a in zip(offer.media, answer.media, strict=True):
            if m.mid is None or m.kind not in ("audio", "video"):
                continue
            receiving = a.direction == "recvonly" and a.port != 0
            stream_id, track_id = section_msid(m)
            current = rtp.ups.get(m.mid)
            if current is not None and (
                not receiving
                or current.track_id != track_id
                or current.payload_type != a.codecs[0].payload_type
            ):
                rtp.remove_up(m.mid)
                ended.append(m.mid)
                current = None
            if not receiving:
                continue
            ssrcs, rtx = section_ssrcs(m)
            if current is not None:
                layer = current.layers[0]
                if ssrcs and len(current.layers) == 1 and layer.ssrc not in ssrcs:
                    rtp.add_up(current, ssrcs, rtx)  # the client announced new SSRCs
                continue
            up = MediaUpTrack(
                rtp,
                kind=m.kind,
                mid=m.mid,
                track_id=track_id,
                stream_id=stream_id,
                codecs=list(a.codecs),
                extensions={e.uri: e.id for e in a.extmaps},
                rids=[r.id for r in a.rids],
            )
            rtp.add_up(up, ssrcs, rtx)
            info = MediaInfo(mid=m.mid, kind=m.kind, track_id=track_id, stream_id=stream_id,
                             mime_type=up.mime_type, rids=list(up.rids), ssrcs=ssrcs)
            started.append((info, up))
            log.debug("%sreceiving %s %s on mid %s (track %s)", self.prefix, m.kind,
                      up.mime_type, m.mid, track_id)
        return ended, started

    # -- subscriber side ---------------------------------------------------------------------
    def add_down(self, up: UpTrack, *, track_sid: str, stream_id: str) -> SubscriberDownTrack:
        if not isinstance(up, MediaUpTrack):
            raise TypeError(f"cannot forward a {type(up).__name__}")
        taken = self.rtp.taken_ssrcs()
        ssrc = random_ssrc(taken)
        rtx_ssrc = random_ssrc(taken | {ssrc}) if up.kind == "video" else 0
        down = SubscriberDownTrack(self.rtp.send_rtp, up, track_sid=track_sid, stream_id=stream_id,
                                   ssrc=ssrc, rtx_ssrc=rtx_ssrc, cname=self.cname)
        down.transport_cc = self.rtp.congestion_control
        self.rtp.add_down(down)
        self.pending.append(down)
        return down

    def remove_down(self, down: DownTrack) -> None:
        if not isinstance(down, SubscriberDownTrack) or down.removed:
            return
        down.close()
        self.rtp.remove_down(down)
        if down in self.pending:
            self.pending.remove(down)  # never offered: nothing to take back
        else:
            down.deactivate()

    def offer_sections(self, sections: list[MediaSection]) -> None:
        """Give every down-track added since the last offer a sendonly m-line.

        A section whose track was removed, and whose going inactive the subscriber has
        already answered, is reused for another track of the same kind (the client then
        sees a new track on the old transceiver); otherwise a new section is appended. A
        track is never put back on its own old section: the Rust SDK sees no new track
        there (same stream and track ids), so a re-subscription gets a fresh m-line.
        """
        for down in self.by_mid.values():
            if down.removed:
                down.offered_inactive = True
        used = {m.mid for m in sections}
        for down in self.pending:
            index = self._reusable(sections, down)
            if index is not None:
                mid = sections[index].mid or ""
                sections[index] = down.offer_section(mid, self.payload_types)
            else:
                n = len(sections)
                while str(n) in used:
                    n += 1
                mid = str(n)
                used.add(mid)
                sections.append(down.offer_section(mid, self.payload_types))
            self.by_mid[mid] = down
        self.pending = []

    def _reusable(self, sections: list[MediaSection], down: SubscriberDownTrack) -> int | None:
        for i, m in enumerate(sections):
            old = self.by_mid.get(m.mid or "")
            if (old is not None and old.inactive_acked and m.kind == down.kind
                    and m.port != 0 and old.track_sid != down.track_sid):
                return i
        return None

    # -- single peer connection: the client offers recvonly sections --------------------------
    def answer_sections(self, offer: SessionDescription) -> dict[str, MediaSection]:
        """Answers for the client's recvonly sections that carry (or now get) a down-track.

        A section keeps its live track; one whose track was removed is answered inactive
        (by the caller) and may carry another track of its kind from the next offer on;
        pending tracks take free sections of their own kind, never their own old one.
        `free` counts what is left for the next offer (see `missing`).
        """
        out: dict[str, MediaSection] = {}
        free: list[MediaSection] = []
        self.free = {"audio": 0, "video": 0}
        for m in offer.media:
            if m.mid is None or m.kind not in ("audio", "video"):
                continue
            receives = not m.rejected and m.direction == "recvonly"
            down = self.by_mid.get(m.mid)
            if down is not None and not down.removed and not down.rejected:
                if receives and down.section is not None:
                    out[m.mid] = down.section
                    continue
                down.rejected = True  # the client stopped receiving on it
                log.info("%sclient dropped the section of %s (mid %s)", self.prefix,
                         down.track_sid, m.mid)
            if down is not None and down.removed:
                down.inactive_acked = True
            if receives:
                free.append(m)
        for down in list(self.pending):
            for m in free:
                old = self.by_mid.get(m.mid or "")
                if m.kind != down.kind or (old is not None and old.track_sid == down.track_sid):
                    continue
                section = down.answer_section(m)
                if section is None:
                    continue
                self._note_transport_cc(section)
                free.remove(m)
                out[m.mid or ""] = section
                self.by_mid[m.mid or ""] = down
                self.pending.remove(down)
                break
            else:
                if any(m.kind == down.kind for m in free):
                    down.rejected = True  # no offered section takes its codec
                    self.pending.remove(down)
                    log.info("%sno offered %s section takes %s's codec", self.prefix,
                             down.kind, down.track_sid)
        for m in free:
            self.free[m.kind] += 1
        return out

    def _note_transport_cc(self, m: MediaSection) -> None:
        """The connection's transport-cc id (one per bundle), as the subscriber agreed it."""
        for e in m.extmaps:
            if e.uri == EXT_TRANSPORT_CC and self.rtp.congestion_control:
                self.rtp.transport_cc_id = e.id
                self.rtp.enable_probing()

    def missing(self) -> tuple[int, int]:
        """(audio, video) recvonly sections the client must add for the pending tracks."""
        counts = {"audio": 0, "video": 0}
        for down in self.pending:
            counts[down.kind] += 1
        return (max(0, counts["audio"] - self.free["audio"]),
                max(0, counts["video"] - self.free["video"]))

    def mid_to_track_id(self) -> dict[str, str]:
        return {mid: d.track_sid for mid, d in self.by_mid.items()
                if not d.removed and not d.rejected}

    def apply_answer(self, answer: SessionDescription) -> None:
        """Start forwarding on the sections the subscriber accepted."""
        for m in answer.media:
            down = self.by_mid.get(m.mid or "")
            if down is None:
                continue
            if down.removed:
                down.inactive_acked = down.offered_inactive
            elif down.forwarder is None:
                self._note_transport_cc(m)
                down.bind(m)

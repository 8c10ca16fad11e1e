"""RtpSession: the RTP/RTCP side of one peer connection, owned by the SFU.

Datagrams arrive straight from the UDP socket (`ice.IceLink.set_media_handler`), are
SRTP-unprotected once with roost's own libsrtp sessions and demultiplexed by SSRC to the
publisher's up-track layers (SSRCs from `a=ssrc` lines, else learnt from the mid / rid /
repaired-rid header extensions on first sight). RTCP from subscribers (NACK, PLI/FIR,
receiver reports, REMB) goes to down-tracks; publisher sender reports to up-track layers.
`MediaClock` drives the periodic RTCP of every session on the loop from one task: upstream
NACKs (20 ms), receiver reports + REMB to publishers (1 s), sender reports to subscribers (3 s),
TWCC feedback to publishers that negotiated transport-cc (50 ms, twcc_feedback.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import secrets
import struct
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from roost.media.allocator import RAISE_MARGIN, share_by_priority
from roost.media.bwe import BandwidthEstimator, PacketResult
from roost.media.probe import Prober
from roost.media.roles import TrackSender
from roost.media.rtcp import (
    RtcpFir,
    RtcpNack,
    RtcpPli,
    RtcpReceiverReport,
    RtcpRemb,
    RtcpReportBlock,
    RtcpSenderReport,
    RtcpTwcc,
    parse_compound,
)
from roost.media.rtp import EXT_MID, EXT_REPAIRED_RID, EXT_RID, parse_header, read_sdes_extension
from roost.media.srtp import SrtpContext, SrtpError
from roost.media.twcc import TransportSequencer
from roost.media.twcc_feedback import FeedbackRecorder
from roost.media.uptrack import RtxRoute, UpLayer
from roost.telemetry import count_twcc_feedback

if TYPE_CHECKING:
    from roost.media.uptrack import MediaUpTrack

log = logging.getLogger(__name__)

TICK = 0.02  # seconds between MediaClock ticks
REPORT_TICKS = 50  # receiver reports + REMB every 1 s
SENDER_REPORT_TICKS = 150  # sender reports every 3 s
# REMB sent to publishers (rtc.congestion_control.publisher_max_bitrate): a ceiling. With
# transport-cc the publisher's send-side estimate follows roost's TWCC feedback below it;
# without, its loss-based controller does.
REMB_BITRATE = 10_000_000
# A subscriber REMB older than this no longer limits forwarding (some receivers only send
# REMB while packets arrive: a paused track must not stay paused on a stale estimate).
REMB_TIMEOUT = 3.0
MAX_ROUTES = 64  # SSRCs learnt per connection
RTX_SHARE = 0.5  # retransmissions to a subscriber use at most this x its estimate ...
RTX_FLOOR = 128_000  # bits/s: ... but never less than this
RTX_BURST = 0.5  # ... averaged over this many seconds
TWCC_ALLOCATE_INTERVAL = 0.2  # seconds: layers follow the TWCC estimate this often at most
_SSRC = struct.Struct("!I")


class Route(Protocol):
    def on_rtp(self, plain: bytes) -> None: ...
    def on_sender_report(self, sr: RtcpSenderReport, now: float) -> None: ...


class _Drop:
    """Route for an SSRC that maps to nothing: ignore its packets cheaply."""

    def on_rtp(self, plain: bytes) -> None:
        return None

    def on_sender_report(self, sr: RtcpSenderReport, now: float) -> None:
        return None


DROP = _Drop()


class RtpSession:
    """SRTP, demultiplexing and RTCP for one bundled transport (publisher or subscriber)."""

    __slots__ = ("_allocated_at", "_phase", "_protect", "_protect_rtcp", "_rtx_at",
                 "_rtx_budget", "_sendto", "_unprotect", "_unprotect_rtcp", "bwe",
                 "congestion_control", "downs",
                 "errors", "extensions", "label", "prober", "remb_at", "remb_bps", "routes",
                 "rtcp_errors", "rtcp_in", "rtcp_out", "rtp_in", "rtp_out", "send_errors",
                 "sequencer", "srtp_errors", "ssrc", "transport_cc_id", "twcc_at",
                 "twcc_feedback", "unroutable", "uplink_max_bps", "ups")

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.ssrc = secrets.randbits(32) or 1  # sender SSRC of roost's own RTCP
        self.ups: dict[str, MediaUpTrack] = {}  # by mid
        self.downs: dict[int, TrackSender] = {}  # by SSRC (media and RTX)
        self.routes: dict[int, Route] = {}
        self.extensions: dict[str, int] = {}  # publisher's header-extension ids (bundle-wide)
        # Towards a publisher: TWCC feedback once it negotiated transport-cc (tracks.py sets
        # it), and the REMB ceiling it is sent.
        self.twcc_feedback: FeedbackRecorder | None = None
        self.uplink_max_bps = REMB_BITRATE
        self._unprotect: Callable[[bytes], bytes] | None = None
        self._unprotect_rtcp: Callable[[bytes], bytes] | None = None
        self._protect: Callable[[bytes | bytearray], bytes] | None = None
        self._protect_rtcp: Callable[[bytes], bytes] | None = None
        self._sendto: Callable[[bytes], None] | None = None
        self._phase = secrets.randbelow(SENDER_REPORT_TICKS)
        self.remb_bps: int | None = None  # the subscriber's last REMB (None: none yet)
        self.remb_at = 0.0
        # Send-side congestion control towards a subscriber that negotiated transport-cc:
        # every packet stamped (twcc.py), its feedback fed to the estimator (bwe.py).
        self.congestion_control = False  # rtc.congestion_control.enabled
        self.transport_cc_id = 0
        self.sequencer = TransportSequencer()
        self.bwe = BandwidthEstimator()
        self.twcc_at = -math.inf  # when TWCC feedback last arrived
        # padding clusters before layers go up (probe.py); made when transport-cc is set
        self.prober: Prober | None = None
        self._allocated_at = -math.inf
        self._rtx_budget = 0.0  # bytes (see _retransmit_allowance)
        self._rtx_at = 0.0
        # counters
        self.rtp_in = 0
        self.rtcp_in = 0
        self.srtp_errors = 0
        self.rtcp_errors = 0
        self.unroutable = 0
        self.rtp_out = 0
        self.rtcp_out = 0
        self.send_errors = 0
        self.errors = 0

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._protect is not None

    def start(self, srtp: SrtpContext, sendto: Callable[[bytes], None]) -> None:
        """DTLS is up: keys are known and datagrams can go out."""
        self._unprotect = srtp.rx.unprotect
        self._unprotect_rtcp = srtp.rx.unprotect_rtcp
        self._protect = srtp.tx.protector()
        self._protect_rtcp = srtp.tx.protect_rtcp
        self._sendto = sendto
        MediaClock.get().add(self)

    def summary(self) -> str:
        """Counters, for a log line when the connection ends."""
        ups = ", ".join(f"{u.mid}:{u.mime_type} in={u.packets_in} rtx={u.rtx_in} "
                        f"nack={u.nacks_sent} pli={u.plis_sent}" for u in self.ups.values())
        downs = ", ".join(d.summary() for s, d in self.downs.items() if s == d.ssrc)
        return (f"rtp in={self.rtp_in} out={self.rtp_out} rtcp in={self.rtcp_in} "
                f"out={self.rtcp_out} srtp_err={self.srtp_errors} unroutable={self.unroutable}"
                f" send_err={self.send_errors} errors={self.errors}"
                f"{f' tcc={self.sequencer.stamped}' if self.transport_cc_id else ''}"
                f"{'; up ' + ups if ups else ''}{'; down ' + downs if downs else ''}")

    def stop(self) -> None:
        if self._protect is not None:
            log.debug("%s: %s", self.label, self.summary())
        self._protect = self._protect_rtcp = None
        self._unprotect = self._unprotect_rtcp = None
        self._sendto = None
        MediaClock.get().remove(self)
        if self.prober is not None:
            self.prober.close()
        for up in list(self.ups.values()):
            up.close()
        for down in list(self.downs.values()):
            down.close()

    # -- publisher tracks --------------------------------------------------------------
    def add_up(self, up: MediaUpTrack, ssrcs: list[int], rtx: dict[int, int]) -> None:
        """Register a publisher section, with the SSRCs its offer announced (media → RTX)."""
        self.ups[up.mid] = up
        self._forget_drops()
        if ssrcs and len(up.layers) == 1:
            layer = up.layers[0]
            self._route(ssrcs[0], layer)
            rtx_ssrc = rtx.get(ssrcs[0])
            if rtx_ssrc:
                self._route(rtx_ssrc, RtxRoute(layer))

    def remove_up(self, mid: str) -> MediaUpTrack | None:
        up = self.ups.pop(mid, None)
        if up is not None:
            up.close()
            for ssrc, route in list(self.routes.items()):
                if getattr(route, "layer", route) in up.layers:
                    del self.routes[ssrc]
        return up

    def _route(self, ssrc: int, route: UpLayer | RtxRoute) -> None:
        if isinstance(route, UpLayer):
            if route.ssrc and route.ssrc != ssrc:
                self.routes.pop(route.ssrc, None)
            route.ssrc = ssrc
        else:
            route.layer.rtx_ssrc = ssrc
        self.routes[ssrc] = route

    def _forget_drops(self) -> None:
        for ssrc in [s for s, r in self.routes.items() if r is DROP]:
            del self.routes[ssrc]

    # -- subscriber tracks -------------------------------------------------------------
    def add_down(self, down: TrackSender) -> None:
        self.downs[down.ssrc] = down
        if down.rtx_ssrc:
            self.downs[down.rtx_ssrc] = down

    def remove_down(self, down: TrackSender) -> None:
        for ssrc in (down.ssrc, down.rtx_ssrc):
            if self.downs.get(ssrc) is down:
                del self.downs[ssrc]

    def taken_ssrcs(self) -> set[int]:
        return set(self.downs) | {self.ssrc}

    # -- receive -----------------------------------------------------------------------
    def on_datagram(self, data: bytes) -> None:
        """An SRTP or SRTCP datagram from the socket (first byte 128..191)."""
        try:
            if 191 < data[1] < 224:
                unprotect_rtcp = self._unprotect_rtcp
                if unprotect_rtcp is not None:
                    self.on_rtcp(unprotect_rtcp(data))
                return
            unprotect = self._unprotect
            if unprotect is None:
                return
            self.on_rtp(unprotect(data))
        except SrtpError:
            self.srtp_errors += 1
        except Exception:
            self.errors += 1
            if self.errors & (self.errors - 1) == 0:  # 1st, 2nd, 4th, 8th... time
                log.exception("%s: media packet handling failed (%d times)", self.label,
                              self.errors)

    def on_rtp(self, plain: bytes) -> None:
        """A decrypted RTP packet: hand it to its up-track layer."""
        if len(plain) < 12:
            return
        self.rtp_in += 1
        feedback = self.twcc_feedback
        if feedback is not None:
            feedback.record(plain, time.monotonic())
        route = self.routes.get(_SSRC.unpack_from(plain, 8)[0])
        if route is None:
            route = self._learn(plain)
        route.on_rtp(plain)

    def _learn(self, plain: bytes) -> Route:
        """First packet of an unknown SSRC: find its section and layer from the extensions."""
        try:
            h = parse_header(plain)
        except ValueError:
            return DROP
        ssrc = h.ssrc
        ext = self.extensions
        mid = read_sdes_extension(plain, h, ext.get(EXT_MID, 0))
        up = self.ups.get(mid) if mid else None
        if up is None and not mid:
            candidates = [u for u in self.ups.values()
                          if h.payload_type in (u.payload_type, u.rtx_payload_type)]
            up = candidates[0] if len(candidates) == 1 else None
        route: Route = DROP
        if up is not None and not up.closed:
            rrid = read_sdes_extension(plain, h, ext.get(EXT_REPAIRED_RID, 0))
            if rrid or h.payload_type == up.rtx_payload_type:
                layer = up.layer_for_rid(rrid)
                if layer is not None:
                    route = RtxRoute(layer)
            else:
                rid = read_sdes_extension(plain, h, ext.get(EXT_RID, 0))
                layer = up.layer_for_rid(rid)
                if layer is not None:
                    route = layer
        if route is DROP:
            self.unroutable += 1
        if len(self.routes) < MAX_ROUTES:
            if isinstance(route, (UpLayer, RtxRoute)):
                self._route(ssrc, route)
            else:
                self.routes[ssrc] = route
        return route

    def on_rtcp(self, plain: bytes) -> None:
        """A decrypted RTCP compound packet."""
        self.rtcp_in += 1
        try:
            packets = parse_compound(plain)
        except ValueError:
            self.rtcp_errors += 1
            return
        now = time.monotonic()
        downs = self.downs
        pli: list[TrackSender] = []
        for p in packets:
            if isinstance(p, RtcpSenderReport):
                route = self.routes.get(p.ssrc)
                if route is not None:
                    route.on_sender_report(p, now)
                self._report_blocks(p.reports, now)
            elif isinstance(p, RtcpReceiverReport):
                self._report_blocks(p.reports, now)
            elif isinstance(p, RtcpNack):
                down = downs.get(p.media_ssrc)
                if down is not None:
                    allowance = self._retransmit_allowance(now)
                    self._rtx_budget -= down.on_nack(p.lost, now, allowance)
            elif isinstance(p, RtcpPli):
                down = downs.get(p.media_ssrc)
                if down is not None and down not in pli:
                    pli.append(down)
            elif isinstance(p, RtcpFir):
                for ssrc, _ in p.entries:
                    down = downs.get(ssrc)
                    if down is not None and down not in pli:
                        pli.append(down)
            elif isinstance(p, RtcpTwcc):
                results = self.sequencer.results(p)
                count_twcc_feedback(bool(results))
                if results:
                    self.twcc_at = now
                    self.bwe.on_feedback(results, now)
                    if self._probed(results, now) or (
                            now - self._allocated_at >= TWCC_ALLOCATE_INTERVAL):
                        self.allocate(now)
            elif isinstance(p, RtcpRemb):
                if not p.ssrcs or any(s in downs for s in p.ssrcs):
                    self.remb_bps = p.bitrate
                    self.remb_at = now
                    self.bwe.on_remb(p.bitrate, now)
                    self.allocate(now)
        for down in pli:  # once per compound, as LiveKit does
            down.on_pli()

    def allocate(self, now: float) -> None:
        """Share the subscriber's estimate among its video down-tracks by priority; pick
        layers; probe when the tracks want more than the estimate.

        The estimate is roost's own (TWCC feedback, capped by a REMB) while feedback
        arrives, else the subscriber's REMB; with neither there is no bandwidth limit (only
        UpdateTrackSettings applies). Audio is not counted and never paused (protocol
        notes §9.6).
        """
        self._allocated_at = now
        if self.remb_bps is not None and now - self.remb_at > REMB_TIMEOUT:
            self.remb_bps = None  # stale
        videos = [d for s, d in self.downs.items()
                  if s == d.ssrc and d.kind == "video" and d.forwarder is not None and d.forwarding]
        demands = [d.demand(now) for d in videos]
        estimate = self.available_bps(now)
        budget = None if estimate is None else max(0.0, estimate - self._audio_bps())
        for down, share in zip(videos, share_by_priority(budget, demands), strict=True):
            down.bandwidth_share = share
            down.select_layer(now)
        prober = self.prober
        if prober is not None and estimate is not None and now - self.twcc_at <= REMB_TIMEOUT:
            wanted = RAISE_MARGIN * sum(d.optimal_bps for d in demands) + self._audio_bps()
            if self.bwe.state == "decrease":
                prober.on_overuse(now)
            else:
                prober.maybe_start(estimate, wanted, self.sequencer.sent_bps(now), now)

    def _retransmit_allowance(self, now: float) -> float:
        """Bytes that may be retransmitted now: a bucket filled at RTX_SHARE of the
        estimate, at least RTX_FLOOR (unlimited without an estimate), so that NACKs after a
        loss burst on a narrow link do not bury it under retransmissions (libwebrtc limits
        them to its target rate)."""
        estimate = self.available_bps(now)
        if estimate is None:
            self._rtx_at = now
            return math.inf
        rate = max(RTX_SHARE * estimate, RTX_FLOOR) / 8
        self._rtx_budget = min(rate * RTX_BURST, self._rtx_budget + rate * (now - self._rtx_at))
        self._rtx_at = now
        return max(0.0, self._rtx_budget)

    def _audio_bps(self) -> float:
        """What the forwarded audio takes of the estimate (it is never paused or lowered)."""
        return sum(d.up.layer_bitrates().get(0, 0.0) for s, d in self.downs.items()
                   if s == d.ssrc and d.kind == "audio" and d.forwarding)

    def enable_probing(self) -> None:
        """transport-cc was negotiated: probe before raising layers (probe.py)."""
        if self.prober is None:
            self.prober = Prober(self._send_padding, lambda: self.sequencer.next_seq)

    def _send_padding(self, count: int) -> int:
        """Padding packets for a probe, on the RTX stream of a forwarding video track."""
        for ssrc, down in self.downs.items():
            forwarder = down.forwarder
            if ssrc != down.ssrc or forwarder is None or not down.forwarding:
                continue
            packets = forwarder.padding(count)
            if packets:
                for pkt in packets:
                    self.send_rtp(pkt)
                return len(packets)
        return 0

    def _probed(self, results: list[PacketResult], now: float) -> bool:
        """Feed TWCC results to the prober; True when a probe just got through (layers may
        go up at once)."""
        prober = self.prober
        if prober is None or not prober.busy:
            return False
        bps = prober.on_results(results, now)
        if bps is None:
            return False
        self.bwe.on_probe_result(bps, now)
        if not prober.last_ok:
            return False
        for ssrc, down in self.downs.items():
            if ssrc == down.ssrc and down.kind == "video":
                down.confirm_upgrade()
        return True

    def available_bps(self, now: float) -> int | None:
        """What the subscriber's link takes now: the TWCC estimate while feedback arrives,
        else its REMB, else None (no limit known)."""
        if now - self.twcc_at <= REMB_TIMEOUT:
            return self.bwe.estimate_bps
        return self.remb_bps

    def _report_blocks(self, blocks: list[RtcpReportBlock], now: float) -> None:
        for block in blocks:
            down = self.downs.get(block.ssrc)
            if down is not None and down.forwarder is not None and block.ssrc == down.ssrc:
                down.forwarder.on_receiver_report(block, now)

    # -- send --------------------------------------------------------------------------
    def send_rtp(self, pkt: bytes | bytearray) -> None:
        protect = self._protect
        if protect is None:
            return
        if self.transport_cc_id:
            pkt = self.sequencer.stamp(pkt, self.transport_cc_id, time.monotonic())
        try:
            self._sendto(protect(pkt))  # type: ignore[misc]
            self.rtp_out += 1
        except (SrtpError, OSError, RuntimeError):
            self.send_errors += 1

    def send_rtcp(self, pkt: bytes) -> None:
        protect = self._protect_rtcp
        if protect is None:
            return
        try:
            self._sendto(protect(pkt))  # type: ignore[misc]
            self.rtcp_out += 1
        except (SrtpError, OSError, RuntimeError):
            self.send_errors += 1

    # -- periodic ----------------------------------------------------------------------
    def tick(self, now: float, n: int) -> None:
        if self.twcc_feedback is not None:
            self.twcc_feedback.tick(now, self.send_rtcp)
        for up in self.ups.values():
            up.tick(now)
        if n % REPORT_TICKS == 0 and self.ups:
            self._publisher_reports(now)
        if (n + self._phase) % SENDER_REPORT_TICKS == 0 and self.downs:
            self._sender_reports(now)
        if n % REPORT_TICKS == 0 and self.downs:
            self.allocate(now)
            for ssrc, down in list(self.downs.items()):
                if ssrc == down.ssrc:
                    down.sync_stats()

    def _publisher_reports(self, now: float) -> None:
        blocks: list[RtcpReportBlock] = []
        ssrcs: list[int] = []
        for up in self.ups.values():
            blocks += up.report_blocks(now)
            ssrcs += up.media_ssrcs()
        if not ssrcs:
            return
        parts = [bytes(RtcpReceiverReport(self.ssrc, blocks[i : i + 31]))
                 for i in range(0, max(1, len(blocks)), 31)]
        parts.append(bytes(RtcpRemb(self.ssrc, self.uplink_max_bps, ssrcs[:255])))
        self.send_rtcp(b"".join(parts))

    def _sender_reports(self, now: float) -> None:
        for ssrc, down in self.downs.items():
            if ssrc != down.ssrc or down.forwarder is None or not down.forwarding:
                continue
            report = down.forwarder.sender_report(now)
            if report is not None:
                self.send_rtcp(report)


class MediaClock:
    """One task per event loop ticking every registered RtpSession every 20 ms.

    The first clock of the process also calls `gc.freeze()`: the tens of thousands of
    objects the server created while starting (modules, functions, types) then no longer
    count towards, or get traversed by, full collections, which otherwise stall packet
    forwarding for 50-250 ms at a time on a small machine.
    """

    _frozen = False
    _clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaClock] = (
        weakref.WeakKeyDictionary())

    def __init__(self) -> None:
        self.sessions: dict[RtpSession, None] = {}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def get(cls) -> MediaClock:
        loop = asyncio.get_running_loop()
        clock = cls._clocks.get(loop)
        if clock is None:
            clock = cls._clocks[loop] = cls()
            if not MediaClock._frozen:
                MediaClock._frozen = True
                gc.freeze()
        return clock

    def add(self, session: RtpSession) -> None:
        self.sessions[session] = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def remove(self, session: RtpSession) -> None:
        self.sessions.pop(session, None)

    async def _run(self) -> None:
        n = 0
        while self.sessions:
            await asyncio.sleep(TICK)
            n += 1
            now = time.monotonic()
            for session in list(self.sessions):
                try:
                    session.tick(now, n)
                except Exception:
                    log.exception("%s: periodic RTCP failed", session.label)

"""PeerTransport: one bundled ICE+DTLS+SCTP transport (a LiveKit publisher or subscriber PC).

Built from aiortc's ORTC pieces (`RTCDtlsTransport`, `RTCSctpTransport`,
`RTCDataChannel`) over roost's own ICE (`media.ice`) and SDP (`media.sdp`); never
`RTCPeerConnection`, which decodes media. Raw RTP hooks for the SFU live on the DTLS
transport: incoming SRTP is unprotected in `RTCDtlsTransport._recv_next` and handed to
`_handle_rtp_data(data, arrival_time_ms)` / `_handle_rtcp_data(data)`; outgoing RTP/RTCP
goes through `_send_rtp(data)` (protects and sends). roost does not use those hooks on the
hot path: once DTLS is up, SRTP datagrams go from the socket straight to the transport's
`RtpSession` (`ice.IceLink.set_media_handler`), which has its own libsrtp sessions.

Media: a publisher's sendonly/sendrecv sections are answered `recvonly` and become
`MediaUpTrack`s (announced through `on_track`, ended through `on_track_ended`); on a
subscriber connection `add_track` queues a `SubscriberDownTrack` whose sendonly section
the next `create_offer` carries (see `media.tracks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any, cast

from aiortc import RTCCertificate, RTCDtlsTransport
from aiortc.rtcdtlstransport import RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.rtcsctptransport import RTCSctpCapabilities

from roost.media import sdp as sdpmod
from roost.media.datachannel import LOSSY, RELIABLE, BoundedSctpTransport, DataChannels
from roost.media.ice import IceLink, expand_addresses, parse_candidate
from roost.media.icemux import IceMux
from roost.media.rtpsession import RtpSession
from roost.media.sdp import Fingerprint, MediaSection, SdpError, SessionDescription
from roost.media.sections import SCTP_PORT, answer_media, data_section, reject
from roost.media.srtp import SrtpContext, SrtpError
from roost.media.tracks import TrackBook
from roost.media.types import DownTrack, MediaInfo, UpTrack

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 20.0  # ICE + DTLS, from the first negotiation
DEFAULT_REMOTE_MAX_MESSAGE_SIZE = 65536  # RFC 8841 section 6
MAX_EARLY_CANDIDATES = 64
SUPPORTED_FINGERPRINTS = ("sha-1", "sha-224", "sha-256", "sha-384", "sha-512")
class PeerTransport:
    """One bundled ICE+DTLS+SCTP transport: a LiveKit publisher or subscriber peer connection."""

    def __init__(
        self,
        *,
        addresses: list[str],
        port_range: tuple[int, int] | None = None,
        label: str = "",
        mux: IceMux | None = None,
        congestion_control: bool = False,
    ) -> None:
        self.label = label
        self.on_data: Callable[[str, bytes], None] | None = None
        self.on_state: Callable[[str], None] | None = None
        self.on_track: Callable[[MediaInfo, UpTrack], None] | None = None
        self.on_track_ended: Callable[[str], None] | None = None
        self._addresses = expand_addresses(addresses)
        if not self._addresses:
            raise ValueError("PeerTransport needs at least one address")
        self._port_range = port_range
        self._mux = mux
        self._prefix = f"[{label}] " if label else ""
        self._certificate = RTCCertificate.generateCertificate()
        self._state = "new"
        self._offerer: bool | None = None
        self._ice: IceLink | None = None
        self._dtls: RTCDtlsTransport | None = None
        self._sctp: BoundedSctpTransport | None = None
        self._sctp_started = False
        self._connect_started = False
        self._remote_sctp_port: int | None = None
        self._remote_max_message: int = DEFAULT_REMOTE_MAX_MESSAGE_SIZE
        self._remote_fingerprints: list[Fingerprint] = []
        self._channels = DataChannels(self._deliver, self._prefix)
        self._local_sections: list[MediaSection] = []
        self._remote_mids: list[str | None] = []
        self._data_mid: str | None = None
        self._awaiting_answer = False
        self._early_candidates: list[dict[str, Any]] = []
        self._session_id = str(secrets.randbits(62))
        self._version = 0
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.rtp = RtpSession(label)
        self.rtp.congestion_control = congestion_control
        self._tracks = TrackBook(self.rtp, self._prefix)

    @property
    def up_tracks(self) -> list[Any]:
        """The publisher's media sections being received (MediaUpTrack)."""
        return list(self.rtp.ups.values())

    # -- public state -----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._state == "connected"

    @property
    def state(self) -> str:
        return self._state

    @property
    def dtls(self) -> RTCDtlsTransport | None:
        """The DTLS transport (for the RTP path: `_handle_rtp_data`, `_send_rtp`)."""
        return self._dtls

    def _set_state(self, state: str) -> None:
        if state == self._state or self._state == "closed":
            return
        if self._state == "failed" and state != "closed":
            return
        self._state = state
        log.debug("%stransport %s", self._prefix, state)
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                log.exception("%son_state handler failed", self._prefix)

    def _deliver(self, label: str, data: bytes) -> None:
        if self.on_data is not None:
            self.on_data(label, data)

    # -- negotiation ----------------------------------------------------------------------
    async def handle_offer(self, sdp: str) -> str:
        """Answer the client's offer (publisher PC); also renegotiation and ICE restart."""
        offer = sdpmod.parse(sdp)
        async with self._lock:
            self._check_open()
            if self._offerer:
                raise SdpError("this transport sends offers; it cannot take one")
            self._check_mids(offer)
            main = self._transport_section(offer)
            ufrag, pwd = sdpmod.check_ice_credentials(*offer.ice_credentials(main))
            fingerprints = self._check_fingerprints(offer.dtls_fingerprints(main))
            setup = offer.dtls_setup(main) or "actpass"
            if setup not in sdpmod.SETUP_ROLES:
                raise SdpError(f"bad a=setup:{setup}")
            first = self._ice is None
            if first:
                self._offerer = False
                await self._create_transports(controlling=False)
                assert self._dtls is not None
                # answerer: active (DTLS client) unless the offerer insists on being active.
                self._dtls._set_role("server" if setup == "active" else "client")
                self._remote_fingerprints = fingerprints
            elif fingerprints != self._remote_fingerprints:
                raise SdpError("DTLS fingerprint changed during the session")
            assert self._ice is not None
            restart = not first and ufrag != self._ice.remote_ufrag
            if restart:
                await self._ice.restart()
            answer = self._build_answer(offer)
            self._remote_mids = [m.mid for m in offer.media]
            self._local_sections = answer.media
            ended, started = self._tracks.apply_offer(offer, answer)
            await self._apply_remote(offer, ufrag, pwd)
        self._announce(ended, started)
        return str(answer)

    async def create_offer(self, *, ice_restart: bool = False) -> str:
        """Offer (subscriber PC): first offer carries the data section and server channels."""
        async with self._lock:
            self._check_open()
            if self._offerer is False:
                raise RuntimeError("this transport answers offers; it cannot send one")
            if self._ice is None:
                self._offerer = True
                await self._create_transports(controlling=True)
                assert self._sctp is not None
                self._channels.create(self._sctp, RELIABLE, ordered=True, max_retransmits=None)
                self._channels.create(self._sctp, LOSSY, ordered=False, max_retransmits=0)
                self._data_mid = "0"
                self._local_sections = [data_section(self._data_mid)]
            elif ice_restart:
                assert self._ice is not None
                await self._ice.restart()
            self._tracks.offer_sections(self._local_sections)
            attrs = self._transport_attrs(setup="actpass")
            for section in self._local_sections:
                if section.port != 0:
                    self._fill_transport(section, attrs)
            description = self._description(self._local_sections)
            self._awaiting_answer = True
            return str(description)

    async def handle_answer(self, sdp: str) -> None:
        """Apply the client's answer to the last `create_offer`."""
        answer = sdpmod.parse(sdp)
        async with self._lock:
            self._check_open()
            if not self._offerer or not self._awaiting_answer:
                raise SdpError("no offer is waiting for an answer")
            mids = [m.mid for m in answer.media]
            if mids != [m.mid for m in self._local_sections]:
                raise SdpError("answer m-lines do not match the offer")
            main = self._transport_section(answer)
            ufrag, pwd = sdpmod.check_ice_credentials(*answer.ice_credentials(main))
            fingerprints = self._check_fingerprints(answer.dtls_fingerprints(main))
            setup = answer.dtls_setup(main)
            if setup not in ("active", "passive"):
                raise SdpError(f"answer must have a=setup:active or passive, not {setup}")
            assert self._ice is not None and self._dtls is not None
            if self._ice.remote_ufrag is None:
                self._dtls._set_role("server" if setup == "active" else "client")
                self._remote_fingerprints = fingerprints
            elif fingerprints != self._remote_fingerprints:
                raise SdpError("DTLS fingerprint changed during the session")
            self._awaiting_answer = False
            self._remote_mids = mids
            self._tracks.apply_answer(answer)
            await self._apply_remote(answer, ufrag, pwd)

    async def add_remote_candidate(self, init: dict[str, Any]) -> None:
        """Add a trickled RTCIceCandidateInit; "" means end-of-candidates."""
        if not isinstance(init, dict):
            raise ValueError("candidate init must be an object")
        text = init.get("candidate")
        if not isinstance(text, str):
            raise ValueError("candidate init has no candidate string")
        mid, index = init.get("sdpMid"), init.get("sdpMLineIndex")
        if mid is not None and not isinstance(mid, str):
            raise ValueError("sdpMid must be a string")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise ValueError("sdpMLineIndex must be an integer")
        candidate = parse_candidate(text) if text.strip() else None
        if self._state == "closed":
            return
        if self._ice is None or self._ice.remote_ufrag is None:
            if len(self._early_candidates) < MAX_EARLY_CANDIDATES:
                self._early_candidates.append(init)
            return
        ufrag = init.get("usernameFragment")
        if isinstance(ufrag, str) and ufrag and ufrag != self._ice.remote_ufrag:
            return  # for an ICE generation that has been restarted away
        await self._ice.add_remote_candidate(candidate)

    # -- data -----------------------------------------------------------------------------
    def send_data(self, label: str, payload: bytes) -> bool:
        """Send on the channel with that label (buffered until it opens)."""
        if self._state in ("closed", "failed"):
            return False
        return self._channels.send(label, payload)

    # -- media (media.types.Transport) -------------------------------------------------------
    def add_track(self, up: UpTrack, *, track_sid: str, stream_id: str) -> DownTrack:
        """Forward `up`: on a new sendonly section of the next offer (subscriber PC) or,
        answering (single PC), on a free recvonly section of the client's next offer."""
        return self._tracks.add_down(up, track_sid=track_sid, stream_id=stream_id)

    def missing_sections(self) -> tuple[int, int]:
        """Single PC: (audio, video) recvonly sections the client's next offer must add."""
        return self._tracks.missing()

    def mid_to_track_id(self) -> dict[str, str]:
        """mid → TR_ sid of every section carrying a forwarded track."""
        return self._tracks.mid_to_track_id()

    def remove_track(self, down: DownTrack) -> None:
        """Subscriber side: stop forwarding; the section goes inactive in the next offer."""
        self._tracks.remove_down(down)

    def _announce(self, ended: list[str], started: list[tuple[MediaInfo, Any]]) -> None:
        for mid in ended:
            if self.on_track_ended is not None:
                try:
                    self.on_track_ended(mid)
                except Exception:
                    log.exception("%son_track_ended handler failed", self._prefix)
        for media, up in started:
            if self.on_track is not None:
                try:
                    self.on_track(media, up)
                except Exception:
                    log.exception("%son_track handler failed", self._prefix)

    # -- internals ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._state in ("closed", "failed"):
            raise ConnectionError(f"transport is {self._state}")

    def _check_mids(self, offer: SessionDescription) -> None:
        mids = [m.mid for m in offer.media]
        if any(m is None or m == "" for m in mids):
            raise SdpError("every m-line needs a=mid")
        if len(set(mids)) != len(mids):
            raise SdpError("duplicate a=mid")
        if mids[: len(self._remote_mids)] != self._remote_mids:
            raise SdpError("a renegotiation must keep the existing m-lines and mids")

    def _transport_section(self, desc: SessionDescription) -> MediaSection:
        """The section whose ICE/DTLS parameters the bundled transport uses."""
        for mid in desc.bundle():
            m = desc.media_by_mid(mid)
            if m is not None and not m.rejected:
                return m
        for m in desc.media:
            if not m.rejected:
                return m
        raise SdpError("every m-line is rejected")

    def _check_fingerprints(self, fingerprints: list[Fingerprint]) -> list[Fingerprint]:
        usable = [f for f in fingerprints if f.algorithm in SUPPORTED_FINGERPRINTS]
        if not usable:
            raise SdpError("no DTLS fingerprint with a supported hash")
        return usable

    async def _create_transports(self, *, controlling: bool) -> None:
        self._ice = IceLink(
            addresses=self._addresses,
            port_range=self._port_range,
            controlling=controlling,
            mux=self._mux,
            on_failed=lambda: self._set_state("failed"),
        )
        await self._ice.gather()
        self._dtls = RTCDtlsTransport(cast(Any, self._ice), [self._certificate])
        self._dtls.on("statechange", self._on_dtls_state)
        # Packets that reach aiortc's own SRTP path (only those queued before the fast
        # path is installed) are handed to the RtpSession as well.
        rtp = self.rtp

        async def slow_rtp(data: bytes, arrival_time_ms: int = 0) -> None:
            rtp.on_rtp(data)

        async def slow_rtcp(data: bytes) -> None:
            rtp.on_rtcp(data)

        dtls = cast(Any, self._dtls)
        dtls._handle_rtp_data = slow_rtp
        dtls._handle_rtcp_data = slow_rtcp
        self._sctp = BoundedSctpTransport(self._dtls, port=SCTP_PORT)
        self._sctp.on_overrun = lambda: self._set_state("failed")
        self._sctp.on("datachannel", self._channels.adopt)

    def _on_dtls_state(self) -> None:
        assert self._dtls is not None
        if self._dtls.state in ("closed", "failed") and self._state != "closed":
            self._set_state("failed")

    def _transport_attrs(self, *, setup: str) -> dict[str, Any]:
        assert self._ice is not None
        fingerprints = [
            Fingerprint(f.algorithm, f.value) for f in self._certificate.getFingerprints()
        ]
        return {
            "ice_ufrag": self._ice.local_ufrag,
            "ice_pwd": self._ice.local_pwd,
            "ice_options": "trickle",
            "fingerprints": fingerprints,
            "setup": setup,
            "candidates": self._ice.local_candidates(),
            "end_of_candidates": True,
        }

    @staticmethod
    def _fill_transport(section: MediaSection, attrs: dict[str, Any]) -> None:
        for key, value in attrs.items():
            setattr(section, key, list(value) if isinstance(value, list) else value)

    def _description(self, sections: list[MediaSection]) -> SessionDescription:
        self._version += 1
        accepted = [m.mid for m in sections if m.port != 0 and m.mid is not None]
        return SessionDescription(
            origin=f"- {self._session_id} {self._version} IN IP4 127.0.0.1",
            groups=[("BUNDLE", accepted)] if accepted else [],
            msid_semantic=" WMS *",
            media=sections,
        )

    def _build_answer(self, offer: SessionDescription) -> SessionDescription:
        assert self._dtls is not None
        setup = "passive" if self._dtls._role == "server" else "active"
        attrs = self._transport_attrs(setup=setup)
        # Everything rides one transport: without a BUNDLE group only the section that
        # carries the transport parameters can be accepted.
        bundle: set[str | None] = set(offer.bundle()) or {self._transport_section(offer).mid}
        forwarded = self._tracks.answer_sections(offer)
        sections: list[MediaSection] = []
        for m in offer.media:
            if m.rejected or m.mid not in bundle:
                sections.append(reject(m))
            elif m.is_datachannel and self._data_mid in (None, m.mid):
                self._data_mid = m.mid
                self._channels.expect(RELIABLE, LOSSY)  # the client opens them once connected
                sections.append(self._answer_datachannel(m, attrs))
            elif m.kind in ("audio", "video"):
                section = (forwarded.get(m.mid or "")
                           or answer_media(m, self.rtp.congestion_control))
                self._fill_transport(section, attrs)
                sections.append(section)
            else:
                sections.append(reject(m))
        return self._description(sections)

    def _answer_datachannel(self, offer: MediaSection, attrs: dict[str, Any]) -> MediaSection:
        section = data_section(offer.mid, legacy=offer.proto.upper() == "DTLS/SCTP")
        self._fill_transport(section, attrs)
        return section

    async def _apply_remote(self, desc: SessionDescription, ufrag: str, pwd: str) -> None:
        """Record remote SCTP and candidates, then make sure connecting is under way."""
        assert self._ice is not None
        data = desc.media_by_mid(self._data_mid) if self._data_mid is not None else None
        if data is not None and not data.rejected:
            if data.sctp_port is not None:
                self._remote_sctp_port = data.sctp_port
            elif data.proto.upper() == "DTLS/SCTP" and data.fmt and data.fmt[0].isdigit():
                self._remote_sctp_port = int(data.fmt[0])
            else:
                self._remote_sctp_port = SCTP_PORT
            if data.max_message_size is not None:
                self._remote_max_message = data.max_message_size
        self._ice.start(ufrag, pwd)  # no-op when these credentials are already in use
        await self._add_embedded_candidates(desc)
        early, self._early_candidates = self._early_candidates, []
        for init in early:
            with contextlib.suppress(ValueError):
                await self.add_remote_candidate(init)
        if not self._connect_started:
            self._connect_started = True
            self._spawn(self._connect())
        elif self._dtls is not None and self._dtls.state == "connected":
            await self._start_sctp()

    async def _add_embedded_candidates(self, desc: SessionDescription) -> None:
        assert self._ice is not None
        end = False
        for m in desc.media:
            if m.rejected:
                continue
            for text in m.candidates:
                try:
                    await self._ice.add_remote_candidate(parse_candidate(text))
                except ValueError:
                    log.debug("%signoring bad candidate in SDP: %.80s", self._prefix, text)
            end = end or m.end_of_candidates
        if end:
            await self._ice.add_remote_candidate(None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        assert self._ice is not None and self._dtls is not None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if not await self._ice.wait_connected():
                    self._set_state("failed")
                    return
                fingerprints = [
                    RTCDtlsFingerprint(algorithm=f.algorithm, value=f.value)
                    for f in self._remote_fingerprints
                ]
                await self._dtls.start(RTCDtlsParameters(fingerprints=fingerprints))
        except TimeoutError:
            log.info("%sICE/DTLS did not connect within %.0f s", self._prefix, CONNECT_TIMEOUT)
            self._set_state("failed")
            return
        if self._dtls.state != "connected":
            self._set_state("failed")
            return
        try:
            self.rtp.start(SrtpContext.from_dtls(cast(Any, self._dtls)), self._ice.send_now)
        except SrtpError as exc:
            log.info("%sno usable SRTP profile: %s", self._prefix, exc)
            self._set_state("failed")
            return
        self._ice.set_media_handler(self.rtp.on_datagram)
        self._set_state("connected")
        await self._start_sctp()

    async def _start_sctp(self) -> None:
        if self._sctp_started or self._sctp is None or self._remote_sctp_port is None:
            return
        self._sctp_started = True
        caps = RTCSctpCapabilities(maxMessageSize=self._remote_max_message)
        try:
            await self._sctp.start(caps, self._remote_sctp_port)
        except ConnectionError:
            self._set_state("failed")

    async def close(self) -> None:
        """Stop everything and release sockets and tasks; idempotent."""
        if self._state == "closed":
            return
        self._set_state("closed")
        self._channels.close()
        if self._ice is not None:
            self._ice.set_media_handler(None)
        self.rtp.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._sctp is not None:
            with contextlib.suppress(Exception):
                await self._sctp.stop()
        if self._dtls is not None:
            with contextlib.suppress(Exception):
                await self._dtls.stop()
        if self._ice is not None:
            await self._ice.stop()

"""A lightweight LiveKit client for media tests and benchmarks: no codecs, no SCTP.

`LitePeer` is the client side of one bundled peer connection built from the same pieces
roost uses (`media.ice.IceLink`, aiortc's `RTCDtlsTransport`, `media.srtp`): it connects,
then hands decrypted RTP/RTCP to callbacks and protects what it sends. `LiteClient` adds
LiveKit signalling (binary protobuf over `/rtc`): it answers subscriber offers
(receive-only, every offered codec accepted), keeps the SSRC → track sid map from the
offers' `a=ssrc ... msid:` lines, and can publish an audio track whose RTP the caller
writes itself. Hundreds of these fit in one process where official SDK clients do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiortc import RTCCertificate, RTCDtlsTransport, RTCSctpTransport
from aiortc.rtcdtlstransport import RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.rtcsctptransport import RTCSctpCapabilities
from livekit.protocol import models, rtc

from roost.media import sdp as sdpmod
from roost.media.ice import IceLink, parse_candidate
from roost.media.rtp import (
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_REPAIRED_RID,
    EXT_RID,
    EXT_TRANSPORT_CC,
)
from roost.media.sdp import Codec, Extmap, Fingerprint, MediaSection, SessionDescription
from roost.media.sections import DISCARD, SCTP_PORT
from roost.media.srtp import SrtpContext, SrtpError

PROTO = "UDP/TLS/RTP/SAVPF"
_certificate: RTCCertificate | None = None
_session_ids = itertools.count(1)


def shared_certificate() -> RTCCertificate:
    """One DTLS certificate for every lite peer in the process (generating one costs ms)."""
    global _certificate
    if _certificate is None:
        _certificate = RTCCertificate.generateCertificate()
    return _certificate


class LitePeer:
    """Client side of one bundled ICE + DTLS + SRTP transport; RTP/RTCP via callbacks."""

    def __init__(self, *, controlling: bool, address: str = "127.0.0.1") -> None:
        self.ice = IceLink(addresses=[address], port_range=None, controlling=controlling)
        self.dtls: RTCDtlsTransport | None = None
        self.sctp: RTCSctpTransport | None = None
        self.srtp: SrtpContext | None = None
        self.on_rtp: Callable[[bytes], None] | None = None
        self.on_rtcp: Callable[[bytes], None] | None = None
        self.srtp_errors = 0
        # Loss injection for tests: return False to drop an outgoing plaintext packet.
        self.send_filter: Callable[[bytes], bool] | None = None

    async def gather(self) -> None:
        await self.ice.gather()
        self.dtls = RTCDtlsTransport(self.ice, [shared_certificate()])  # type: ignore[arg-type]

    def fill(self, section: MediaSection, setup: str) -> None:
        """Put this peer's ICE/DTLS parameters and candidates on an m-line."""
        section.ice_ufrag = self.ice.local_ufrag
        section.ice_pwd = self.ice.local_pwd
        section.fingerprints = [Fingerprint(f.algorithm, f.value)
                                for f in shared_certificate().getFingerprints()]
        section.setup = setup
        section.candidates = self.ice.local_candidates()
        section.end_of_candidates = True

    async def connect(self, remote: SessionDescription, *, dtls_server: bool,
                      timeout: float = 10.0) -> None:
        """ICE against the remote description's candidates, then DTLS and SRTP keys."""
        assert self.dtls is not None, "gather() first"
        main = next(m for m in remote.media if not m.rejected)
        ufrag, pwd = remote.ice_credentials(main)
        assert ufrag and pwd
        self.ice.start(ufrag, pwd)
        for m in remote.media:
            for text in m.candidates:
                await self.ice.add_remote_candidate(parse_candidate(text))
        await self.ice.add_remote_candidate(None)
        async with asyncio.timeout(timeout):
            if not await self.ice.wait_connected():
                raise ConnectionError("ICE failed")
            self.dtls._set_role("server" if dtls_server else "client")
            fps = [RTCDtlsFingerprint(algorithm=f.algorithm, value=f.value)
                   for f in remote.dtls_fingerprints(main)]
            await self.dtls.start(RTCDtlsParameters(fingerprints=fps))
        self.srtp = SrtpContext.from_dtls(self.dtls)  # type: ignore[arg-type]
        self.ice.set_media_handler(self._datagram)
        if any(m.is_datachannel and not m.rejected for m in remote.media):
            # Complete the SCTP association roost starts (its data channels open; nothing
            # is read from them), so the server does not retransmit INITs for ever.
            self.sctp = RTCSctpTransport(self.dtls)
            await self.sctp.start(RTCSctpCapabilities(maxMessageSize=65536), SCTP_PORT)

    def _datagram(self, data: bytes) -> None:
        srtp = self.srtp
        if srtp is None:
            return
        try:
            if 191 < data[1] < 224:
                if self.on_rtcp is not None:
                    self.on_rtcp(srtp.rx.unprotect_rtcp(data))
            elif self.on_rtp is not None:
                self.on_rtp(srtp.rx.unprotect(data))
        except SrtpError:
            self.srtp_errors += 1

    def send_rtp(self, plain: bytes) -> None:
        if self.srtp is not None and (self.send_filter is None or self.send_filter(plain)):
            self.ice.send_now(self.srtp.tx.protect(plain))

    def send_rtcp(self, plain: bytes) -> None:
        if self.srtp is not None:
            self.ice.send_now(self.srtp.tx.protect_rtcp(plain))

    async def close(self) -> None:
        self.ice.set_media_handler(None)
        if self.sctp is not None:
            with contextlib.suppress(Exception):
                await self.sctp.stop()
        if self.dtls is not None:
            with contextlib.suppress(Exception):
                await self.dtls.stop()
        await self.ice.stop()


def _description(sections: list[MediaSection]) -> SessionDescription:
    mids = [m.mid for m in sections if m.port != 0 and m.mid is not None]
    return SessionDescription(origin=f"- {next(_session_ids)} 1 IN IP4 127.0.0.1",
                              groups=[("BUNDLE", mids)], msid_semantic=" WMS", media=sections)


def answer_offer(offer: SessionDescription, peer: LitePeer) -> SessionDescription:
    """Receive-only answer: every sendonly m-line recvonly with all its codecs."""
    sections: list[MediaSection] = []
    for m in offer.media:
        if m.rejected:
            sections.append(MediaSection(m.kind, 0, m.proto, m.fmt[:1], DISCARD, mid=m.mid))
            continue
        if m.is_datachannel:
            a = MediaSection(m.kind, 9, m.proto, list(m.fmt), DISCARD, mid=m.mid,
                             sctp_port=SCTP_PORT, max_message_size=262144)
        else:
            a = MediaSection(
                m.kind, 9, m.proto, list(m.fmt), DISCARD, mid=m.mid,
                direction="recvonly" if m.direction == "sendonly" else "inactive",
                rtcp_mux=True, rtcp_rsize=m.rtcp_rsize,
                codecs=[Codec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp,
                              list(c.rtcp_fb)) for c in m.codecs],
                extmaps=[Extmap(e.id, e.uri) for e in m.extmaps],
            )
        peer.fill(a, "active")
        sections.append(a)
    return _description(sections)


def audio_offer(peer: LitePeer, *, cid: str, ssrc: int, mid: str = "0",
                payload_type: int = 111) -> SessionDescription:
    """Publisher offer with one sendonly Opus m-line (mid and audio-level extensions)."""
    m = MediaSection(
        "audio", 9, PROTO, [str(payload_type)], DISCARD, mid=mid, direction="sendonly",
        rtcp_mux=True, rtcp_rsize=True, msid=[("-", cid)],
        codecs=[Codec(payload_type, "opus", 48000, 2, "minptime=10;useinbandfec=1", ["nack"])],
        extmaps=[Extmap(1, EXT_AUDIO_LEVEL), Extmap(4, EXT_MID)],
        ssrcs=[(ssrc, "cname", "lite"), (ssrc, "msid", f"- {cid}")],
    )
    peer.fill(m, "actpass")
    return _description([m])


def video_offer(peer: LitePeer, *, cid: str, ssrc: int, rtx_ssrc: int = 0, mid: str = "0",
                rids: list[str] | None = None) -> SessionDescription:
    """Publisher offer with one sendonly VP8 (+RTX) m-line; simulcast when `rids` are given."""
    fb = ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"]
    m = MediaSection(
        "video", 9, PROTO, ["96", "97"], DISCARD, mid=mid, direction="sendonly",
        rtcp_mux=True, rtcp_rsize=True, msid=[("-", cid)],
        codecs=[Codec(96, "VP8", 90000, None, None, fb), Codec(97, "rtx", 90000, None, "apt=96")],
        extmaps=[Extmap(4, EXT_MID), Extmap(10, EXT_RID), Extmap(11, EXT_REPAIRED_RID),
                 Extmap(3, EXT_TRANSPORT_CC)],
    )
    if rids:
        m.rids = [sdpmod.Rid(r, "send") for r in rids]
        m.simulcast = "send " + ";".join(rids)
    else:
        m.ssrcs = [(ssrc, "cname", "lite"), (ssrc, "msid", f"- {cid}")]
        if rtx_ssrc:
            m.ssrcs += [(rtx_ssrc, "cname", "lite"), (rtx_ssrc, "msid", f"- {cid}")]
            m.ssrc_groups = [("FID", [ssrc, rtx_ssrc])]
    peer.fill(m, "actpass")
    return _description([m])


def ssrc_tracks(desc: SessionDescription) -> dict[int, str]:
    """SSRC → track id from the `a=ssrc:<n> msid:<stream> <track>` lines of sendonly m-lines."""
    out: dict[int, str] = {}
    for m in desc.media:
        if m.direction != "sendonly":
            continue
        for ssrc, name, value in m.ssrcs:
            if name == "msid" and value:
                out[ssrc] = value.partition(" ")[2].strip()
    return out


class LiteClient:
    """LiveKit signalling plus lite peers: subscribes to everything, can publish audio."""

    def __init__(self, url: str, token: str, *, label: str = "", auto_subscribe: bool = True,
                 protocol: int = 16) -> None:
        self.url = url
        self.token = token
        self.label = label
        self.auto_subscribe = auto_subscribe
        self.protocol = protocol
        self.subscriber = LitePeer(controlling=False)
        self.publisher: LitePeer | None = None
        self.join: rtc.JoinResponse | None = None
        self.tracks: dict[int, str] = {}  # subscribed SSRC -> track sid
        self.on_offer: Callable[[SessionDescription], None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._joined: asyncio.Future[rtc.JoinResponse] | None = None
        self._subscriber_up: asyncio.Future[None] | None = None
        self._waiters: list[tuple[Callable[[rtc.SignalResponse], bool],
                                  asyncio.Future[rtc.SignalResponse]]] = []
        self.closed = False

    async def connect(self, timeout: float = 15.0) -> rtc.JoinResponse:
        loop = asyncio.get_running_loop()
        self._joined = loop.create_future()
        self._subscriber_up = loop.create_future()
        query = urlencode({"protocol": self.protocol, "sdk": "python", "version": "1.2.1",
                           "auto_subscribe": int(self.auto_subscribe), "adaptive_stream": 0})
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(
            f"{self.url}/rtc?{query}", headers={"Authorization": f"Bearer {self.token}"},
            max_msg_size=0, autoping=True)
        await self.subscriber.gather()
        self._tasks.append(loop.create_task(self._read()))
        self._tasks.append(loop.create_task(self._ping()))
        async with asyncio.timeout(timeout):
            self.join = await self._joined
            await self._subscriber_up
        return self.join

    async def send(self, request: rtc.SignalRequest) -> None:
        assert self._ws is not None
        await self._ws.send_bytes(request.SerializeToString())

    async def wait_for(self, match: Callable[[rtc.SignalResponse], bool],
                       timeout: float = 10.0) -> rtc.SignalResponse:
        future: asyncio.Future[rtc.SignalResponse] = asyncio.get_running_loop().create_future()
        self._waiters.append((match, future))
        return await asyncio.wait_for(future, timeout)

    async def _ping(self) -> None:
        while not self.closed:
            await asyncio.sleep(4.0)
            req = rtc.SignalRequest()
            req.ping_req.timestamp = int(time.time() * 1000)
            with contextlib.suppress(Exception):
                await self.send(req)

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                continue
            response = rtc.SignalResponse()
            response.ParseFromString(msg.data)
            which = response.WhichOneof("message")
            if which == "join" and self._joined is not None and not self._joined.done():
                self._joined.set_result(response.join)
            elif which == "offer":
                await self._answer(response.offer)
            for match, future in list(self._waiters):
                if not future.done() and match(response):
                    future.set_result(response)
                    self._waiters.remove((match, future))

    async def _answer(self, offer: rtc.SessionDescription) -> None:
        desc = sdpmod.parse(offer.sdp)
        self.tracks.update(ssrc_tracks(desc))
        if self.on_offer is not None:
            self.on_offer(desc)
        answer = answer_offer(desc, self.subscriber)
        req = rtc.SignalRequest()
        req.answer.type = "answer"
        req.answer.sdp = str(answer)
        req.answer.id = offer.id
        await self.send(req)
        assert self._subscriber_up is not None
        if not self._subscriber_up.done():
            try:
                await self.subscriber.connect(desc, dtls_server=False)
                self._subscriber_up.set_result(None)
            except Exception as exc:
                self._subscriber_up.set_exception(exc)

    async def publish_audio(self, cid: str, ssrc: int, name: str = "mic") -> str:
        """AddTrack, then offer a sendonly Opus m-line; returns the track sid when connected."""
        req = rtc.SignalRequest()
        req.add_track.cid = cid
        req.add_track.name = name
        req.add_track.type = models.TrackType.AUDIO
        req.add_track.source = models.TrackSource.MICROPHONE
        published = self.wait_for(lambda r: r.WhichOneof("message") == "track_published"
                                  and r.track_published.cid == cid)
        await self.send(req)
        sid = (await published).track_published.track.sid
        self.publisher = LitePeer(controlling=True)
        await self.publisher.gather()
        offer = audio_offer(self.publisher, cid=cid, ssrc=ssrc)
        answered = self.wait_for(lambda r: r.WhichOneof("message") == "answer")
        req = rtc.SignalRequest()
        req.offer.type = "offer"
        req.offer.sdp = str(offer)
        req.offer.id = 1
        await self.send(req)
        answer = sdpmod.parse((await answered).answer.sdp)
        await self.publisher.connect(answer, dtls_server=answer.media[0].setup == "active")
        return str(sid)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            req = rtc.SignalRequest()
            req.leave.reason = models.DisconnectReason.CLIENT_INITIATED
            await self.send(req)
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._session is not None:
            await self._session.close()
        await self.subscriber.close()
        if self.publisher is not None:
            await self.publisher.close()

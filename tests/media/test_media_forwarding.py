"""Forwarding through two PeerTransports: a lite publisher → roost → a lite subscriber.

No room, no signalling: the publisher's offer goes to one transport, the up-track it
announces is added to another transport, whose offer the subscriber answers. Tests then
write RTP/RTCP on one side and read what roost makes of it on the other (SSRC/seq/PT/
extension rewriting, RED stripping, audio levels, NACK from the cache and upstream, PLI
throttling, sender/receiver reports, REMB, keyframe gating, simulcast layer choice).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.engine.packets import rtp, vp8_payload
from tests.helpers.wait import until
from tests.media.liteclient import LitePeer, answer_offer, audio_offer, video_offer
from tests.media.peers import within

from roost.media import PeerTransport
from roost.media.downtrack import SubscriberDownTrack
from roost.media.rtcp import (
    RtcpNack,
    RtcpPacket,
    RtcpPli,
    RtcpReceiverReport,
    RtcpRemb,
    RtcpSdes,
    RtcpSenderReport,
    build_nack,
    build_pli,
    ntp_now,
    parse_compound,
)
from roost.media.rtp import find_extension, parse_header, parse_red
from roost.media.sdp import Codec, SessionDescription, parse
from roost.media.types import MediaInfo
from roost.media.uptrack import MediaUpTrack

PUB_SSRC, PUB_RTX = 0x1111, 0x2222
MID_ID, LEVEL_ID, RID_ID = 4, 1, 10


@dataclass
class Side:
    """A lite peer and what it received."""

    peer: LitePeer
    rtp: list[bytes] = field(default_factory=list)
    rtcp: list[RtcpPacket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.peer.on_rtp = self.rtp.append
        self.peer.on_rtcp = lambda raw: self.rtcp.extend(parse_compound(raw))

    def of(self, kind: type) -> list[Any]:
        return [p for p in self.rtcp if isinstance(p, kind)]


@dataclass
class Rig:
    pub_t: PeerTransport
    sub_t: PeerTransport
    pub: Side
    subs: list[Side]
    up: MediaUpTrack
    downs: list[SubscriberDownTrack]
    offers: list[SessionDescription]
    started: list[tuple[MediaInfo, Any]]
    ended: list[str]

    @property
    def sub(self) -> Side:
        return self.subs[0]

    @property
    def down(self) -> SubscriberDownTrack:
        return self.downs[0]


async def open_rig(offer_for: Callable[[LitePeer], SessionDescription], subscribers: int = 1,
                   answer_edit: Callable[[SessionDescription], None] | None = None) -> Rig:
    pub_t = PeerTransport(addresses=["127.0.0.1"], label="pub")
    started: list[tuple[MediaInfo, Any]] = []
    ended: list[str] = []
    pub_t.on_track = lambda media, up: started.append((media, up))
    pub_t.on_track_ended = ended.append
    pub = LitePeer(controlling=True)
    await pub.gather()
    answer = parse(await within(pub_t.handle_offer(str(offer_for(pub)))))
    await within(pub.connect(answer, dtls_server=True))
    await until(lambda: pub_t.connected)
    assert len(started) == 1
    up = started[0][1]
    sub_t = PeerTransport(addresses=["127.0.0.1"], label="sub")
    downs = [sub_t.add_track(up, track_sid=f"TR_{i}", stream_id=f"PA_pub|TR_{i}")
             for i in range(subscribers)]
    offer = parse(await within(sub_t.create_offer()))
    sub = LitePeer(controlling=False)
    await sub.gather()
    sub_answer = answer_offer(offer, sub)
    if answer_edit is not None:
        answer_edit(sub_answer)
    await within(sub_t.handle_answer(str(sub_answer)))
    await within(sub.connect(offer, dtls_server=False))
    await until(lambda: sub_t.connected)
    side = Side(sub)
    return Rig(pub_t, sub_t, Side(pub), [side], up, downs, [offer],  # type: ignore[arg-type]
               started, ended)


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        for peer in (rig.pub.peer, rig.sub.peer):
            await peer.close()
        await within(rig.pub_t.close())
        await within(rig.sub_t.close())


def opus(seq: int, level: int = 30, ssrc: int = PUB_SSRC, payload: bytes | None = None) -> bytes:
    ext = [(LEVEL_ID, bytes([0x80 | level])), (MID_ID, b"0")]
    body = payload if payload is not None else b"\xfc" + bytes([seq & 0xFF]) * 40
    return rtp(seq, seq * 960, ssrc=ssrc, pt=111, payload=body, ext=ext)


def vp8(seq: int, keyframe: bool = False, ssrc: int = PUB_SSRC, rid: str | None = None) -> bytes:
    ext = [(MID_ID, b"0")] + ([(RID_ID, rid.encode())] if rid else [])
    return rtp(seq, seq * 3000, ssrc=ssrc, pt=96, marker=True,
               payload=vp8_payload(seq & 0x7FFF, keyframe=keyframe), ext=ext)


def rtx_of(pkt: bytes, rtx_seq: int) -> bytes:
    h = parse_header(pkt)
    osn = struct.pack("!H", h.sequence_number)
    return rtp(rtx_seq, h.timestamp, ssrc=PUB_RTX, pt=97,
               payload=osn + pkt[h.payload_offset : h.payload_end], ext=[(MID_ID, b"0")])


async def test_audio_is_forwarded_on_the_subscribers_own_stream(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: audio_offer(p, cid="mic", ssrc=PUB_SSRC))
    rigs.append(rig)
    media, up = rig.started[0]
    assert (media.kind, media.track_id, media.mime_type) == ("audio", "mic", "audio/opus")
    assert media.ssrcs == [PUB_SSRC]
    sent = [opus(100 + i) for i in range(20)]
    for pkt in sent:
        rig.pub.peer.send_rtp(pkt)
    await until(lambda: len(rig.sub.rtp) == 20)
    down = rig.down
    section = rig.offers[0].media_by_mid(down.mid)
    assert section is not None and section.direction == "sendonly"
    assert section.msid == [("PA_pub|TR_0", "TR_0")]
    for i, (pkt, got) in enumerate(zip(sent, rig.sub.rtp, strict=True)):
        h, g = parse_header(pkt), parse_header(got)
        assert g.ssrc == down.ssrc != PUB_SSRC
        assert g.sequence_number == h.sequence_number and g.payload_type == 111
        assert got[g.payload_offset : g.payload_end] == pkt[h.payload_offset : h.payload_end]
        mid = find_extension(got, g, MID_ID)
        assert mid is not None and got[mid[0] : mid[0] + mid[1]] == down.mid.encode(), i
        level = find_extension(got, g, LEVEL_ID)
        assert level is not None and got[level[0]] == 0x80 | 30
    assert up.packets_in == 20 and rig.sub_t.rtp.rtp_out == 20
    # the /metrics counters (telemetry.MediaStats): bumped per packet in, synced out
    assert up.stats.packets_in == 20 and up.stats.bytes_in == 20 * 41
    down.sync_stats()
    assert down.stats.packets_out == 20 and down.stats.bytes_out == 20 * 41


async def test_audio_level_extension_feeds_the_up_track(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: audio_offer(p, cid="mic", ssrc=PUB_SSRC))
    rigs.append(rig)
    assert rig.up.audio_level == 0.0
    for i in range(25):  # 500 ms of 20 ms packets at -20 dBov
        rig.pub.peer.send_rtp(opus(i, level=20))
    await until(lambda: rig.up.audio_level > 10 ** (-35 / 20))
    for i in range(25, 75):  # silence brings it back down
        rig.pub.peer.send_rtp(opus(i, level=127))
    await until(lambda: rig.up.audio_level < 10 ** (-35 / 20))


async def test_red_is_kept_for_red_subscribers_and_stripped_for_others(rigs: list[Rig]) -> None:
    def red_offer(peer: LitePeer) -> SessionDescription:
        desc = audio_offer(peer, cid="mic", ssrc=PUB_SSRC)
        m = desc.media[0]
        m.codecs.append(Codec(63, "red", 48000, 2, "111/111"))
        m.fmt.append("63")
        return desc

    def opus_only(answer: SessionDescription) -> None:  # the second subscriber has no RED
        m = answer.media[2]
        m.codecs = [c for c in m.codecs if c.name != "red"]
        m.fmt = [str(c.payload_type) for c in m.codecs]

    rig = await open_rig(red_offer, subscribers=2, answer_edit=opus_only)
    rigs.append(rig)
    assert rig.up.mime_type == "audio/red"
    primary, redundant = b"\xfc" + b"P" * 30, b"\xfc" + b"R" * 20
    red_payload = bytes([0x80 | 111, (960 >> 6) & 0xFF, ((960 & 0x3F) << 2), len(redundant),
                         111]) + redundant + primary
    for i in range(5):
        pkt = rtp(i, i * 960, ssrc=PUB_SSRC, pt=63, payload=red_payload,
                  ext=[(LEVEL_ID, b"\x9e"), (MID_ID, b"0")])
        rig.pub.peer.send_rtp(pkt)
    await until(lambda: len(rig.sub.rtp) == 10)
    by_ssrc: dict[int, list[bytes]] = {}
    for got in rig.sub.rtp:
        by_ssrc.setdefault(parse_header(got).ssrc, []).append(got)
    red_down, opus_down = rig.downs
    with_red = by_ssrc[red_down.ssrc][0]
    h = parse_header(with_red)
    assert h.payload_type == 63
    blocks = parse_red(with_red, h.payload_offset, h.payload_end)
    assert [b[0] for b in blocks] == [111, 111]
    stripped = by_ssrc[opus_down.ssrc][0]
    h = parse_header(stripped)
    assert h.payload_type == 111 and stripped[h.payload_offset : h.payload_end] == primary


async def test_subscriber_nack_is_answered_from_the_cache_over_rtx(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: video_offer(p, cid="cam", ssrc=PUB_SSRC, rtx_ssrc=PUB_RTX))
    rigs.append(rig)
    sendto = rig.sub_t.rtp._sendto
    assert sendto is not None
    dropped: list[int] = []

    def lossy(data: bytes) -> None:  # roost → subscriber loses the 5th packet once
        seq = struct.unpack_from("!H", data, 2)[0]
        if seq == 4 and not dropped and 127 < data[0] < 192 and data[1] & 0x7F == 96:
            dropped.append(seq)
            return
        sendto(data)

    rig.sub_t.rtp._sendto = lossy
    for i in range(10):
        rig.pub.peer.send_rtp(vp8(i, keyframe=i == 0))
    await until(lambda: len(rig.sub.rtp) == 9)
    assert dropped == [4]
    down = rig.down
    rig.sub.peer.send_rtcp(build_nack(0x5151, down.ssrc, [4]))
    await until(lambda: len(rig.sub.rtp) == 10)
    again = rig.sub.rtp[-1]
    h = parse_header(again)
    assert h.ssrc == down.rtx_ssrc and h.payload_type == 97
    assert struct.unpack_from("!H", again, h.payload_offset)[0] == 4
    original = vp8(4)
    oh = parse_header(original)
    assert again[h.payload_offset + 2 : h.payload_end] == original[oh.payload_offset :]
    assert down.retransmitted == 1 and down.nacks_in == 1


async def test_publisher_loss_is_nacked_upstream_and_repaired_over_rtx(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: video_offer(p, cid="cam", ssrc=PUB_SSRC, rtx_ssrc=PUB_RTX))
    rigs.append(rig)
    packets = [vp8(i, keyframe=i == 0) for i in range(10)]
    for i, pkt in enumerate(packets):
        if i != 5:
            rig.pub.peer.send_rtp(pkt)
    await until(lambda: any(5 in n.lost and n.media_ssrc == PUB_SSRC
                            for n in rig.pub.of(RtcpNack)))
    rig.pub.peer.send_rtp(rtx_of(packets[5], 1))
    await until(lambda: len(rig.sub.rtp) == 10)
    assert parse_header(rig.sub.rtp[-1]).sequence_number == 5
    assert rig.up.rtx_in == 1 and rig.up.nacks_sent >= 1
    # RTX of packets that arrived already (libwebrtc probes its uplink that way) is not
    # forwarded again, and does not count towards the layer's bitrate
    octets = rig.up.layers[0].octets
    rig.pub.peer.send_rtp(rtx_of(packets[5], 2))
    rig.pub.peer.send_rtp(rtx_of(packets[3], 3))
    await until(lambda: rig.up.rtx_duplicates == 2)
    rig.pub.peer.send_rtp(vp8(10))
    await until(lambda: len(rig.sub.rtp) == 11)
    assert parse_header(rig.sub.rtp[-1]).sequence_number == 10
    assert rig.up.layers[0].octets == octets + len(vp8(10))


async def test_a_nack_for_what_roost_never_had_goes_upstream(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: video_offer(p, cid="cam", ssrc=PUB_SSRC, rtx_ssrc=PUB_RTX))
    rigs.append(rig)
    for i in range(10):
        if i != 7:
            rig.pub.peer.send_rtp(vp8(i, keyframe=i == 0))
    await until(lambda: len(rig.sub.rtp) == 9)
    for la in rig.up.layers:  # roost's own NACKing gave up already
        la.nack._missing.clear()
    before = len(rig.pub.of(RtcpNack))
    rig.sub.peer.send_rtcp(build_nack(0x5151, rig.down.ssrc, [7]))
    await until(lambda: len(rig.pub.of(RtcpNack)) > before)
    assert rig.pub.of(RtcpNack)[-1].lost == [7]
    rig.pub.peer.send_rtp(rtx_of(vp8(7), 1))  # the publisher's answer reaches the subscriber
    await until(lambda: len(rig.sub.rtp) == 10)


async def test_subscriber_pli_reaches_the_publisher_throttled(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: video_offer(p, cid="cam", ssrc=PUB_SSRC, rtx_ssrc=PUB_RTX))
    rigs.append(rig)
    rig.pub.peer.send_rtp(vp8(0, keyframe=True))
    await until(lambda: len(rig.sub.rtp) == 1)
    assert rig.pub.of(RtcpPli) == []
    rig.sub.peer.send_rtcp(build_pli(0x5151, rig.down.ssrc))
    await until(lambda: len(rig.pub.of(RtcpPli)) == 1)
    assert rig.pub.of(RtcpPli)[0].media_ssrc == PUB_SSRC
    rig.sub.peer.send_rtcp(build_pli(0x5151, rig.down.ssrc))
    await until(lambda: rig.down.plis_in == 2)
    await asyncio.sleep(0.2)  # a wait for nothing: no second PLI may reach the publisher
    assert len(rig.pub.of(RtcpPli)) == 1  # throttled: 500 ms for the low layer


async def test_a_new_video_subscriber_waits_for_a_keyframe_and_asks_for_one(
    rigs: list[Rig],
) -> None:
    rig = await open_rig(lambda p: video_offer(p, cid="cam", ssrc=PUB_SSRC, rtx_ssrc=PUB_RTX))
    rigs.append(rig)
    for i in range(5):
        rig.pub.peer.send_rtp(vp8(i))
    await until(lambda: len(rig.pub.of(RtcpPli)) >= 1)
    assert rig.sub.rtp == []
    rig.pub.peer.send_rtp(vp8(5, keyframe=True))
    rig.pub.peer.send_rtp(vp8(6))
    await until(lambda: len(rig.sub.rtp) == 2)
    assert [parse_header(p).sequence_number for p in rig.sub.rtp] == [5, 6]


async def test_sender_reports_follow_the_publishers_clock(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: audio_offer(p, cid="mic", ssrc=PUB_SSRC))
    rigs.append(rig)
    for i in range(5):
        rig.pub.peer.send_rtp(opus(i))
    await until(lambda: len(rig.sub.rtp) == 5)
    ntp = ntp_now()
    rig.pub.peer.send_rtcp(bytes(RtcpSenderReport(PUB_SSRC, ntp, 4 * 960, 5, 200)))
    await until(lambda: rig.up.clocks.get(0) is not None)
    rig.sub_t.rtp._sender_reports(time.monotonic())
    await until(lambda: len(rig.sub.of(RtcpSenderReport)) == 1)
    sr = rig.sub.of(RtcpSenderReport)[0]
    assert sr.ssrc == rig.down.ssrc and sr.packet_count == 5
    assert abs(sr.rtp_timestamp - 4 * 960) < 48000 * 0.5  # same clock, no offset yet
    sdes = rig.sub.of(RtcpSdes)[0]
    assert sdes.chunks[0].ssrc == rig.down.ssrc


async def test_publishers_get_receiver_reports_and_remb(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: audio_offer(p, cid="mic", ssrc=PUB_SSRC))
    rigs.append(rig)
    for i in range(10):
        if i != 3:
            rig.pub.peer.send_rtp(opus(i))
    await until(lambda: rig.up.packets_in == 9)
    rig.pub_t.rtp._publisher_reports(time.monotonic())
    await until(lambda: bool(rig.pub.of(RtcpRemb)))
    rr = rig.pub.of(RtcpReceiverReport)[0]
    block = rr.reports[0]
    assert block.ssrc == PUB_SSRC and block.highest_sequence == 9 and block.packets_lost == 1
    assert block.fraction_lost == 25  # 1 of 10, as 1/256ths
    remb = rig.pub.of(RtcpRemb)[0]
    assert remb.ssrcs == [PUB_SSRC] and remb.bitrate >= 1_000_000
    assert rig.up.loss_fraction == pytest.approx(0.1, abs=0.01)


async def test_removed_track_goes_inactive_stops_and_its_section_is_reused(
    rigs: list[Rig],
) -> None:
    rig = await open_rig(lambda p: audio_offer(p, cid="mic", ssrc=PUB_SSRC))
    rigs.append(rig)
    rig.pub.peer.send_rtp(opus(0))
    await until(lambda: len(rig.sub.rtp) == 1)
    mid = rig.down.mid
    rig.sub_t.remove_track(rig.down)
    offer = parse(await within(rig.sub_t.create_offer()))
    section = offer.media_by_mid(mid)
    assert section is not None and section.direction == "inactive"
    assert section.msid == [] and section.ssrcs == []
    await within(rig.sub_t.handle_answer(str(answer_offer(offer, rig.sub.peer))))
    rig.pub.peer.send_rtp(opus(1))
    await until(lambda: rig.up.packets_in == 2)
    await asyncio.sleep(0.05)  # a wait for nothing: the packet must not be forwarded
    assert len(rig.sub.rtp) == 1 and rig.up.downs == []

    # The next audio track reuses the inactive m-line instead of growing the SDP.
    again = rig.sub_t.add_track(rig.up, track_sid="TR_again", stream_id="PA_pub|TR_again")
    offer = parse(await within(rig.sub_t.create_offer()))
    assert [m.mid for m in offer.media] == [m.mid for m in rig.offers[0].media]
    section = offer.media_by_mid(mid)
    assert section is not None and section.direction == "sendonly"
    assert section.msid == [("PA_pub|TR_again", "TR_again")] and again.mid == mid
    await within(rig.sub_t.handle_answer(str(answer_offer(offer, rig.sub.peer))))
    rig.pub.peer.send_rtp(opus(2))
    await until(lambda: len(rig.sub.rtp) == 2)
    assert parse_header(rig.sub.rtp[-1]).ssrc == again.ssrc != rig.down.ssrc


async def test_a_reoffer_that_stops_sending_ends_the_track(rigs: list[Rig]) -> None:
    rig = await open_rig(lambda p: audio_offer(p, cid="mic", ssrc=PUB_SSRC))
    rigs.append(rig)
    again = audio_offer(rig.pub.peer, cid="mic", ssrc=PUB_SSRC)
    again.media[0].direction = "inactive"
    again.media[0].msid = []
    answer = parse(await within(rig.pub_t.handle_offer(str(again))))
    assert answer.media[0].direction == "inactive"
    assert rig.ended == ["0"] and rig.up.closed


async def test_simulcast_layers_are_learnt_by_rid_and_chosen_by_max_quality(
    rigs: list[Rig],
) -> None:
    rig = await open_rig(lambda p: video_offer(p, cid="cam", ssrc=0, rids=["q", "h", "f"]))
    rigs.append(rig)
    media = rig.started[0][0]
    assert media.rids == ["q", "h", "f"]
    ssrcs = {"q": 0xA0, "h": 0xB0, "f": 0xC0}
    seq = dict.fromkeys(ssrcs, 0)

    def frame(rid: str, keyframe: bool = False) -> None:
        rig.pub.peer.send_rtp(vp8(seq[rid], keyframe=keyframe, ssrc=ssrcs[rid], rid=rid))
        seq[rid] += 1

    for rid in ssrcs:
        frame(rid, keyframe=True)
    await until(lambda: all(la.packets for la in rig.up.layers))
    assert {la.rid: la.ssrc for la in rig.up.layers} == ssrcs
    down = rig.down
    down.select_layer(time.monotonic())
    assert down.target_layer() == 2
    for rid in ssrcs:
        frame(rid, keyframe=True)
    await until(lambda: bool(rig.sub.rtp))
    down.set_max_quality(0)
    assert down.target_layer() == 0
    frame("q")  # not a keyframe: no switch yet
    frame("f")
    count = len(rig.sub.rtp)
    frame("q", keyframe=True)
    await until(lambda: len(rig.sub.rtp) > count)
    h = parse_header(rig.sub.rtp[-1])
    assert h.ssrc == down.ssrc
    last_seqs = [parse_header(p).sequence_number for p in rig.sub.rtp]
    assert last_seqs == sorted(last_seqs) and len(set(last_seqs)) == len(last_seqs)


async def test_subscriber_remb_caps_the_simulcast_layer_and_pauses_below_the_lowest(
    rigs: list[Rig],
) -> None:
    """REMB → layer choice (downgrade at once, upgrade after the hold) and pause/resume."""
    rig = await open_rig(lambda p: video_offer(p, cid="cam", ssrc=0, rids=["q", "h", "f"]))
    rigs.append(rig)
    down = rig.down
    down.allow_pause = True  # as with rtc.congestion_control.allow_pause or the client's wish
    states: list[bool] = []
    down.on_stream_state = states.append
    ssrcs = {"q": 0xA0, "h": 0xB0, "f": 0xC0}
    sizes = {"q": 100, "h": 500, "f": 1100}  # ~50 / ~210 / ~450 kbps at 50 frames/s
    remb = [150_000]  # fits q only
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            for rid, ssrc in ssrcs.items():
                rig.pub.peer.send_rtp(rtp(n, n * 1800, ssrc=ssrc, pt=96, marker=True,
                                          payload=vp8_payload(n & 0x7FFF, keyframe=n % 5 == 0,
                                                              size=sizes[rid]),
                                          ext=[(MID_ID, b"0"), (RID_ID, rid.encode())]))
            if n % 5 == 0:
                rig.sub.peer.send_rtcp(bytes(RtcpRemb(0x5151, remb[0], [down.ssrc])))
            n += 1
            await asyncio.sleep(0.02)

    def layer_of(pkt: bytes) -> str:
        return "q" if len(pkt) < 300 else "h" if len(pkt) < 800 else "f"

    def received_since(count: int) -> set[str]:
        return {layer_of(p) for p in rig.sub.rtp[count:]}

    task = asyncio.create_task(publish())
    try:
        # Low estimate: once the layer bitrates are measured only q is forwarded.
        await until(lambda: down.bandwidth_share is not None and down.target_layer() == 0
                    and rig.up.layer_bitrates()[0] > 0, timeout=5)
        await until(lambda: bool(rig.sub.rtp) and layer_of(rig.sub.rtp[-1]) == "q", timeout=3)
        count = len(rig.sub.rtp)
        await asyncio.sleep(0.5)  # a window in which no layer but q may arrive
        assert len(rig.sub.rtp) > count and received_since(count) == {"q"}
        rates = rig.up.layer_bitrates()
        assert rates[0] < 150_000 < rates[1] < rates[2]

        # High estimate: the switch up waits for the hold time.
        remb[0] = 2_000_000
        raised = time.monotonic()
        await asyncio.sleep(1.2)  # a wait for nothing: no switch up within the hold time
        assert down.target_layer() == 0
        await until(lambda: layer_of(rig.sub.rtp[-1]) == "f", timeout=4)
        assert time.monotonic() - raised >= 2.0

        # Below the lowest layer for PAUSE_HOLD: paused, nothing forwarded, the room is told.
        remb[0] = 20_000
        lowered = time.monotonic()
        await until(lambda: layer_of(rig.sub.rtp[-1]) == "q", timeout=2)  # lowest, at first
        await until(lambda: states == [False], timeout=4)
        assert time.monotonic() - lowered >= 2.0
        await asyncio.sleep(0.1)  # packets forwarded before the pause still land
        count = len(rig.sub.rtp)
        await asyncio.sleep(0.5)  # a wait for nothing: paused, no packet may arrive
        assert len(rig.sub.rtp) == count and down.paused

        # Room again: resumed (after the hold) with a keyframe, and the room is told.
        remb[0] = 2_000_000
        await until(lambda: states == [False, True], timeout=4)
        await until(lambda: len(rig.sub.rtp) > count, timeout=2)
        assert not down.paused
        await until(lambda: layer_of(rig.sub.rtp[-1]) == "f", timeout=2)
    finally:
        stop.set()
        await task

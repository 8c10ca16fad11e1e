"""Loss recovery through roost with a real encoder: the official SDK publishes VP8, a lite
client (tests/media/liteclient.py) subscribes, loses packets on purpose and asks roost for
them (NACK → RTX from roost's cache) and for a fresh keyframe (PLI → the SDK's encoder).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc
from tests.helpers.sdk import Rooms, ServerInfo
from tests.helpers.wait import until
from tests.media.liteclient import LiteClient

from roost.media.rtcp import build_nack, build_pli
from roost.media.rtp import parse_header, parse_vp8
from roost.media.sdp import SessionDescription

WIDTH, HEIGHT = 320, 240


@dataclass
class Seen:
    at: float
    ssrc: int
    seq: int
    keyframe: bool
    payload: bytes


async def _camera(source: rtc.VideoSource) -> None:
    n = 0
    while True:
        rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        rgba[:, (n * 8) % WIDTH :, 1] = 200
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA,
                                            rgba.tobytes()))
        n += 1
        await asyncio.sleep(1 / 15)


async def nack_and_pli_recovery(srv: dict[str, str]) -> dict[str, Any]:
    server = ServerInfo.from_dict(srv)
    rooms = Rooms(server)
    lite = LiteClient(server.url, server.token("lite", "recovery"), label="lite")
    offers: list[SessionDescription] = []
    lite.on_offer = offers.append
    seen: list[Seen] = []
    rtx_ssrcs: set[int] = set()

    def on_rtp(plain: bytes) -> None:
        h = parse_header(plain)
        payload = bytes(plain[h.payload_offset : h.payload_end])
        keyframe = False
        if h.ssrc not in rtx_ssrcs and payload:
            with contextlib.suppress(ValueError):
                keyframe = parse_vp8(plain, h.payload_offset, h.payload_end).keyframe
        seen.append(Seen(time.monotonic(), h.ssrc, h.sequence_number, keyframe, payload))

    lite.subscriber.on_rtp = on_rtp
    feeding: asyncio.Task[None] | None = None
    try:
        alice = await rooms.join("alice", "recovery")
        await lite.connect()
        source = rtc.VideoSource(WIDTH, HEIGHT)
        feeding = asyncio.ensure_future(_camera(source))
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        await asyncio.wait_for(alice.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)), 15)
        await until(lambda: sum(s.keyframe for s in seen) >= 1, 15, "first keyframe")
        for desc in offers:
            for m in desc.media:
                for semantics, group in m.ssrc_groups:
                    if semantics == "FID" and len(group) == 2:
                        rtx_ssrcs.add(group[1])
        media = [s for s in seen if s.ssrc not in rtx_ssrcs]
        ssrc = media[-1].ssrc
        await asyncio.sleep(1.0)

        # NACK: pretend the newest packet was lost; roost resends it over RTX from its cache.
        lost = [s for s in seen if s.ssrc == ssrc][-1]
        lite.subscriber.send_rtcp(build_nack(0x4C495445, ssrc, [lost.seq]))
        await until(lambda: any(s.ssrc in rtx_ssrcs and s.payload[2:] == lost.payload
                                and struct.unpack_from("!H", s.payload)[0] == lost.seq
                                for s in seen), 2, "RTX retransmission")

        # PLI: a fresh keyframe from the SDK's encoder, twice (past roost's PLI throttle).
        delays = []
        for _ in range(2):
            await asyncio.sleep(1.2)
            asked = time.monotonic()
            lite.subscriber.send_rtcp(build_pli(0x4C495445, ssrc))
            await until(lambda t=asked: any(s.keyframe and s.at > t for s in seen), 3,
                        "keyframe after PLI")
            delays.append(next(s.at for s in seen if s.keyframe and s.at > asked) - asked)
        return {"retransmitted_seq": lost.seq, "pli_to_keyframe_ms": [round(d * 1000)
                                                                       for d in delays]}
    finally:
        if feeding is not None:
            feeding.cancel()
        await lite.close()
        await rooms.close()

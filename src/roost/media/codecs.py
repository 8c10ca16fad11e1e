"""Which codecs roost forwards, and how they appear in publisher answers and subscriber offers.

roost forwards encoded RTP, so a subscriber must receive exactly the codec the publisher
sends: Opus (RED-wrapped when the publisher offers `audio/red`), VP8 or H.264
(packetization-mode 1), plus RTX for video. Payload types and header-extension ids on a
subscriber connection are roost's own (one table per connection, consistent across the
BUNDLE); publisher ids are mapped onto them per packet by the forwarder.
"""

from __future__ import annotations

from roost.media.rtp import (
    EXT_ABS_CAPTURE_TIME,
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_REPAIRED_RID,
    EXT_RID,
    EXT_TRANSPORT_CC,
)
from roost.media.sdp import Codec, Extmap, MediaSection

EXT_VIDEO_ORIENTATION = "urn:3gpp:video-orientation"
EXT_TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
EXT_DEPENDENCY_DESCRIPTOR = (
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"
)

# Extensions roost accepts from publishers. transport-cc only with
# rtc.congestion_control.enabled, on video as livekit-server does (`PUBLISH_VIDEO_TRANSPORT_CC`):
# roost then sends TWCC feedback (twcc_feedback.py); without it the publisher gets receiver
# reports and REMB only, and one that negotiated transport-wide CC would wait for feedback.
PUBLISH_AUDIO_EXTENSIONS = {EXT_MID, EXT_RID, EXT_REPAIRED_RID, EXT_AUDIO_LEVEL,
                            EXT_ABS_SEND_TIME, EXT_ABS_CAPTURE_TIME}
PUBLISH_VIDEO_EXTENSIONS = {EXT_MID, EXT_RID, EXT_REPAIRED_RID, EXT_ABS_SEND_TIME,
                            EXT_ABS_CAPTURE_TIME, EXT_VIDEO_ORIENTATION, EXT_TOFFSET,
                            EXT_DEPENDENCY_DESCRIPTOR}
PUBLISH_VIDEO_TRANSPORT_CC = PUBLISH_VIDEO_EXTENSIONS | {EXT_TRANSPORT_CC}

# Header extensions roost offers subscribers, with the ids it uses on every connection.
SUBSCRIBE_EXTENSIONS: dict[str, list[tuple[str, int]]] = {
    "audio": [(EXT_AUDIO_LEVEL, 1), (EXT_ABS_SEND_TIME, 2), (EXT_TRANSPORT_CC, 3),
              (EXT_MID, 4)],
    "video": [(EXT_ABS_SEND_TIME, 2), (EXT_TRANSPORT_CC, 3), (EXT_MID, 4),
              (EXT_VIDEO_ORIENTATION, 13)],
}
# Publisher extensions whose bytes are copied to subscribers (the rest are dropped or,
# like mid and abs-send-time, written fresh by the forwarder).
FORWARDED_EXTENSIONS = (EXT_AUDIO_LEVEL, EXT_VIDEO_ORIENTATION)

AUDIO_FEEDBACK = ("nack",)
VIDEO_FEEDBACK = ("goog-remb", "ccm fir", "nack", "nack pli")
# With congestion control the publisher's video also gets transport-cc (its encoder then
# follows a send-side estimate built from roost's feedback; the REMB stays as a cap). Audio
# keeps only nack and no transport-cc extension, as in livekit-server's publisher config.
PUBLISH_VIDEO_FEEDBACK_CC = ("transport-cc", *VIDEO_FEEDBACK)
# Towards subscribers roost also sends transport-wide sequence numbers and reads their
# TWCC feedback (twcc.py); REMB stays for clients without it.
SUBSCRIBE_AUDIO_FEEDBACK = (*AUDIO_FEEDBACK, "transport-cc")
SUBSCRIBE_VIDEO_FEEDBACK = (*VIDEO_FEEDBACK, "transport-cc")

_DYNAMIC_PTS = [*range(96, 128), *range(35, 64)]


def codec_key(c: Codec) -> tuple[str, int, int, str]:
    """Identity of a codec configuration (name, clock, channels, sorted fmtp)."""
    fmtp = ";".join(sorted(f"{k}={v}" for k, v in c.fmtp_params().items()))
    return (c.name.lower(), c.clock_rate, c.channels or 1, fmtp)


def mime_of(kind: str, c: Codec) -> str:
    """"audio/opus", "video/VP8", ... as LiveKit writes mime types."""
    return f"{kind}/{c.name}"


def _copy(c: Codec, feedback: tuple[str, ...], pt: int | None = None,
          fmtp: str | None = None) -> Codec:
    fb = [f for f in c.rtcp_fb if f in feedback] if feedback else []
    return Codec(c.payload_type if pt is None else pt, c.name, c.clock_rate, c.channels,
                 c.fmtp if fmtp is None else fmtp, fb)


def _offered(m: MediaSection) -> list[Codec]:
    order = [int(f) for f in m.fmt if f.isdigit()]
    by_pt = {c.payload_type: c for c in m.codecs if c.name}
    return [by_pt[pt] for pt in order if pt in by_pt]


def _rtx_for(codecs: list[Codec], pt: int) -> Codec | None:
    for c in codecs:
        if c.name.lower() == "rtx" and c.fmtp_params().get("apt") == str(pt):
            return c
    return None


def choose_publish_codecs(m: MediaSection, transport_cc: bool = False) -> list[Codec]:
    """Codecs to accept from a publisher's section, the one it should send first ([] = none).

    Audio: RED (wrapping Opus) first when offered, then Opus. Video: the first offered VP8
    or packetization-mode=1 H.264, then its RTX. rtcp-fb is limited to what roost serves
    (with `transport_cc`, video's transport-cc too).
    """
    offered = _offered(m)
    if m.kind == "audio":
        opus = next((c for c in offered if c.name.lower() == "opus"), None)
        if opus is None:
            return []
        chosen = [_copy(opus, AUDIO_FEEDBACK)]
        red = next((c for c in offered if c.name.lower() == "red"
                    and (c.fmtp or "").split("/")[0] == str(opus.payload_type)), None)
        if red is not None:
            chosen.insert(0, _copy(red, ()))
        return chosen
    for c in offered:
        name = c.name.lower()
        if name == "vp8" or (name == "h264"
                             and c.fmtp_params().get("packetization-mode") == "1"):
            chosen = [_copy(c, PUBLISH_VIDEO_FEEDBACK_CC if transport_cc else VIDEO_FEEDBACK)]
            rtx = _rtx_for(offered, c.payload_type)
            if rtx is not None:
                chosen.append(_copy(rtx, ()))
            return chosen
    return []


def accepted_extmaps(m: MediaSection, transport_cc: bool = False) -> list[Extmap]:
    """The offered header extensions roost accepts on a publisher section (with
    `transport_cc`, transport-wide-cc on video too)."""
    if m.kind == "audio":
        wanted = PUBLISH_AUDIO_EXTENSIONS
    else:
        wanted = PUBLISH_VIDEO_TRANSPORT_CC if transport_cc else PUBLISH_VIDEO_EXTENSIONS
    return [Extmap(e.id, e.uri) for e in m.extmaps if e.uri in wanted]


class PayloadTypes:
    """One subscriber connection's payload-type table: a codec keeps its number everywhere."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[object, ...], int] = {}
        self._used: set[int] = set()

    def get(self, key: tuple[object, ...], preferred: int) -> int:
        pt = self._by_key.get(key)
        if pt is not None:
            return pt
        if preferred in self._used or not 0 <= preferred <= 127:
            free = [p for p in _DYNAMIC_PTS if p not in self._used]
            if not free:
                raise ValueError("no free payload type on this connection")
            preferred = free[0]
        self._by_key[key] = preferred
        self._used.add(preferred)
        return preferred


def answer_subscribe_codecs(kind: str, publish: list[Codec], offer: MediaSection) -> list[Codec]:
    """Single PC: codecs for answering a client's recvonly section with a forwarded track.

    The offer's payload types and parameters: Opus (RED first only when the offered RED
    wraps the publisher's own Opus payload type, since RED blocks are copied verbatim), or
    the publisher's video codec with its RTX. [] when the section cannot carry the track.
    """
    offered = _offered(offer)
    if kind == "audio":
        opus = next((c for c in offered if c.name.lower() == "opus"), None)
        pub_opus = next((c for c in publish if c.name.lower() == "opus"), None)
        if opus is None or pub_opus is None:
            return []
        out = [_copy(opus, SUBSCRIBE_AUDIO_FEEDBACK)]
        if opus.payload_type == pub_opus.payload_type and any(
                c.name.lower() == "red" for c in publish):
            red = next((c for c in offered if c.name.lower() == "red"
                        and (c.fmtp or "").split("/")[0] == str(opus.payload_type)), None)
            if red is not None:
                out.insert(0, _copy(red, ()))
        return out
    main = publish[0]
    for c in offered:
        if c.name.lower() != main.name.lower() or c.clock_rate != main.clock_rate:
            continue
        if c.name.lower() == "h264" and c.fmtp_params().get("packetization-mode") != "1":
            continue
        out = [_copy(c, SUBSCRIBE_VIDEO_FEEDBACK)]
        rtx = _rtx_for(offered, c.payload_type)
        if rtx is not None:
            out.append(_copy(rtx, ()))
        return out
    return []


def subscribe_codecs(kind: str, publish: list[Codec], table: PayloadTypes) -> list[Codec]:
    """The codecs of a subscriber section forwarding a track published with `publish`.

    Same configuration as the publisher's, payload types from the connection's table. RED
    is offered only while its inner Opus payload type is unchanged (the forwarder copies
    RED blocks verbatim); otherwise the subscriber gets plain Opus.
    """
    out: list[Codec] = []
    if kind == "audio":
        opus = next(c for c in publish if c.name.lower() == "opus")
        red = next((c for c in publish if c.name.lower() == "red"), None)
        opus_pt = table.get(codec_key(opus), opus.payload_type)
        if red is not None and opus_pt == opus.payload_type:
            red_pt = table.get(codec_key(red), red.payload_type)
            out.append(Codec(red_pt, red.name, red.clock_rate, red.channels,
                             f"{opus_pt}/{opus_pt}", []))
        out.append(Codec(opus_pt, opus.name, opus.clock_rate, opus.channels, opus.fmtp,
                         list(SUBSCRIBE_AUDIO_FEEDBACK)))
        return out
    main = publish[0]
    main_pt = table.get(codec_key(main), main.payload_type)
    out.append(Codec(main_pt, main.name, main.clock_rate, main.channels, main.fmtp,
                     list(SUBSCRIBE_VIDEO_FEEDBACK)))
    rtx = next((c for c in publish if c.name.lower() == "rtx"), None)
    rtx_pt = table.get(("rtx", codec_key(main)), rtx.payload_type if rtx else main_pt + 1)
    out.append(Codec(rtx_pt, "rtx", main.clock_rate, None, f"apt={main_pt}", []))
    return out

"""Building the m-lines roost puts in its offers and answers (data, media, rejected)."""

from __future__ import annotations

from roost.media import sdp as sdpmod
from roost.media.datachannel import MAX_RECEIVE_SIZE
from roost.media.sdp import MediaSection

SCTP_PORT = 5000
DISCARD = "IN IP4 0.0.0.0"

_EXT = "urn:ietf:params:rtp-hdrext:"
COMMON_EXTENSIONS = {
    _EXT + "sdes:mid",
    _EXT + "sdes:rtp-stream-id",
    _EXT + "sdes:repaired-rtp-stream-id",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time",
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
}
AUDIO_EXTENSIONS = COMMON_EXTENSIONS | {_EXT + "ssrc-audio-level"}
VIDEO_EXTENSIONS = COMMON_EXTENSIONS | {
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension",
    _EXT + "toffset",
    "urn:3gpp:video-orientation",
}


def answer_media(offer: MediaSection) -> MediaSection:
    """Answer an audio/video section. Media is not forwarded yet: accept it as inactive.

    Keeping the section in the bundle (rather than port 0) keeps the client's transceiver
    alive, so switching to `recvonly` + codec selection later is a local change here.
    Header extensions the SFU will want are echoed even now: libwebrtc offers later
    m-lines only with the extensions an earlier answer accepted.
    The caller adds the transport attributes (ICE, DTLS, candidates).
    """
    offered = {f for f in offer.fmt if f.isdigit()}
    codecs = [c for c in offer.codecs if str(c.payload_type) in offered and c.name][:1]
    wanted = AUDIO_EXTENSIONS if offer.kind == "audio" else VIDEO_EXTENSIONS
    extmaps = [sdpmod.Extmap(e.id, e.uri) for e in offer.extmaps if e.uri in wanted]
    return MediaSection(
        kind=offer.kind,
        port=9,
        proto=offer.proto,
        fmt=[str(c.payload_type) for c in codecs] or offer.fmt[:1],
        connection=DISCARD,
        mid=offer.mid,
        direction="inactive",
        rtcp_mux=True,
        extmaps=extmaps,
        codecs=[sdpmod.Codec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp)
                for c in codecs],
    )


def data_section(mid: str | None, *, legacy: bool = False) -> MediaSection:
    """The SCTP (data channel) section, modern (RFC 8841) or legacy `DTLS/SCTP` form."""
    section = MediaSection(
        kind="application",
        port=9,
        proto="DTLS/SCTP" if legacy else "UDP/DTLS/SCTP",
        fmt=[str(SCTP_PORT)] if legacy else ["webrtc-datachannel"],
        connection=DISCARD,
        mid=mid,
        max_message_size=MAX_RECEIVE_SIZE,
    )
    if legacy:
        section.sctpmap = f"{SCTP_PORT} webrtc-datachannel 65535"
    else:
        section.sctp_port = SCTP_PORT
    return section


def reject(offer: MediaSection) -> MediaSection:
    """A rejected (port 0) section with the same kind, proto and mid."""
    return MediaSection(
        kind=offer.kind, port=0, proto=offer.proto, fmt=offer.fmt[:1] or ["0"],
        connection=DISCARD, mid=offer.mid,
    )

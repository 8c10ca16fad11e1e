"""Building the m-lines roost puts in its offers and answers (data, media, rejected)."""

from __future__ import annotations

from roost.media import sdp as sdpmod
from roost.media.codecs import accepted_extmaps, choose_publish_codecs
from roost.media.datachannel import MAX_RECEIVE_SIZE
from roost.media.sdp import MediaSection

SCTP_PORT = 5000
DISCARD = "IN IP4 0.0.0.0"

RECEIVING = ("sendonly", "sendrecv")


def publishes(offer: MediaSection) -> bool:
    """Does this offered audio/video section send media to roost?"""
    return offer.kind in ("audio", "video") and (offer.direction or "sendrecv") in RECEIVING


def offered_rids(offer: MediaSection) -> list[str]:
    """Simulcast rids the section sends, in `a=simulcast` order (paused `~` stripped)."""
    sends = [r.id for r in offer.rids if r.direction == "send"]
    if not offer.simulcast or not sends:
        return []
    words = offer.simulcast.split()
    spec = words[words.index("send") + 1] if "send" in words[:-1] else ""
    order = [alt.split(",")[0].lstrip("~") for alt in spec.split(";") if alt]
    return [r for r in order if r in sends] or sends


def answer_media(offer: MediaSection, transport_cc: bool = False) -> MediaSection:
    """Answer an audio/video section: `recvonly` with roost's codecs when it publishes.

    Sections the client does not send on (the SDK's recvonly transceivers) are answered
    `inactive` but kept in the bundle, so the client's transceivers stay alive.
    Header extensions are echoed even then: libwebrtc offers later m-lines only with the
    extensions an earlier answer accepted. `transport_cc` (rtc.congestion_control.enabled)
    keeps video's transport-wide-cc extension and feedback. The caller adds the transport
    attributes.
    """
    codecs = choose_publish_codecs(offer, transport_cc) if publishes(offer) else []
    receiving = bool(codecs)
    if not receiving:
        offered = {f for f in offer.fmt if f.isdigit()}
        codecs = [sdpmod.Codec(c.payload_type, c.name, c.clock_rate, c.channels, c.fmtp)
                  for c in offer.codecs if str(c.payload_type) in offered and c.name][:1]
    section = MediaSection(
        kind=offer.kind,
        port=9,
        proto=offer.proto,
        fmt=[str(c.payload_type) for c in codecs] or offer.fmt[:1],
        connection=DISCARD,
        mid=offer.mid,
        direction="recvonly" if receiving else "inactive",
        rtcp_mux=True,
        rtcp_rsize=offer.rtcp_rsize,
        extmaps=accepted_extmaps(offer, transport_cc),
        codecs=codecs,
    )
    rids = offered_rids(offer) if receiving else []
    if rids:
        section.rids = [sdpmod.Rid(r, "recv") for r in rids]
        section.simulcast = "recv " + ";".join(rids)
    return section


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

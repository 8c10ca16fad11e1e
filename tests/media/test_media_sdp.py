"""The SDP model: parsing what the official SDK sends, round-trips, and hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.media.sdp import MAX_SDP_SIZE, SdpError, check_ice_credentials, parse

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_rust_sdk_publisher_offer_is_fully_parsed() -> None:
    """The publisher offer libwebrtc (livekit 1.2.1) sends after publish_track(audio)."""
    offer = parse(fixture("rust_sdk_publisher_offer_audio.sdp"))
    assert offer.bundle() == ["7", "8", "9", "10", "11", "12", "13", "14"]
    assert offer.extmap_allow_mixed
    kinds = [(m.kind, m.mid, m.direction) for m in offer.media]
    assert kinds[0] == ("audio", "7", "recvonly")
    assert kinds[6] == ("application", "13", None)
    assert kinds[7] == ("audio", "14", "sendonly")

    audio = offer.media[7]
    assert audio.msid == [("-", "b2d7e859-55a5-44d9-b81b-d070d7420af0")]
    opus = audio.codec(111)
    assert opus is not None and opus.rtpmap == "opus/48000/2"
    assert opus.fmtp_params()["useinbandfec"] == "1"
    assert "transport-cc" in opus.rtcp_fb
    red = audio.codec(63)
    assert red is not None and red.name == "red" and red.fmtp == "111/111"
    assert {e.uri for e in audio.extmaps} >= {
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "urn:ietf:params:rtp-hdrext:sdes:mid",
    }
    ssrc = audio.ssrcs[0][0]
    assert audio.ssrc_attribute(ssrc, "msid") == "- b2d7e859-55a5-44d9-b81b-d070d7420af0"
    assert audio.rtcp_mux and audio.rtcp_rsize

    video = offer.media[3]
    assert video.kind == "video" and video.codec(96) is not None
    assert video.codec(96).name == "VP8"  # type: ignore[union-attr]
    apt = next(c for c in video.codecs if c.name == "rtx").fmtp_params()["apt"]
    assert video.codec(int(apt)) is not None

    data = offer.media[6]
    assert data.is_datachannel and data.sctp_port == 5000
    ufrag, pwd = offer.ice_credentials(offer.media[0])
    assert check_ice_credentials(ufrag, pwd) == (ufrag, pwd)
    assert offer.dtls_fingerprints(offer.media[0])[0].algorithm == "sha-256"
    assert offer.dtls_setup(offer.media[0]) == "actpass"


@pytest.mark.parametrize(
    "name",
    [
        "rust_sdk_publisher_offer_initial.sdp",
        "rust_sdk_publisher_offer_audio.sdp",
        "rust_sdk_subscriber_answer.sdp",
    ],
)
def test_round_trip_is_stable(name: str) -> None:
    """Serialising the model and parsing it again gives the same model."""
    first = parse(fixture(name))
    again = parse(str(first))
    assert again == first


def test_simulcast_lines_parse() -> None:
    text = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n"
        "a=extmap:4/sendonly urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
        "a=rid:q send\r\na=rid:h send pt=96;max-width=1280\r\na=simulcast:send q;h\r\n"
        "a=ssrc-group:FID 1 2\r\n"
    )
    m = parse(text).media[0]
    assert [r.id for r in m.rids] == ["q", "h"] and m.rids[1].params == "pt=96;max-width=1280"
    assert m.simulcast == "send q;h"
    assert m.extmaps[0].direction == "sendonly"
    assert m.ssrc_groups == [("FID", [1, 2])]


HEADER = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "\x00\x01\x02",
        "v=1\r\n",
        HEADER,  # no media
        HEADER + "m=audio\r\n",
        HEADER + "m=audio x UDP 0\r\n",
        HEADER + "m=audio 99999 UDP 0\r\n",
        HEADER + "m=audio 9 UDP 0\r\nnot a line\r\n",
        HEADER + "m=audio 9 UDP 0\r\na=rtpmap:abc opus/48000\r\n",
        HEADER + "m=audio 9 UDP 0\r\na=rtpmap:500 opus/48000\r\n",
        HEADER + "m=audio 9 UDP 0\r\na=fingerprint:sha-256 zz\r\n",
        HEADER + "m=audio 9 UDP 0\r\na=extmap:0 urn:x\r\n",
        HEADER + "m=audio 9 UDP 0\r\na=ssrc:-4 cname:x\r\n",
        HEADER + "m=audio 9 UDP 0\r\na=" + "x" * 9000 + "\r\n",
        HEADER + "m=audio 9 UDP 0\r\n" + "m=audio 9 UDP 0\r\n" * 300,
        "v=0\r\n" + "a=x\r\n" * (MAX_SDP_SIZE // 5 + 10),  # over the size cap
    ],
)
def test_hostile_sdp_raises_sdp_error(text: str) -> None:
    with pytest.raises(SdpError):
        parse(text)


def test_sdp_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse(b"\xff\xfe")


@pytest.mark.parametrize(
    ("ufrag", "pwd"),
    [(None, "a" * 22), ("abcd", None), ("ab", "a" * 22), ("abcd", "short"), ("ab d", "a" * 22)],
)
def test_bad_ice_credentials(ufrag: str | None, pwd: str | None) -> None:
    with pytest.raises(SdpError):
        check_ice_credentials(ufrag, pwd)

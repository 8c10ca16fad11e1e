"""SRTP: keys split like aiortc's DTLS transport, protect/unprotect round trips, failures."""

from __future__ import annotations

import os

import pytest
from aiortc import rtcdtlstransport as aiodtls
from pylibsrtp import Policy, Session
from tests.engine.packets import rtp

from roost.media.srtp import (
    AEAD_AES_128_GCM,
    AES128_CM_SHA1_80,
    DTLS_SRTP_LABEL,
    PROFILES,
    SrtpContext,
    SrtpError,
    SrtpProfile,
    SrtpSession,
)

RTCP_RR = bytes([0x80, 201, 0, 1]) + b"\x00\x00\x00\x07"


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=lambda p: p.name)
def test_server_and_client_contexts_talk_both_ways(profile: SrtpProfile) -> None:
    material = os.urandom(profile.keying_material_length)
    server = SrtpContext.from_keying_material(material, profile, is_server=True)
    client = SrtpContext.from_keying_material(material, profile, is_server=False)
    for seq in range(5):
        pkt = rtp(seq, seq * 960, payload=os.urandom(1100))
        wire = server.tx.protect(pkt)
        assert wire != pkt and len(wire) > len(pkt)
        assert client.rx.unprotect(wire) == pkt
        back = client.tx.protect(pkt)
        assert server.rx.unprotect(back) == pkt
    assert client.rx.unprotect_rtcp(server.tx.protect_rtcp(RTCP_RR)) == RTCP_RR


@pytest.mark.parametrize("profile", [AES128_CM_SHA1_80, AEAD_AES_128_GCM], ids=lambda p: p.name)
def test_keys_match_aiortcs_dtls_transport_layout(profile: SrtpProfile) -> None:
    theirs = next(p for p in aiodtls.SRTP_PROFILES if p.openssl_profile.decode() == profile.name)
    material = os.urandom(profile.keying_material_length)
    # aiortc as DTLS client sends with key index 0; we are the DTLS server and receive it.
    their_tx = Session(
        Policy(
            key=theirs.get_key_and_salt(material, 0),
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=theirs.libsrtp_profile,
        )
    )
    ours = SrtpContext.from_keying_material(material, profile, is_server=True)
    pkt = rtp(1, 2)
    assert ours.rx.unprotect(their_tx.protect(pkt)) == pkt


def test_from_dtls_reads_the_negotiated_profile_and_role() -> None:
    class FakeSsl:
        def __init__(self) -> None:
            self.material = os.urandom(60)

        def get_selected_srtp_profile(self) -> bytes:
            return b"SRTP_AES128_CM_SHA1_80"

        def export_keying_material(self, label: bytes, length: int) -> bytes:
            assert label == DTLS_SRTP_LABEL
            return self.material[:length]

    class FakeDtls:
        def __init__(self, ssl: FakeSsl, role: str) -> None:
            self._ssl, self._role = ssl, role

    ssl = FakeSsl()
    server = SrtpContext.from_dtls(FakeDtls(ssl, "server"))
    client = SrtpContext.from_dtls(FakeDtls(ssl, "client"))
    pkt = rtp(9, 9)
    assert client.rx.unprotect(server.tx.protect(pkt)) == pkt


def test_tampered_replayed_and_oversized_packets_raise_srtp_error() -> None:
    key = os.urandom(30)
    tx, rx = SrtpSession(key, outbound=True), SrtpSession(key, outbound=False)
    wire = tx.protect(rtp(1, 1))
    bad = bytearray(wire)
    bad[-1] ^= 1
    with pytest.raises(SrtpError, match="authentication"):
        rx.unprotect(bytes(bad))
    rx.unprotect(wire)
    with pytest.raises(SrtpError, match="replay"):
        rx.unprotect(wire)
    with pytest.raises(SrtpError, match="too long"):
        tx.protect(bytes(5000))
    assert isinstance(SrtpError("x"), ValueError)


def test_protect_view_and_buffer_types() -> None:
    key = os.urandom(30)
    tx, rx = SrtpSession(key), SrtpSession(key, outbound=False)
    pkt = rtp(3, 3)
    view = tx.protect_view(bytearray(pkt))
    assert rx.unprotect(memoryview(bytes(view))) == pkt
    # retransmission of the same index is allowed on the sending side
    again = tx.protect(pkt)
    assert len(again) == len(view)


def test_short_keying_material_is_refused() -> None:
    with pytest.raises(ValueError, match="keying material"):
        SrtpContext.from_keying_material(b"short", AES128_CM_SHA1_80, True)

"""SRTP/SRTCP protect and unprotect over libsrtp (pylibsrtp), keyed from a DTLS-SRTP export.

Key derivation matches aiortc's `RTCDtlsTransport._setup_srtp`: export
`2 * (key + salt)` bytes with label "EXTRACTOR-dtls_srtp"; the layout is
client key | server key | client salt | server salt, and the DTLS server sends
with the server half. The per-packet path calls libsrtp directly on a preallocated
buffer (no per-call cffi allocation); `protect_view` even skips the copy out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pylibsrtp
from pylibsrtp import Policy, Session

Buffer = bytes | bytearray | memoryview

DTLS_SRTP_LABEL = b"EXTRACTOR-dtls_srtp"
SRTP_MAX_TRAILER = 16 + 128  # tag + MKI, as in pylibsrtp
SRTCP_MAX_TRAILER = 4 + 16 + 128
BUFFER_SIZE = 4096

try:  # the cffi binding lets us skip pylibsrtp's per-call allocations
    from pylibsrtp._binding import ffi as _ffi
    from pylibsrtp._binding import lib as _lib

    _FAST = True
except ImportError:  # pragma: no cover - depends on the installed wheel
    _FAST = False

_ERRORS: list[str] = list(getattr(pylibsrtp, "ERRORS", []))


class SrtpError(ValueError):
    """SRTP/SRTCP processing failed (authentication, replay, malformed packet)."""


@dataclass(frozen=True)
class SrtpProfile:
    """One DTLS-SRTP protection profile (RFC 5764 / RFC 7714)."""

    name: str  # OpenSSL's name, as negotiated in the use_srtp extension
    libsrtp_profile: int
    key_length: int
    salt_length: int

    @property
    def keying_material_length(self) -> int:
        """Bytes to export from DTLS for this profile."""
        return 2 * (self.key_length + self.salt_length)


AES128_CM_SHA1_80 = SrtpProfile(
    "SRTP_AES128_CM_SHA1_80", Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14
)
AEAD_AES_128_GCM = SrtpProfile(
    "SRTP_AEAD_AES_128_GCM", Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12
)
AEAD_AES_256_GCM = SrtpProfile(
    "SRTP_AEAD_AES_256_GCM", Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32, 12
)
PROFILES: dict[str, SrtpProfile] = {
    p.name: p for p in (AEAD_AES_256_GCM, AEAD_AES_128_GCM, AES128_CM_SHA1_80)
}


def split_keying_material(
    material: bytes, profile: SrtpProfile, is_server: bool
) -> tuple[bytes, bytes]:
    """(tx key+salt, rx key+salt) from exported keying material, for our DTLS role."""
    if len(material) < profile.keying_material_length:
        raise ValueError(
            f"{profile.name} needs {profile.keying_material_length} bytes of keying material,"
            f" got {len(material)}"
        )
    k, s = profile.key_length, profile.salt_length

    def key_and_salt(idx: int) -> bytes:
        return material[idx * k : idx * k + k] + material[2 * k + idx * s : 2 * k + idx * s + s]

    client, server = key_and_salt(0), key_and_salt(1)
    return (server, client) if is_server else (client, server)


class SrtpSession:
    """One direction of SRTP: either outbound (protect) or inbound (unprotect), any SSRC."""

    def __init__(
        self,
        key: bytes,
        profile: SrtpProfile | str = AES128_CM_SHA1_80,
        outbound: bool = True,
        window_size: int = 1024,
    ) -> None:
        prof = PROFILES[profile] if isinstance(profile, str) else profile
        policy = Policy(
            key=bytes(key),
            ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND,
            srtp_profile=prof.libsrtp_profile,
        )
        policy.allow_repeat_tx = True  # NACK retransmissions reuse the packet index
        policy.window_size = window_size
        self.profile = prof
        self.outbound = outbound
        self._session = Session(policy)
        self._fast = _FAST and hasattr(self._session, "_srtp")
        if self._fast:
            self._ctx: Any = self._session._srtp[0]
            self._cbuf: Any = _ffi.new("unsigned char[]", BUFFER_SIZE)
            self._view = memoryview(_ffi.buffer(self._cbuf))
            self._len: Any = _ffi.new("int *")

    def _run(self, func: Any, packet: Buffer, trailer: int) -> int:
        n = len(packet)
        if n > BUFFER_SIZE - trailer:
            raise SrtpError(f"packet of {n} bytes is too long for SRTP")
        self._view[:n] = packet
        self._len[0] = n
        rc = func(self._ctx, self._cbuf, self._len)
        if rc:
            raise SrtpError(_ERRORS[rc] if 0 <= rc < len(_ERRORS) else f"libsrtp error {rc}")
        return int(self._len[0])

    def protect(self, packet: Buffer) -> bytes:
        """SRTP-protect an RTP packet."""
        if self._fast:
            return self._view[: self._run(_lib.srtp_protect, packet, SRTP_MAX_TRAILER)].tobytes()
        return self._wrap(self._session.protect, packet)

    def protector(self) -> Callable[[Buffer], bytes]:
        """`protect` as a closure: one call, no attribute lookups, one shared work buffer.

        For the forwarding hot path, which protects every packet for every subscriber. All
        protectors of the process (one thread: the event loop) share a single buffer that
        the result is copied out of at once, so a fan-out to hundreds of subscribers keeps
        touching the same few cache lines instead of one buffer per session.
        """
        if not self._fast:
            return self.protect
        view, cbuf, plen = _shared_buffer()
        ctx = self._ctx
        srtp_protect = _lib.srtp_protect
        limit = BUFFER_SIZE - SRTP_MAX_TRAILER

        def protect(packet: Buffer, _owner: SrtpSession = self) -> bytes:
            # _owner keeps the session (and the libsrtp context `ctx` points into) alive
            n = len(packet)
            if n > limit:
                raise SrtpError(f"packet of {n} bytes is too long for SRTP")
            view[:n] = packet
            plen[0] = n
            rc = srtp_protect(ctx, cbuf, plen)
            if rc:
                raise SrtpError(_ERRORS[rc] if 0 <= rc < len(_ERRORS) else f"libsrtp error {rc}")
            return view[: plen[0]].tobytes()

        return protect

    def protect_view(self, packet: Buffer) -> memoryview | bytes:
        """Like `protect`, returning a view into the session buffer valid until the next call."""
        if self._fast:
            return self._view[: self._run(_lib.srtp_protect, packet, SRTP_MAX_TRAILER)]
        return self._wrap(self._session.protect, packet)

    def protect_rtcp(self, packet: Buffer) -> bytes:
        """SRTCP-protect an RTCP (compound) packet."""
        if self._fast:
            n = self._run(_lib.srtp_protect_rtcp, packet, SRTCP_MAX_TRAILER)
            return self._view[:n].tobytes()
        return self._wrap(self._session.protect_rtcp, packet)

    def unprotect(self, packet: Buffer) -> bytes:
        """Authenticate and decrypt an SRTP packet; SrtpError on failure or replay."""
        if self._fast:
            return self._view[: self._run(_lib.srtp_unprotect, packet, 0)].tobytes()
        return self._wrap(self._session.unprotect, packet)

    def unprotect_rtcp(self, packet: Buffer) -> bytes:
        """Authenticate and decrypt an SRTCP packet; SrtpError on failure or replay."""
        if self._fast:
            return self._view[: self._run(_lib.srtp_unprotect_rtcp, packet, 0)].tobytes()
        return self._wrap(self._session.unprotect_rtcp, packet)

    @staticmethod
    def _wrap(func: Any, packet: Buffer) -> bytes:
        try:
            return bytes(func(bytes(packet)))
        except pylibsrtp.Error as exc:
            raise SrtpError(str(exc)) from None


_SHARED: tuple[memoryview, Any, Any] | None = None


def _shared_buffer() -> tuple[memoryview, Any, Any]:
    global _SHARED
    if _SHARED is None:
        cbuf = _ffi.new("unsigned char[]", BUFFER_SIZE)
        _SHARED = (memoryview(_ffi.buffer(cbuf)), cbuf, _ffi.new("int *"))
    return _SHARED


class _DtlsLike(Protocol):
    _role: str
    _ssl: Any


@dataclass
class SrtpContext:
    """The pair of sessions one DTLS transport needs: `tx` protects, `rx` unprotects."""

    tx: SrtpSession
    rx: SrtpSession

    @classmethod
    def from_keying_material(
        cls, material: bytes, profile: SrtpProfile | str, is_server: bool
    ) -> SrtpContext:
        """Build both directions from exported keying material."""
        prof = PROFILES[profile] if isinstance(profile, str) else profile
        tx_key, rx_key = split_keying_material(material, prof, is_server)
        return cls(SrtpSession(tx_key, prof, outbound=True), SrtpSession(rx_key, prof, False))

    @classmethod
    def from_dtls(cls, dtls: _DtlsLike) -> SrtpContext:
        """Derive from a connected aiortc `RTCDtlsTransport` (its pyOpenSSL connection)."""
        name = dtls._ssl.get_selected_srtp_profile()
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name not in PROFILES:
            raise SrtpError(f"DTLS negotiated no supported SRTP profile ({name!r})")
        prof = PROFILES[name]
        material = dtls._ssl.export_keying_material(DTLS_SRTP_LABEL, prof.keying_material_length)
        return cls.from_keying_material(bytes(material), prof, dtls._role == "server")

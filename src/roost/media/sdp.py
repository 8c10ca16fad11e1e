"""SDP for WebRTC: a parsed model of session and media sections, and its serialisation.

Parsing is size-capped and raises `SdpError` (a `ValueError`) on anything malformed;
unknown attributes are kept so a description round-trips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from roost.limits import Limits

MAX_SDP_SIZE = Limits().sdp_size  # 256 KiB
MAX_LINE_LENGTH = 8192
MAX_MEDIA_SECTIONS = 256
MAX_LINES = 20_000

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
SETUP_ROLES = ("actpass", "active", "passive", "holdconn")
_ICE_CHARS = re.compile(r"^[A-Za-z0-9+/]+$")
_TOKEN = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$")


class SdpError(ValueError):
    """A session description that is malformed, oversized or unusable."""


@dataclass
class Codec:
    """One RTP payload type of a media section: rtpmap, fmtp and rtcp-fb."""

    payload_type: int
    name: str = ""
    clock_rate: int = 0
    channels: int | None = None
    fmtp: str | None = None
    rtcp_fb: list[str] = field(default_factory=list)

    @property
    def rtpmap(self) -> str:
        suffix = f"/{self.channels}" if self.channels else ""
        return f"{self.name}/{self.clock_rate}{suffix}"

    def fmtp_params(self) -> dict[str, str]:
        """The fmtp line as a dict (`apt=96;x=1` -> {"apt": "96", "x": "1"})."""
        params: dict[str, str] = {}
        for item in (self.fmtp or "").split(";"):
            key, _, value = item.strip().partition("=")
            if key:
                params[key.lower()] = value
        return params


@dataclass
class Extmap:
    """An RTP header extension mapping (`a=extmap:<id>[/<direction>] <uri> [<attrs>]`)."""

    id: int
    uri: str
    direction: str | None = None
    attributes: str | None = None

    def __str__(self) -> str:
        ident = f"{self.id}/{self.direction}" if self.direction else str(self.id)
        tail = f" {self.attributes}" if self.attributes else ""
        return f"{ident} {self.uri}{tail}"


@dataclass
class Rid:
    """A restriction identifier (`a=rid:<id> <send|recv> [<params>]`), for simulcast."""

    id: str
    direction: str
    params: str | None = None

    def __str__(self) -> str:
        return f"{self.id} {self.direction}" + (f" {self.params}" if self.params else "")


@dataclass
class Fingerprint:
    """A DTLS certificate fingerprint; algorithm lower case, value upper-case hex pairs."""

    algorithm: str
    value: str


@dataclass
class MediaSection:
    """One m= section with the attributes WebRTC uses parsed into fields."""

    kind: str
    port: int
    proto: str
    fmt: list[str]
    connection: str | None = None
    bandwidth: list[str] = field(default_factory=list)
    mid: str | None = None
    direction: str | None = None
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)
    setup: str | None = None
    candidates: list[str] = field(default_factory=list)  # values after "a=candidate:"
    end_of_candidates: bool = False
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    bundle_only: bool = False
    msid: list[tuple[str, str]] = field(default_factory=list)  # (stream id, track id)
    codecs: list[Codec] = field(default_factory=list)
    extmaps: list[Extmap] = field(default_factory=list)
    ssrcs: list[tuple[int, str, str | None]] = field(default_factory=list)  # ssrc, attr, value
    ssrc_groups: list[tuple[str, list[int]]] = field(default_factory=list)
    rids: list[Rid] = field(default_factory=list)
    simulcast: str | None = None
    sctp_port: int | None = None
    max_message_size: int | None = None
    sctpmap: str | None = None  # legacy `a=sctpmap:<port> webrtc-datachannel <streams>`
    extra: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        """A port of 0 rejects (or, with bundle-only, defers) the section."""
        return self.port == 0 and not self.bundle_only

    @property
    def is_datachannel(self) -> bool:
        return self.kind == "application" and "SCTP" in self.proto.upper()

    def codec(self, payload_type: int) -> Codec | None:
        return next((c for c in self.codecs if c.payload_type == payload_type), None)

    def ssrc_attribute(self, ssrc: int, name: str) -> str | None:
        """The value of `a=ssrc:<ssrc> <name>:<value>`, e.g. cname or msid."""
        return next((v for s, n, v in self.ssrcs if s == ssrc and n == name), None)

    def lines(self) -> list[str]:
        """The section serialised, one SDP line per item, without line endings."""
        out = [f"m={self.kind} {self.port} {self.proto} {' '.join(self.fmt)}"]
        if self.connection:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidth]
        out += [f"a=candidate:{c}" for c in self.candidates]
        if self.end_of_candidates:
            out.append("a=end-of-candidates")
        if self.ice_ufrag is not None:
            out.append(f"a=ice-ufrag:{self.ice_ufrag}")
        if self.ice_pwd is not None:
            out.append(f"a=ice-pwd:{self.ice_pwd}")
        if self.ice_options:
            out.append(f"a=ice-options:{self.ice_options}")
        out += [f"a=fingerprint:{f.algorithm} {f.value}" for f in self.fingerprints]
        if self.setup:
            out.append(f"a=setup:{self.setup}")
        if self.mid is not None:
            out.append(f"a=mid:{self.mid}")
        if self.bundle_only:
            out.append("a=bundle-only")
        out += [f"a=extmap:{e}" for e in self.extmaps]
        if self.direction:
            out.append(f"a={self.direction}")
        out += [f"a=msid:{s} {t}" if t else f"a=msid:{s}" for s, t in self.msid]
        if self.rtcp_mux:
            out.append("a=rtcp-mux")
        if self.rtcp_rsize:
            out.append("a=rtcp-rsize")
        for c in self.codecs:
            if c.name:
                out.append(f"a=rtpmap:{c.payload_type} {c.rtpmap}")
            out += [f"a=rtcp-fb:{c.payload_type} {fb}" for fb in c.rtcp_fb]
            if c.fmtp is not None:
                out.append(f"a=fmtp:{c.payload_type} {c.fmtp}")
        out += [f"a=rid:{r}" for r in self.rids]
        if self.simulcast:
            out.append(f"a=simulcast:{self.simulcast}")
        for semantics, group in self.ssrc_groups:
            out.append(f"a=ssrc-group:{semantics} {' '.join(map(str, group))}")
        for ssrc, name, value in self.ssrcs:
            out.append(f"a=ssrc:{ssrc} {name}" + (f":{value}" if value is not None else ""))
        if self.sctpmap:
            out.append(f"a=sctpmap:{self.sctpmap}")
        if self.sctp_port is not None:
            out.append(f"a=sctp-port:{self.sctp_port}")
        if self.max_message_size is not None:
            out.append(f"a=max-message-size:{self.max_message_size}")
        out += [f"a={k}:{v}" if v is not None else f"a={k}" for k, v in self.extra]
        return out


@dataclass
class SessionDescription:
    """A whole SDP: session-level fields plus the ordered media sections."""

    origin: str = "- 0 0 IN IP4 127.0.0.1"
    name: str = "-"
    timing: str = "0 0"
    connection: str | None = None
    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    ice_lite: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)
    setup: str | None = None
    msid_semantic: str | None = None
    extmap_allow_mixed: bool = False
    extra: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaSection] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> SessionDescription:
        return parse(text)

    def __str__(self) -> str:
        out = ["v=0", f"o={self.origin}", f"s={self.name}"]
        if self.connection:
            out.append(f"c={self.connection}")
        out.append(f"t={self.timing}")
        out += [f"a=group:{sem} {' '.join(mids)}".rstrip() for sem, mids in self.groups]
        if self.ice_lite:
            out.append("a=ice-lite")
        if self.extmap_allow_mixed:
            out.append("a=extmap-allow-mixed")
        if self.msid_semantic:
            out.append(f"a=msid-semantic:{self.msid_semantic}")
        if self.ice_ufrag is not None:
            out.append(f"a=ice-ufrag:{self.ice_ufrag}")
        if self.ice_pwd is not None:
            out.append(f"a=ice-pwd:{self.ice_pwd}")
        if self.ice_options:
            out.append(f"a=ice-options:{self.ice_options}")
        out += [f"a=fingerprint:{f.algorithm} {f.value}" for f in self.fingerprints]
        if self.setup:
            out.append(f"a=setup:{self.setup}")
        out += [f"a={k}:{v}" if v is not None else f"a={k}" for k, v in self.extra]
        for m in self.media:
            out += m.lines()
        return "\r\n".join(out) + "\r\n"

    def bundle(self) -> list[str]:
        """Mids of the first BUNDLE group (empty when there is none)."""
        return next((mids for sem, mids in self.groups if sem == "BUNDLE"), [])

    def media_by_mid(self, mid: str) -> MediaSection | None:
        return next((m for m in self.media if m.mid == mid), None)

    # Transport parameters: a media-level value overrides the session-level one.
    def ice_credentials(self, m: MediaSection) -> tuple[str | None, str | None]:
        return (m.ice_ufrag or self.ice_ufrag, m.ice_pwd or self.ice_pwd)

    def dtls_fingerprints(self, m: MediaSection) -> list[Fingerprint]:
        return m.fingerprints or self.fingerprints

    def dtls_setup(self, m: MediaSection) -> str | None:
        return m.setup or self.setup


def _int(value: str, what: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    try:
        n = int(value)
    except ValueError:
        raise SdpError(f"{what}: not an integer: {value[:40]!r}") from None
    if not lo <= n <= hi:
        raise SdpError(f"{what}: {n} out of range")
    return n


def _parse_media_line(value: str) -> MediaSection:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"m= line too short: {value[:80]!r}")
    port_text = parts[1].split("/")[0]  # "<port>/<count>" is legal
    return MediaSection(
        kind=parts[0],
        port=_int(port_text, "m= port", 0, 65535),
        proto=parts[2],
        fmt=parts[3:],
    )


def _parse_fingerprint(value: str) -> Fingerprint:
    algorithm, _, digest = value.strip().partition(" ")
    digest = digest.strip()
    if not algorithm or not re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){15,63}", digest):
        raise SdpError(f"malformed fingerprint: {value[:120]!r}")
    return Fingerprint(algorithm=algorithm.lower(), value=digest.upper())


def _codec_for(m: MediaSection, pt_text: str) -> Codec:
    pt = _int(pt_text, "payload type", 0, 127)
    codec = m.codec(pt)
    if codec is None:
        if len(m.codecs) >= 128:
            raise SdpError("too many payload types")
        codec = Codec(payload_type=pt)
        m.codecs.append(codec)
    return codec


def _media_attribute(m: MediaSection, key: str, value: str | None) -> None:
    v = value or ""
    if key == "mid":
        m.mid = v
    elif key in DIRECTIONS and value is None:
        m.direction = key
    elif key == "ice-ufrag":
        m.ice_ufrag = v
    elif key == "ice-pwd":
        m.ice_pwd = v
    elif key == "ice-options":
        m.ice_options = v
    elif key == "fingerprint":
        m.fingerprints.append(_parse_fingerprint(v))
    elif key == "setup":
        m.setup = v
    elif key == "candidate":
        m.candidates.append(v)
    elif key == "end-of-candidates":
        m.end_of_candidates = True
    elif key == "rtcp-mux":
        m.rtcp_mux = True
    elif key == "rtcp-rsize":
        m.rtcp_rsize = True
    elif key == "bundle-only":
        m.bundle_only = True
    elif key == "msid":
        stream, _, track = v.partition(" ")
        m.msid.append((stream, track.strip()))
    elif key == "rtpmap":
        pt_text, _, spec = v.partition(" ")
        bits = spec.strip().split("/")
        codec = _codec_for(m, pt_text)
        codec.name = bits[0]
        codec.clock_rate = _int(bits[1], "clock rate") if len(bits) > 1 else 0
        codec.channels = _int(bits[2], "channels", 1, 255) if len(bits) > 2 else None
    elif key == "fmtp":
        pt_text, _, params = v.partition(" ")
        _codec_for(m, pt_text).fmtp = params.strip()
    elif key == "rtcp-fb":
        pt_text, _, fb = v.partition(" ")
        if pt_text == "*":
            m.extra.append((key, value))
        else:
            _codec_for(m, pt_text).rtcp_fb.append(fb.strip())
    elif key == "extmap":
        ident, _, rest = v.partition(" ")
        ext_id, _, direction = ident.partition("/")
        uri, _, attrs = rest.strip().partition(" ")
        if not uri:
            raise SdpError(f"malformed extmap: {v[:80]!r}")
        m.extmaps.append(
            Extmap(_int(ext_id, "extmap id", 1, 255), uri, direction or None, attrs or None)
        )
    elif key == "ssrc":
        ssrc_text, _, attr = v.partition(" ")
        name, sep, attr_value = attr.partition(":")
        m.ssrcs.append((_int(ssrc_text, "ssrc"), name, attr_value if sep else None))
    elif key == "ssrc-group":
        semantics, *ssrcs = v.split()
        m.ssrc_groups.append((semantics, [_int(s, "ssrc") for s in ssrcs]))
    elif key == "rid":
        bits = v.split(None, 2)
        if len(bits) < 2:
            raise SdpError(f"malformed rid: {v[:80]!r}")
        m.rids.append(Rid(bits[0], bits[1], bits[2] if len(bits) > 2 else None))
    elif key == "simulcast":
        m.simulcast = v
    elif key == "sctp-port":
        m.sctp_port = _int(v, "sctp-port", 0, 65535)
    elif key == "max-message-size":
        m.max_message_size = _int(v, "max-message-size", 0, 2**53)
    elif key == "sctpmap":
        m.sctpmap = v
    else:
        m.extra.append((key, value))


def _session_attribute(s: SessionDescription, key: str, value: str | None) -> None:
    v = value or ""
    if key == "group":
        semantics, *mids = v.split()
        s.groups.append((semantics, mids))
    elif key == "ice-lite":
        s.ice_lite = True
    elif key == "ice-ufrag":
        s.ice_ufrag = v
    elif key == "ice-pwd":
        s.ice_pwd = v
    elif key == "ice-options":
        s.ice_options = v
    elif key == "fingerprint":
        s.fingerprints.append(_parse_fingerprint(v))
    elif key == "setup":
        s.setup = v
    elif key == "msid-semantic":
        s.msid_semantic = v
    elif key == "extmap-allow-mixed":
        s.extmap_allow_mixed = True
    else:
        s.extra.append((key, value))


def parse(text: str | bytes) -> SessionDescription:
    """Parse SDP text; raise `SdpError` on anything malformed or oversized."""
    if isinstance(text, bytes):
        if len(text) > MAX_SDP_SIZE:
            raise SdpError(f"SDP larger than {MAX_SDP_SIZE} bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not UTF-8") from None
    if not isinstance(text, str):
        raise SdpError("SDP must be text")
    if len(text) > MAX_SDP_SIZE or len(text.encode("utf-8", "replace")) > MAX_SDP_SIZE:
        raise SdpError(f"SDP larger than {MAX_SDP_SIZE} bytes")
    if "\x00" in text:
        raise SdpError("SDP contains NUL")
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("SDP must start with v=0")
    if len(lines) > MAX_LINES:
        raise SdpError("too many SDP lines")

    session = SessionDescription(origin="")
    current: MediaSection | None = None
    try:
        for line in lines[1:]:
            line = line.rstrip("\r")
            if len(line) > MAX_LINE_LENGTH:
                raise SdpError("SDP line too long")
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise SdpError(f"malformed SDP line: {line[:80]!r}")
            kind, value = line[0], line[2:]
            if kind == "m":
                if len(session.media) >= MAX_MEDIA_SECTIONS:
                    raise SdpError("too many media sections")
                current = _parse_media_line(value)
                session.media.append(current)
            elif kind == "a":
                key, sep, attr_value = value.partition(":")
                if not key or not _TOKEN.match(key):
                    raise SdpError(f"malformed attribute: {line[:80]!r}")
                if current is None:
                    _session_attribute(session, key, attr_value if sep else None)
                else:
                    _media_attribute(current, key, attr_value if sep else None)
            elif kind == "c":
                if current is None:
                    session.connection = value
                else:
                    current.connection = value
            elif kind == "b" and current is not None:
                current.bandwidth.append(value)
            elif current is None and kind == "o":
                session.origin = value
            elif current is None and kind == "s":
                session.name = value
            elif current is None and kind == "t":
                session.timing = value
            # other line types (i=, u=, e=, p=, r=, z=, k=) carry nothing WebRTC uses
    except SdpError:
        raise
    except (ValueError, IndexError) as exc:
        raise SdpError(f"malformed SDP: {exc}") from None
    if not session.origin:
        raise SdpError("SDP has no o= line")
    if not session.media:
        raise SdpError("SDP has no media sections")
    return session


def check_ice_credentials(ufrag: str | None, pwd: str | None) -> tuple[str, str]:
    """Validate ICE ufrag/pwd as RFC 8839 requires (ice-char, 4..256 / 22..256)."""
    if not ufrag or not pwd:
        raise SdpError("missing ice-ufrag or ice-pwd")
    if not (4 <= len(ufrag) <= 256 and _ICE_CHARS.match(ufrag)):
        raise SdpError("malformed ice-ufrag")
    if not (22 <= len(pwd) <= 256 and _ICE_CHARS.match(pwd)):
        raise SdpError("malformed ice-pwd")
    return ufrag, pwd

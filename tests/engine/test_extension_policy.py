"""The one error policy of RFC 8285 header-extension blocks (roost.media.rtp, extensions).

`iter_extensions` is the reference walker; `find_extension` and `ExtensionRewriter.body`
are specialised walks of the same blocks and must agree with it on anything, including
random and malformed blocks.
"""

from __future__ import annotations

import random
import struct

import pytest

from roost.media.extensions import ExtensionRewriter
from roost.media.rtp import (
    ONE_BYTE_PROFILE,
    TWO_BYTE_PROFILE,
    ExtensionError,
    RtpHeader,
    abs_send_time,
    find_extension,
    iter_extensions,
    parse_header,
    read_audio_level,
    read_sdes_extension,
)

PAYLOAD = b"\xfc\x01\x02"


def packet(profile: int, elements: bytes, payload: bytes = PAYLOAD) -> bytes:
    """An RTP packet whose extension block holds `elements` (zero-padded to 32 bits)."""
    body = elements + bytes(-len(elements) % 4)
    head = struct.pack("!BBHII", 0x90, 111, 1, 960, 0x11223344)
    return head + struct.pack("!HH", profile, len(body) // 4) + body + payload


def walk(raw: bytes, strict: bool = False) -> list[tuple[int, bytes]]:
    h = parse_header(raw)
    return [(i, raw[o : o + n]) for i, o, n in iter_extensions(raw, h, strict=strict)]


def strict_error(raw: bytes) -> ExtensionError:
    with pytest.raises(ExtensionError) as info:
        iter_extensions(raw, parse_header(raw), strict=True)
    return info.value


# --------------------------------------------------------------------------- the policy


def test_well_formed_one_byte_block_with_padding_between_and_after() -> None:
    raw = packet(ONE_BYTE_PROFILE, b"\x10\x9e" + b"\x00\x00" + b"\x22abc" + b"\x40" + b"0")
    assert walk(raw, strict=True) == [(1, b"\x9e"), (2, b"abc"), (4, b"0")]
    h = parse_header(raw)
    assert find_extension(raw, h, 2) == (h.ext_offset + 5, 3)
    assert read_audio_level(raw, h, 1) == 0x1E


def test_well_formed_two_byte_block_with_appbits_zero_length_and_padding() -> None:
    elements = b"\x01\x01\x9e" + b"\x00" + b"\x14\x00" + b"\xc8\x11" + bytes(range(17))
    for appbits in (0x0, 0x3, 0xF):
        raw = packet(TWO_BYTE_PROFILE | appbits, elements)
        assert walk(raw, strict=True) == [(1, b"\x9e"), (20, b""), (200, bytes(range(17)))]
        h = parse_header(raw)
        assert find_extension(raw, h, 20) == (h.ext_offset + 6, 0)
        assert read_audio_level(raw, h, 20) == -1  # zero-length: no level, no IndexError


def test_one_byte_id_15_ends_the_block_and_is_not_an_error() -> None:
    raw = packet(ONE_BYTE_PROFILE, b"\x10\x9e" + b"\xf3" + b"\x20xyzw")  # §4.2
    assert walk(raw) == walk(raw, strict=True) == [(1, b"\x9e")]
    h = parse_header(raw)
    assert find_extension(raw, h, 2) is None and find_extension(raw, h, 15) is None


def test_one_byte_id_0_with_a_length_ends_the_block() -> None:
    raw = packet(ONE_BYTE_PROFILE, b"\x10\x9e" + b"\x01\x00\x00" + b"\x20x")  # §4.1.2
    assert walk(raw) == walk(raw, strict=True) == [(1, b"\x9e")]
    assert find_extension(raw, parse_header(raw), 2) is None


@pytest.mark.parametrize(
    ("profile", "elements", "message"),
    [
        (ONE_BYTE_PROFILE, b"\x10\x9e" + b"\x25ab", "one-byte extension id 2 of 6 bytes"),
        (TWO_BYTE_PROFILE, b"\x01\x01\x9e" + b"\x05", "id 5 lacks its length byte"),
        (TWO_BYTE_PROFILE, b"\x01\x01\x9e" + b"\x05\x09ab", "id 5 of 9 bytes overruns"),
    ],
)
def test_a_malformed_element_keeps_the_ones_before_it(
    profile: int, elements: bytes, message: str
) -> None:
    raw = packet(profile, elements, payload=b"")  # nothing after the block to read into
    assert walk(raw) == [(1, b"\x9e")]
    err = strict_error(raw)
    assert message in str(err) and isinstance(err, ValueError)
    h = parse_header(raw)
    first = (1, h.ext_offset + (1 if profile == ONE_BYTE_PROFILE else 2), 1)
    assert err.elements == iter_extensions(raw, h) == [first]
    assert find_extension(raw, h, 1) is not None
    assert find_extension(raw, h, 2) is None and find_extension(raw, h, 5) is None


def test_empty_absent_and_foreign_blocks_have_no_elements() -> None:
    empty = packet(ONE_BYTE_PROFILE, b"")
    assert parse_header(empty).ext_end == parse_header(empty).ext_offset
    no_ext = struct.pack("!BBHII", 0x80, 111, 1, 960, 1) + PAYLOAD
    only_padding = packet(TWO_BYTE_PROFILE, bytes(8))
    rfc3550 = packet(0x1234, b"\x10\x9e")  # not an RFC 8285 profile: opaque
    for raw in (empty, no_ext, only_padding, rfc3550):
        h = parse_header(raw)
        assert iter_extensions(raw, h, strict=True) == []
        assert find_extension(raw, h, 1) is None
        assert read_sdes_extension(raw, h, 1) is None
        assert ExtensionRewriter({1: 1}).body(raw, h, 0.0) == b""


def test_repeated_ids_are_all_listed_and_the_first_is_found() -> None:
    raw = packet(ONE_BYTE_PROFILE, b"\x10a\x10b")
    h = parse_header(raw)
    assert walk(raw) == [(1, b"a"), (1, b"b")]
    assert find_extension(raw, h, 1) == (h.ext_offset + 1, 1)


# --------------------------------------------------------------------------- hostile blocks


def random_block(rng: random.Random) -> tuple[int, bytes]:
    """A profile and element bytes: well-formed, damaged or plain noise."""
    profile = rng.choice((ONE_BYTE_PROFILE, TWO_BYTE_PROFILE | rng.randrange(16), 0x1234))
    kind = rng.randrange(3)
    if kind == 0:
        return profile, rng.randbytes(rng.randrange(24))
    two = profile != ONE_BYTE_PROFILE
    out = bytearray()
    for _ in range(rng.randrange(6)):
        out += bytes(rng.randrange(3) == 0 and rng.randrange(3))  # some padding
        if two:
            n = rng.randrange(20)
            out += bytes((rng.randrange(1, 256), n)) + rng.randbytes(n)
        else:
            n = rng.randrange(1, 17)
            out += bytes((rng.randrange(1, 15) << 4 | (n - 1),)) + rng.randbytes(n)
    if kind == 2 and out:
        for _ in range(rng.randrange(1, 4)):
            out[rng.randrange(len(out))] = rng.choice((0x00, 0x0F, 0xF0, 0xFF, rng.randrange(256)))
        del out[rng.randrange(len(out) + 1) :]  # cut it short: overruns after padding
    return profile, bytes(out)


def blocks(count: int, seed: int) -> list[tuple[bytes, RtpHeader]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        profile, elements = random_block(rng)
        raw = packet(profile, elements, payload=rng.choice((b"", PAYLOAD)))
        out.append((raw, parse_header(raw)))
    return out


def test_random_blocks_raise_nothing_but_the_documented_error() -> None:
    malformed = 0
    for raw, h in blocks(3000, seed=8285):
        tolerant = iter_extensions(raw, h)
        try:
            assert iter_extensions(raw, h, strict=True) == tolerant
        except ExtensionError as err:
            malformed += 1
            assert err.elements == tolerant
        for ext_id, off, n in tolerant:
            assert 1 <= ext_id <= 255 and h.ext_offset <= off and off + n <= h.ext_end
        read_audio_level(raw, h, 1)
        read_sdes_extension(raw, h, 2)
        ExtensionRewriter({1: 3, 2: 2}, abs_send_time_id=5).body(raw, h, 1.0)
        ExtensionRewriter({1: 20}, abs_send_time_id=5).body(raw, h, 1.0)
    assert 100 < malformed < 3000  # the generator exercises both outcomes


def test_find_extension_agrees_with_the_walker_on_random_blocks() -> None:
    for raw, h in blocks(2000, seed=15):
        elements = iter_extensions(raw, h)
        for ext_id in range(-1, 257):
            first = next(((o, n) for i, o, n in elements if i == ext_id), None)
            assert find_extension(raw, h, ext_id) == first, (raw.hex(), ext_id)


def reference_body(raw: bytes, h: RtpHeader, rw: ExtensionRewriter, now: float) -> bytes:
    """What `ExtensionRewriter.body` must produce, from the walker's element list."""
    out = bytearray()
    for ext_id, off, n in iter_extensions(raw, h):
        new = rw.table[ext_id]
        if not new:
            continue
        if rw.two_byte:
            out += bytes((new, n))
        elif 1 <= n <= 16:
            out.append(new << 4 | (n - 1))
        else:
            continue
        out += raw[off : off + n]
    if rw.abs_send_time_id:
        sid = rw.abs_send_time_id
        out += bytes((sid, 3)) if rw.two_byte else bytes((sid << 4 | 2,))
        out += abs_send_time(now)
    return bytes(out)


@pytest.mark.parametrize(
    ("mapping", "abs_send_time_id", "two_byte"),
    [
        ({1: 1, 2: 7, 4: 4, 12: 12}, 3, False),
        ({i: i for i in range(1, 256)}, 0, True),
        ({5: 14, 20: 9, 200: 2}, 0, False),  # two-byte sources into the one-byte form
        ({1: 1, 3: 30}, 2, False),  # an id over 14 forces the two-byte form
    ],
)
def test_rewriter_body_agrees_with_the_walker_on_random_blocks(
    mapping: dict[int, int], abs_send_time_id: int, two_byte: bool
) -> None:
    for raw, h in blocks(1500, seed=len(mapping)):
        rw = ExtensionRewriter(mapping, abs_send_time_id, two_byte=two_byte)
        assert rw.body(raw, h, 2.5) == reference_body(raw, h, rw, 2.5), raw.hex()

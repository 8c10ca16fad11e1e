"""The renderer and the audio features without a server: faces, mouth, eyelids, head motion,
cost per frame, upsampling, rate conversion."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tests.helpers.signals import dominant_hz

from roost.avatar.animation import Animator
from roost.avatar.audio import ToSpeechRate, Upsampler, mouth_features
from roost.avatar.faces import FACES, get_face
from roost.avatar.renderer import HEIGHT, WIDTH, FaceState, Renderer

MOUTH = (slice(292, 380), slice(192, 320))


def luma(frame: np.ndarray) -> np.ndarray:
    return frame[: WIDTH * HEIGHT].reshape(HEIGHT, WIDTH)


def test_faces_by_id_including_simli_emotion_suffix() -> None:
    assert len(FACES) >= 2
    assert get_face("ada") is FACES["ada"]
    assert get_face("BEN/92f24a0c-f046-45df-8df0-af7449c04571") is FACES["ben"]
    assert get_face("nobody") is None


def test_frames_are_512_square_i420_and_faces_differ() -> None:
    frames = {fid: Renderer(face).render(FaceState()).copy() for fid, face in FACES.items()}
    for frame in frames.values():
        assert frame.dtype == np.uint8 and frame.size == WIDTH * HEIGHT * 3 // 2
    ada, ben = frames["ada"], frames["ben"]
    assert np.mean(np.abs(ada.astype(int) - ben.astype(int))) > 10


def test_open_mouth_darkens_only_the_mouth_region() -> None:
    renderer = Renderer(FACES["ada"])
    shut = luma(renderer.render(FaceState(mouth_open=0.0)).copy())
    half = luma(renderer.render(FaceState(mouth_open=0.5)).copy())
    wide = luma(renderer.render(FaceState(mouth_open=1.0)).copy())
    dark = [float(np.mean(f[MOUTH] < 50)) for f in (shut, half, wide)]
    assert dark[0] < 0.01 < dark[1] < dark[2]
    outside = np.ones_like(shut, dtype=bool)
    outside[MOUTH] = False
    assert np.array_equal(shut[outside], wide[outside])


def test_blink_covers_the_eyes_and_head_motion_shifts_the_face() -> None:
    renderer = Renderer(FACES["ada"])
    base = luma(renderer.render(FaceState()).copy())
    blink = luma(renderer.render(FaceState(blink=1.0)).copy())
    eyes = (slice(220, 262), slice(170, 350))
    assert np.mean(np.abs(base[eyes].astype(int) - blink[eyes].astype(int))) > 5
    moved = luma(renderer.render(FaceState(shift_x=3, shift_y=2)).copy())
    assert np.array_equal(moved[102:400, 103:400], base[100:398, 100:397])


def test_animator_blinks_moves_and_follows_the_mouth_target() -> None:
    animator = Animator(seed=1)
    states = [animator.next(0.0, 0.5) for _ in range(250)]  # ten idle seconds
    assert any(s.blink >= 1.0 for s in states)
    assert len({(s.shift_x, s.shift_y) for s in states}) > 3
    assert all(s.mouth_open == 0.0 for s in states)
    opened = [animator.next(1.0, 0.5).mouth_open for _ in range(3)]
    assert opened[0] > 0.7 and opened[-1] > 0.95


def test_render_cost_is_small() -> None:
    """Target: one session well under 25 % of a core at 25 fps, so a frame far below 10 ms."""
    renderer = Renderer(FACES["cleo"])
    animator = Animator(seed=2)
    renderer.render(FaceState())
    started = time.process_time()
    for i in range(100):
        renderer.render(animator.next((i % 10) / 10, 0.5))
    per_frame = (time.process_time() - started) / 100
    assert per_frame < 0.004, f"{per_frame * 1000:.2f} ms per frame"


def test_upsampler_keeps_a_tone_and_its_level() -> None:
    up = Upsampler()
    t = np.arange(16_000) / 16_000
    tone = (np.sin(2 * np.pi * 440 * t) * 10_000).astype(np.int16)
    out = np.concatenate([up.process(tone[i:i + 640]) for i in range(0, tone.size, 640)])
    assert out.size == 48_000
    assert abs(dominant_hz(out[4800:], 48_000) - 440) < 2
    assert abs(np.sqrt(np.mean(out[4800:].astype(float) ** 2)) - 10_000 / np.sqrt(2)) < 300


@pytest.mark.parametrize(("rate", "channels"), [(24_000, 1), (48_000, 2), (16_000, 1)])
def test_speech_rate_conversion(rate: int, channels: int) -> None:
    convert = ToSpeechRate(rate, channels)
    pcm = np.zeros(rate * channels, dtype=np.int16).tobytes()
    chunks = [pcm[i:i + 999] for i in range(0, len(pcm), 999)]  # split samples on purpose
    out = np.concatenate([convert.push(c) for c in chunks] + [convert.flush()])
    assert abs(out.size - 16_000) <= 64


def test_mouth_features_from_energy_and_spectrum() -> None:
    t = np.arange(640) / 16_000
    low = (np.sin(2 * np.pi * 300 * t) * 12_000).astype(np.int16)
    high = (np.sin(2 * np.pi * 3000 * t) * 12_000).astype(np.int16)
    quiet = (low / 300).astype(np.int16)
    assert mouth_features(np.zeros(640, dtype=np.int16)) == (0.0, 0.5)
    assert mouth_features(quiet)[0] < mouth_features(low)[0]
    assert mouth_features(low)[0] > 0.8
    assert mouth_features(high)[1] > mouth_features(low)[1] + 0.5

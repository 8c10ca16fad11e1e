"""Audio levels: windowed activity, smoothing, staleness, and SpeakersChanged deltas."""

from __future__ import annotations

from roost.media.audiolevel import (
    AudioLevel,
    SpeakerLevel,
    SpeakerTracker,
    level_to_linear,
    participant_level,
    quantize,
)


def feed(obs: AudioLevel, levels: list[int], start: float) -> float:
    """Observe 20 ms packets with the given levels; returns the time after the last one."""
    t = start
    for level in levels:
        obs.observe(level, 20, t)
        t += 0.02
    return t


def test_a_loud_talker_becomes_active_within_a_window_and_smooths_up() -> None:
    obs = AudioLevel()
    t = feed(obs, [20] * 20, 0.0)  # one 400 ms window at -20 dBov
    level, active = obs.get_level(t)
    assert active
    assert abs(level - level_to_linear(20) * 2 / 3) < 1e-9  # EMA 2/(2+1) from 0
    t = feed(obs, [20] * 20, t)
    level2, _ = obs.get_level(t)
    assert level < level2 < level_to_linear(20)


def test_quiet_or_sparse_speech_is_not_active() -> None:
    quiet = AudioLevel()
    t = feed(quiet, [50] * 40, 0.0)  # below the active level (35)
    assert quiet.get_level(t) == (0.0, False)
    sparse = AudioLevel()
    t = feed(sparse, ([10] * 7 + [127] * 13) * 2, 0.0)  # 35 % of each window
    assert sparse.get_level(t) == (0.0, False)


def test_partly_active_window_is_weighted_by_its_active_fraction() -> None:
    obs = AudioLevel()
    t = feed(obs, [30] * 10 + [127] * 10, 0.0)  # half active at -30 dBov
    level, active = obs.get_level(t)
    expected = level_to_linear(30 + 6.0205999) * 2 / 3  # -20 log10(0.5) dB quieter
    assert abs(level - expected) < 1e-6
    assert not active  # ~0.0224 * 2/3 < 0.0178 threshold


def test_silence_after_speech_decays_and_stale_tracks_reset() -> None:
    obs = AudioLevel()
    t = feed(obs, [10] * 60, 0.0)
    assert obs.get_level(t)[1]
    t = feed(obs, [127] * 20, t)
    assert obs.get_level(t) == (0.0, False)  # an inactive window resets to 0
    t = feed(obs, [10] * 20, t)
    assert obs.get_level(t)[1]
    assert obs.get_level(t + 0.9) == (0.0, False)  # no packets for > 2 windows


def test_participant_level_is_the_loudest_track() -> None:
    assert participant_level([(0.1, True), (0.3, True), (0.0, False)]) == (0.3, True)
    assert participant_level([]) == (0.0, False)


def test_levels_are_rounded_up_to_eighths() -> None:
    assert quantize(0.01) == 0.125
    assert quantize(0.125) == 0.125
    assert quantize(0.51) == 0.625


def test_speaker_changes_between_ticks() -> None:
    tracker = SpeakerTracker()
    first = tracker.tick({"PA_a": (0.3, True), "PA_b": (0.6, True), "PA_c": (0.9, False)})
    assert first == [SpeakerLevel("PA_b", 0.625, True), SpeakerLevel("PA_a", 0.375, True)]
    assert tracker.tick({"PA_a": (0.31, True), "PA_b": (0.6, True)}) == []  # same eighths
    changed = tracker.tick({"PA_a": (0.8, True)})
    assert changed == [SpeakerLevel("PA_a", 0.875, True), SpeakerLevel("PA_b", 0.0, False)]
    assert tracker.current == [SpeakerLevel("PA_a", 0.875, True)]
    assert tracker.tick({}) == [SpeakerLevel("PA_a", 0.0, False)]

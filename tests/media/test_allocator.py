"""The stream allocator's rules, clock in hand: down at once, up after a hold, pause late."""

from __future__ import annotations

from roost.media.allocator import (
    KEEP,
    PAUSE,
    PAUSE_HOLD,
    UPGRADE_HOLD,
    LayerAllocator,
    share_bandwidth,
)

LAYERS = [0, 1, 2]
RATES = {0: 150_000.0, 1: 500_000.0, 2: 1_500_000.0}


def choose(alloc: LayerAllocator, share: float | None, now: float, *, max_quality: int = 2,
           allow_pause: bool = False, paused: bool = False, simulcast: bool = True,
           available: list[int] | None = None) -> int:
    return alloc.choose(LAYERS if available is None else available, RATES, share,
                        max_quality=max_quality, allow_pause=allow_pause, paused=paused,
                        simulcast=simulcast, now=now)


def test_without_an_estimate_the_client_cap_alone_decides() -> None:
    alloc = LayerAllocator()
    assert choose(alloc, None, 0.0) == 2
    assert choose(alloc, None, 0.1, max_quality=1) == 1
    assert choose(alloc, None, 0.2, max_quality=0) == 0


def test_a_shrinking_share_lowers_the_layer_at_once() -> None:
    alloc = LayerAllocator()
    assert choose(alloc, 2_000_000, 0.0) == 2
    assert choose(alloc, 600_000, 0.1) == 1
    assert choose(alloc, 200_000, 0.2) == 0


def test_a_growing_share_raises_the_layer_only_after_the_hold() -> None:
    alloc = LayerAllocator()
    assert choose(alloc, 200_000, 0.0) == 0
    assert choose(alloc, 2_000_000, 1.0) == 0
    assert choose(alloc, 2_000_000, 1.0 + UPGRADE_HOLD / 2) == 0
    assert choose(alloc, 2_000_000, 1.0 + UPGRADE_HOLD) == 2


def test_the_raise_goes_only_as_high_as_the_share_allowed_throughout_the_hold() -> None:
    alloc = LayerAllocator()
    assert choose(alloc, 200_000, 0.0) == 0
    assert choose(alloc, 2_000_000, 1.0) == 0
    assert choose(alloc, 600_000, 1.5) == 0  # dipped to layer 1's rate during the hold
    assert choose(alloc, 2_000_000, 1.0 + UPGRADE_HOLD) == 1


def test_starving_pauses_only_when_allowed_and_only_after_the_hold() -> None:
    kept = LayerAllocator()
    assert choose(kept, 50_000, 0.0) == 0
    assert choose(kept, 50_000, PAUSE_HOLD * 3) == 0  # pausing not allowed: lowest layer
    paused = LayerAllocator()
    assert choose(paused, 50_000, 0.0, allow_pause=True) == 0
    assert choose(paused, 50_000, PAUSE_HOLD / 2, allow_pause=True) == 0
    assert choose(paused, 50_000, PAUSE_HOLD, allow_pause=True) == PAUSE


def test_a_paused_track_resumes_after_the_upgrade_hold() -> None:
    alloc = LayerAllocator()
    choose(alloc, 50_000, 0.0, allow_pause=True)
    assert choose(alloc, 50_000, PAUSE_HOLD, allow_pause=True) == PAUSE
    assert choose(alloc, 200_000, 5.0, allow_pause=True, paused=True) == PAUSE
    assert choose(alloc, 200_000, 5.0 + UPGRADE_HOLD, allow_pause=True, paused=True) == 0


def test_a_single_layer_track_is_left_alone_unless_paused() -> None:
    alloc = LayerAllocator()
    assert choose(alloc, None, 0.0, simulcast=False, available=[0]) == KEEP
    assert choose(alloc, None, 0.0, simulcast=False, available=[0], paused=True) == 0


def test_no_arriving_layer_changes_nothing() -> None:
    assert choose(LayerAllocator(), 100.0, 0.0, available=[]) == KEEP


def test_only_arriving_layers_are_chosen() -> None:
    alloc = LayerAllocator()
    assert choose(alloc, None, 0.0, available=[0, 1]) == 1
    assert choose(alloc, None, 0.1, max_quality=0, available=[1, 2]) == 1  # none fits the cap


def test_the_estimate_is_split_evenly_among_the_forwarded_videos() -> None:
    assert share_bandwidth(None, 3) is None
    assert share_bandwidth(900_000, 0) is None
    assert share_bandwidth(900_000, 3) == 300_000

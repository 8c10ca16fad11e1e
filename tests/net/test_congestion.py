"""Congestion control end to end (issue 12): a simulcast 720p camera + tone through roost (with
rtc.congestion_control.enabled) to a subscriber whose link is shaped, lossy or blacked out,
and a publisher whose uplink is capped.

Each test builds its own star network (tests/net/impair.py): roost in `server`, publisher
and subscriber in namespaces of their own behind router `net`; the official SDK runs in
both (tests/net/media_probe.py) and records a timeline the test reads while it runs
(tests/net/timeline.py). Before any impairment every test checks that the publisher really
sends three layers (its outbound-rtp stats and roost's per-layer bitrates) and that the
subscriber sees the high one, so that "downgraded" cannot pass for "never had more".
Figures are printed (`pytest -s`) and repeated in failure messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.helpers.netlab import Lab, NetnsRoostServer
from tests.net import impair
from tests.net.timeline import HIGH, LOW, CongestionCall

StartRoost = Callable[..., NetnsRoostServer]
SUB_CAP_KBIT = 400
PUB_CAP_KBIT = 600


def report(name: str, figures: dict[str, Any]) -> str:
    text = f"[{name}] " + json.dumps(figures, sort_keys=True, default=str)
    print(text)
    return text


def r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


@pytest.fixture
def call(lab: Lab, start_roost_in: StartRoost, tmp_path: Path) -> Iterator[CongestionCall]:
    c = CongestionCall(lab, start_roost_in, tmp_path, seconds=80).start()
    try:
        yield c
    finally:
        c.release()


def _ready(call: CongestionCall) -> dict[str, Any]:
    """Media flows, three layers go up, the subscriber is on the high layer (or not: then
    `high_after_s` is None and tests that need it fail on that precondition)."""
    t_media = call.wait_media()
    layers = call.wait_three_layers()
    t0 = call.mark("layers")
    high = call.wait_layer(HIGH, t0, timeout=15)
    return {"publisher": layers, "layers_after_s": r(t0 - t_media),
            "high_after_s": r(None if high is None else high - t0)}


def _require_high(figures: dict[str, Any], name: str) -> None:
    assert figures["ready"]["high_after_s"] is not None, (
        "precondition: the subscriber never got the high layer on an unimpaired link within"
        f" 15 s, so a downgrade means nothing\n{report(name, figures)}")


@pytest.mark.timeout(120)
def test_capped_subscriber_gets_the_low_layer_without_freezing(call: CongestionCall) -> None:
    figures: dict[str, Any] = {"ready": _ready(call)}
    _require_high(figures, "a")
    net = call.net
    t_cap = call.mark("cap")
    impair.shape(net.router, net.sub_dev, SUB_CAP_KBIT)
    t_low = call.wait_layer(LOW, t_cap, timeout=12)
    end = (t_low or call.now()) + 6
    call.hold(max(0.0, end - call.now()))
    tl = call.timeline.refresh()
    after = t_low if t_low is not None else t_cap + 5
    figures.update({
        "downgrade_s": r(None if t_low is None else t_low - t_cap),
        "layer_share_capped": tl.layer_share(t_cap, end),
        "longest_gap_transition_s": r(tl.longest_gap(t_cap, after)),
        "longest_gap_after_s": r(tl.longest_gap(after, end)),
        "fps_after": r(tl.fps(after, end), 1),
        "audible_after": r(tl.audible(after, end), 3),
        "qdisc_drops": impair.shaped_drops(net.router, net.sub_dev),
        "estimate_bps": tl.metric(end, "roost_cc_available_bps"),
    })
    text = report("a", figures)
    assert t_low is not None and t_low - t_cap <= 5, f"no low layer within 5 s\n{text}"
    assert figures["longest_gap_after_s"] <= 1.0, f"video froze\n{text}"
    # "audio intact": the queue also drops audio while the high layer still overflows it
    # and at a brief excursion to a higher layer after a probe (0.93-1.0 audible measured)
    assert figures["audible_after"] >= 0.9, f"audio broke up\n{text}"


@pytest.mark.timeout(120)
def test_lifting_the_cap_brings_the_high_layer_back(call: CongestionCall) -> None:
    figures: dict[str, Any] = {"ready": _ready(call)}
    _require_high(figures, "b")
    net = call.net
    t_cap = call.mark("cap")
    impair.shape(net.router, net.sub_dev, SUB_CAP_KBIT)
    t_low = call.wait_layer(LOW, t_cap, timeout=10)
    figures["downgrade_s"] = r(None if t_low is None else t_low - t_cap)
    call.hold(2)
    t_lift = call.mark("lift")
    figures["layer_share_last_2s_capped"] = call.timeline.refresh().layer_share(t_lift - 2,
                                                                              t_lift)
    impair.unshape(net.router, net.sub_dev)
    t_up = call.wait_layer(HIGH, t_lift, timeout=14)
    end = max(call.now(), t_lift + 10) + 2
    call.hold(max(0.0, end - call.now()))
    tl = call.timeline.refresh()
    lost = tl.delta("s", "video.lost", t_lift, end)
    packets = tl.delta("s", "video.packets", t_lift, end)
    figures.update({
        "upgrade_s": r(None if t_up is None else t_up - t_lift),
        "layer_at_lift_plus_10s": tl.layer_at(t_lift + 10),
        "layer_share_after_lift": tl.layer_share(t_lift, end),
        "lost_after_lift": lost, "packets_after_lift": packets,
        "longest_gap_after_lift_s": r(tl.longest_gap(t_lift, end)),
        "audible_after_lift": r(tl.audible(t_lift, end), 3),
        "estimate_bps": tl.metric(end, "roost_cc_available_bps"),
    })
    text = report("b", figures)
    assert t_low is not None, f"precondition: the cap never brought the low layer\n{text}"
    assert tl.layer_at(t_lift) != HIGH, (
        f"precondition: the high layer still arrived when the cap was lifted\n{text}")
    assert t_up is not None and t_up - t_lift <= 10, f"not back on high within 10 s\n{text}"
    # a burst stands out from the background: 0-26 of ~2,400 packets measured after lifting
    assert lost <= max(10, 0.02 * packets), f"a loss burst after lifting the cap\n{text}"
    assert figures["longest_gap_after_lift_s"] <= 1.0, f"video froze on the way up\n{text}"


def _lossy(call: CongestionCall, name: str, jitter_ms: float = 0) -> None:
    figures: dict[str, Any] = {"ready": _ready(call)}
    net = call.net
    t_on = call.mark("loss")
    impair.loss(net.router, net.sub_dev, 5)
    if jitter_ms:
        impair.jitter(net.router, net.sub_dev, 40, jitter_ms)
    t0 = t_on + 2  # let the estimate react, then measure 10 s
    call.hold(12)
    t1 = call.now()
    tl = call.timeline.refresh()
    nacks_roost = (tl.metric_sum(t1, 'roost_media_nacks_total{direction="in",kind="video"}')
                   - tl.metric_sum(t0, 'roost_media_nacks_total{direction="in",kind="video"}'))
    figures.update({
        "fps": r(tl.fps(t0, t1), 1), "longest_gap_s": r(tl.longest_gap(t0, t1)),
        "sizes": tl.sizes(t0, t1), "layer_share": tl.layer_share(t0, t1),
        "audible": r(tl.audible(t0, t1), 3),
        "sub_nacks_sent": tl.delta("s", "video.nack", t0, t1),
        "sub_rtx_received": tl.delta("s", "video.rtx", t0, t1),
        "sub_lost": tl.delta("s", "video.lost", t0, t1),
        "sub_packets": tl.delta("s", "video.packets", t0, t1),
        "roost_nacks_in": nacks_roost,
        "iptables_dropped": impair.dropped_by_rules(net.router),
        "estimate_bps": tl.metric(t1, "roost_cc_available_bps"),
    })
    text = report(name, figures)
    assert figures["fps"] >= 20, f"video below 20 fps under 5 % loss\n{text}"
    assert figures["audible"] >= 0.95, f"audio below 95 % audible under 5 % loss\n{text}"
    assert figures["sub_nacks_sent"] > 0 and figures["sub_rtx_received"] > 0, (
        f"NACK/RTX counters did not move\n{text}")
    assert nacks_roost > 0, f"roost counted no NACKs from the subscriber\n{text}"


@pytest.mark.timeout(120)
def test_five_percent_loss_keeps_video_and_audio(call: CongestionCall) -> None:
    _lossy(call, "c")


@pytest.mark.timeout(120)
def test_five_percent_loss_with_jitter(lab: Lab, start_roost_in: StartRoost,
                                       tmp_path: Path) -> None:
    reason = impair.netem_missing(lab.host("probe"))
    if reason:
        pytest.skip(f"40 ms jitter needs netem: {reason} (5 % loss alone runs in "
                    "test_five_percent_loss_keeps_video_and_audio)")
    call = CongestionCall(lab, start_roost_in, tmp_path, seconds=80).start()
    try:
        _lossy(call, "c+jitter", jitter_ms=40)
    finally:
        call.release()


@pytest.mark.timeout(120)
def test_media_resumes_after_a_three_second_blackout(call: CongestionCall) -> None:
    figures: dict[str, Any] = {"ready": _ready(call)}
    net = call.net
    call.mark("blackout")
    impair.blackout(net.router, net.sub_dev)
    call.hold(3)  # the blackout itself
    t_end = call.mark("restored")
    impair.restore(net.router, net.sub_dev)
    try:
        call.wait(lambda tl: tl.first_frame(t_end + 0.05), 10, "a frame after the blackout")
    except TimeoutError:
        pass
    call.hold(4)
    tl = call.timeline.refresh()
    first = tl.first_frame(t_end + 0.05)
    loud = [a["t"] for a in tl.lines["a"] if a["t"] > t_end + 0.05 and a["loud"] > 10]
    _, sub = call.stop()
    figures.update({
        "video_resumed_s": r(None if first is None else first - t_end),
        "audio_resumed_s": r(loud[0] - t_end if loud else None),
        "fps_after": r(tl.fps(t_end + 2, t_end + 4), 1),
        "sids": sorted(tl.sids()), "result": sub,
        "events": [e["what"] for e in tl.lines["e"] if e["what"] not in ("sid", "subscribed")],
        "subscribed": len(tl.events("subscribed")),
    })
    text = report("d", figures)
    assert first is not None and first - t_end <= 2.0, f"video did not resume in 2 s\n{text}"
    assert loud and loud[0] - t_end <= 2.5, f"audio did not resume\n{text}"  # 0.5 s bins
    assert sub["sid"] == sub["last_sid"] and len(tl.sids()) == 1, f"the subscriber rejoined\n{text}"


@pytest.mark.timeout(120)
def test_capped_publisher_uplink_lowers_its_bitrate(call: CongestionCall) -> None:
    figures: dict[str, Any] = {"ready": _ready(call)}
    net = call.net
    tl = call.timeline
    before = call.now()
    figures["sent_before_bps"] = round(sum(tl.publisher_rates(before - 3, before).values()))
    t_cap = call.mark("pub cap")
    impair.shape(net.pub, net.pub_dev, PUB_CAP_KBIT)

    def sent_bps(t: float) -> float:
        return sum(tl.publisher_rates(t - 2, t).values())

    try:
        t_follow = call.wait(lambda _: sent_bps(call.now()) <= PUB_CAP_KBIT * 1000 and
                             call.now(), 15, "the publisher's bitrate under the cap")
    except TimeoutError:
        t_follow = None
    end = max(call.now(), t_cap + 10) + 4
    call.hold(max(0.0, end - call.now()))
    tl.refresh()
    last: dict[str, Any] = tl.lines["p"][-1] if tl.lines["p"] else {"layers": {}, "aob": 0}
    figures.update({
        "follow_s": r(None if t_follow is None else t_follow - t_cap),
        "sent_last_4s_bps": {k: round(v) for k, v in tl.publisher_rates(end - 4, end).items()},
        "target_bps": {rid: d.get("target") for rid, d in last["layers"].items()},
        "quality_limitation": {rid: d.get("qlr") for rid, d in last["layers"].items()},
        "available_outgoing_bps": last.get("aob"),
        "qdisc_drops": impair.shaped_drops(net.pub, net.pub_dev),
        "sub_fps_last_4s": r(tl.fps(end - 4, end), 1),
        "sub_longest_gap_after_6s": r(tl.longest_gap(t_cap + 6, end)),
        "sub_sizes_last_4s": tl.sizes(end - 4, end),
        "sub_audible_last_4s": r(tl.audible(end - 4, end), 3),
    })
    text = report("e", figures)
    assert t_follow is not None, f"the publisher kept sending over the cap\n{text}"
    assert sum(figures["sent_last_4s_bps"].values()) <= PUB_CAP_KBIT * 1000, text
    # "subscribers keep receiving" (the publisher's encoder itself skips frames at its cap)
    assert figures["sub_fps_last_4s"] >= 10 and figures["sub_longest_gap_after_6s"] <= 2.0, (
        f"the subscriber stopped receiving\n{text}")
    # The audio the subscriber misses here is lost in the publisher's own 100 ms queue
    # (libwebrtc's probes and keyframe bursts): 0.89-1.0 audible in runs with congestion
    # control; without it (REMB only) the publisher never follows and video stops.
    assert figures["sub_audible_last_4s"] >= 0.8, f"audio broke up\n{text}"

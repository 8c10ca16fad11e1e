"""Congestion control on a real (namespaced) network: longer runs of tests/net/test_congestion.py.

    sudo .venv/bin/python bench/network.py                   # every scenario, ~3 min
    sudo .venv/bin/python bench/network.py sub_cap loss      # some of them
    sudo .venv/bin/python bench/network.py --no-plot
    sudo .venv/bin/python bench/network.py --compare-off     # each also with it off, side by side

Each scenario builds its own star network (tests/net/impair.py), starts roost with
rtc.congestion_control.enabled, a simulcast 1280x720 VP8 publisher with a tone and a
subscriber (official SDK, tests/net/media_probe.py), waits until three layers go up and the
subscriber sees media, then switches impairments on and off at set times (seconds from then):

  sub_cap   server->subscriber capped at 400 kbit/s from 8 s to 23 s, free until 38 s
  loss      5 % random loss towards the subscriber from 8 s to 26 s, until 32 s
  jitter    5 % loss + 40 ms ± 40 ms (netem only: skipped, with the reason, without it)
  blackout  nothing passes the subscriber's link from 10 s to 13 s, until 25 s
  pub_cap   publisher->server capped at 600 kbit/s from 8 s to 26 s, free until 34 s

Printed per scenario: time to downgrade / upgrade (first five consecutive frames of the
low / high layer after the change), frozen frames (a gap between frames over 3x the median
interval and over 150 ms, as WebRTC counts freezes) and the longest, received fps and
resolution every 2 s, audio audible, NACK/RTX counters, packets lost in the 5 s after the
impairment ends; and a PNG timeline to bench/out/network-<scenario>.png (matplotlib:
`pip install -e .[bench]`) with the received resolution, roost's forwarded layer, fps,
received bitrate, roost's estimate for the subscriber (roost_cc_available_bps) and the
publisher's sent bitrate.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import netlab  # noqa: E402
from tests.helpers.netlab import Lab, NetlabUnavailable  # noqa: E402
from tests.net import impair  # noqa: E402
from tests.net.impair import Star  # noqa: E402
from tests.net.timeline import HIGH, LOW, CongestionCall, Timeline  # noqa: E402

OUT = ROOT / "bench" / "out"
Action = Callable[[Star], None]


@dataclass
class Scenario:
    name: str
    title: str
    on_at: float
    off_at: float
    end_at: float
    on: Action
    off: Action
    kind: str  # "down" (subscriber side), "loss", "blackout", "pub"


def _sub(action: Callable[..., None], *args: Any) -> Action:
    return lambda net: action(net.router, net.sub_dev, *args)


def _jitter_on(net: Star) -> None:
    impair.loss(net.router, net.sub_dev, 5)
    impair.jitter(net.router, net.sub_dev, 40, 40)


def _jitter_off(net: Star) -> None:
    impair.unloss(net.router, net.sub_dev, 5)
    impair.unshape(net.router, net.sub_dev)


SCENARIOS = {s.name: s for s in (
    Scenario("sub_cap", "subscriber capped at 400 kbit/s", 8, 23, 38,
             _sub(impair.shape, 400), _sub(impair.unshape), "down"),
    Scenario("loss", "5 % loss towards the subscriber", 8, 26, 32,
             _sub(impair.loss, 5), _sub(impair.unloss, 5), "loss"),
    Scenario("jitter", "5 % loss + 40 ms jitter towards the subscriber", 8, 26, 32,
             _jitter_on, _jitter_off, "loss"),
    Scenario("blackout", "3 s blackout of the subscriber's link", 10, 13, 25,
             _sub(impair.blackout), _sub(impair.restore), "blackout"),
    Scenario("pub_cap", "publisher uplink capped at 600 kbit/s", 8, 26, 34,
             lambda net: impair.shape(net.pub, net.pub_dev, 600),
             lambda net: impair.unshape(net.pub, net.pub_dev), "pub"),
)}


def freezes(tl: Timeline, t0: float, t1: float) -> list[tuple[float, float]]:
    """(start, length) of frozen frames in [t0, t1]: gaps > max(3 x median interval, 150 ms)."""
    times = [f["t"] for f in tl.frames(t0, t1)]
    intervals = [b - a for a, b in itertools.pairwise(times)]
    if not intervals:
        return [(t0, t1 - t0)]
    limit = max(3 * statistics.median(intervals), 0.150)
    return [(a, b - a) for a, b in itertools.pairwise(times) if b - a > limit]


def analyse(sc: Scenario, tl: Timeline, t0: float) -> dict[str, Any]:
    on, off, end = t0 + sc.on_at, t0 + sc.off_at, t0 + sc.end_at
    frozen = freezes(tl, t0, end)
    res: dict[str, Any] = {
        "frozen_frames": len(frozen),
        "longest_freeze_s": round(max((g for _, g in frozen), default=0.0), 2),
        "freezes_at_s": [f"{a - t0:.1f}+{g:.2f}" for a, g in frozen][:12],
        "fps_before/during/after": [round(tl.fps(t0 + 1, on), 1), round(tl.fps(on, off), 1),
                                    round(tl.fps(off, end), 1)],
        "audible_before/during/after": [round(tl.audible(t0 + 1, on), 3),
                                        round(tl.audible(on, off), 3),
                                        round(tl.audible(off, end), 3)],
        "nacks_sent_during": tl.delta("s", "video.nack", on, off),
        "rtx_received_during": tl.delta("s", "video.rtx", on, off),
        "lost_during": tl.delta("s", "video.lost", on, off),
        "lost_5s_after_recovery": tl.delta("s", "video.lost", off, off + 5),
    }
    if sc.kind in ("down", "loss", "pub"):
        low = tl.first_steady(on, LOW)
        res["downgrade_s"] = None if low is None or low > off else round(low - on, 2)
        up = tl.first_steady(off, HIGH)
        res["upgrade_s"] = None if up is None else round(up - off, 2)
        res["layers_during"] = tl.layer_share(on, off)
    if sc.kind == "blackout":
        first = tl.first_frame(off + 0.05)
        res["video_resumed_s"] = None if first is None else round(first - off, 2)
        res["sids"] = sorted(tl.sids())
        res["events"] = [e["what"] for e in tl.lines["e"]
                         if e["what"] not in ("sid", "subscribed", "published")]
    if sc.kind == "pub":
        res["publisher_sent_bps_before/during/after"] = [
            round(sum(tl.publisher_rates(on - 4, on).values())),
            round(sum(tl.publisher_rates(off - 4, off).values())),
            round(sum(tl.publisher_rates(end - 4, end).values()))]
    buckets = []
    for k in range(0, int(sc.end_at), 2):
        a, b = t0 + k, t0 + k + 2
        sizes = tl.sizes(a, b)
        buckets.append(f"{k:>3}s {tl.fps(a, b):5.1f} fps "
                       f"{'/'.join(f'{w}x{h}' for w, h in sizes) or '-'}")
    res["timeline"] = buckets
    return res


def plot(sc: Scenario, tl: Timeline, t0: float, out: Path, suffix: str = "") -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  no plot: matplotlib is not installed in this venv "
              "(.venv/bin/pip install -e '.[bench]' or pip install matplotlib)")
        return None
    out.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    frames = tl.frames(t0, t0 + sc.end_at)
    ax1.plot([f["t"] - t0 for f in frames], [f["h"] for f in frames], ".", markersize=2,
             label="received frame height")
    ax1.set_ylabel("height (px)")
    layer = [(m["t"] - t0, v) for m in tl.lines["m"] for k, v in m["m"].items()
             if k.startswith("roost_cc_forwarded_layer") and m["t"] >= t0]
    if layer:
        twin = ax1.twinx()
        twin.step([t for t, _ in layer], [v for _, v in layer], "r-", where="post",
                  linewidth=0.8, label="roost forwarded layer")
        twin.set_ylabel("layer")
        twin.set_ylim(-1.2, 2.5)
        twin.legend(loc="upper right")
    ax1.legend(loc="upper left")
    bins = [t0 + k * 0.5 for k in range(int(sc.end_at * 2))]
    ax2.step([b - t0 for b in bins], [tl.fps(b, b + 0.5) for b in bins], where="post",
             label="received fps (0.5 s bins)")
    ax2.step([b - t0 for b in bins], [100 * tl.audible(b, b + 0.5) for b in bins],
             where="post", alpha=0.6, label="audio audible (%)")
    ax2.set_ylabel("fps / %")
    ax2.legend(loc="lower left")
    received = [(t - t0, v / 1000) for t, v in tl.rates("s", "video.bytes", 8) if t >= t0]
    ax3.plot([t for t, _ in received], [v for _, v in received], label="subscriber received")
    estimate = [(m["t"] - t0, v / 1000) for m in tl.lines["m"] for k, v in m["m"].items()
                if k.startswith("roost_cc_available_bps") and m["t"] >= t0]
    if estimate:
        ax3.plot([t for t, _ in estimate], [v for _, v in estimate], ".", markersize=3,
                 label="roost estimate (all sessions)")
    sent = []
    for i in range(1, len(tl.lines["p"])):
        a, b = tl.lines["p"][i - 1], tl.lines["p"][i]
        if b["t"] < t0 or b["t"] <= a["t"]:
            continue
        total = sum(d["bytes"] for d in b["layers"].values()) - sum(
            d["bytes"] for d in a["layers"].values())
        sent.append((b["t"] - t0, 8 * total / (b["t"] - a["t"]) / 1000))
    ax3.plot([t for t, _ in sent], [v for _, v in sent], alpha=0.7, label="publisher sent")
    ax3.set_ylabel("kbit/s")
    ax3.set_xlabel("seconds")
    ax3.set_yscale("symlog", linthresh=100)
    ax3.legend(loc="upper left", fontsize=8)
    for ax in (ax1, ax2, ax3):
        ax.axvspan(sc.on_at, sc.off_at, color="orange", alpha=0.15)
        ax.set_xlim(0, sc.end_at)
    fig.suptitle(f"{sc.name}{suffix}: {sc.title} (shaded)")
    fig.tight_layout()
    path = out / f"network-{sc.name}{suffix}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run(sc: Scenario, no_plot: bool, out: Path, cc: bool = True) -> dict[str, Any]:
    log_dir = Path(tempfile.mkdtemp(prefix=f"roost-bench-{sc.name}-"))
    with Lab() as lab:
        if sc.name == "jitter":
            reason = impair.netem_missing(lab.host("probe"))
            if reason:
                return {"skipped": reason}
        config = {"rtc": {"congestion_control": {"enabled": cc}}}
        call = CongestionCall(lab, netlab.start_roost, log_dir, seconds=sc.end_at + 60,
                              config=config)
        call.start()
        try:
            call.wait_media(timeout=60)
            ready = call.wait_three_layers(timeout=40)
            t0 = call.mark("start")
            call.hold(sc.on_at)
            try:
                sc.on(call.net)
            except NetlabUnavailable as exc:
                return {"skipped": str(exc)}
            call.hold(max(0.0, t0 + sc.off_at - time.monotonic()))
            sc.off(call.net)
            call.hold(max(0.0, t0 + sc.end_at - time.monotonic()))
            call.stop()
        finally:
            call.roost.stop()
        tl = call.timeline.refresh()
        res = {"publisher_at_start": ready, **analyse(sc, tl, t0), "logs": str(log_dir)}
        if not no_plot:
            res["plot"] = plot(sc, tl, t0, out, "" if cc else "-cc-off")
        return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[],
                        help="default: all")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--compare-off", action="store_true",
                        help="run each scenario again with rtc.congestion_control off")
    args = parser.parse_args()
    reason = netlab.unavailable_reason()
    if reason:
        raise SystemExit(f"network lab unavailable: {reason}")
    for name in args.scenarios or list(SCENARIOS):
        sc = SCENARIOS[name]
        print(f"\n== {name}: {sc.title}; on {sc.on_at:g}-{sc.off_at:g} s of {sc.end_at:g} s")
        for cc in (True, False) if args.compare_off else (True,):
            if args.compare_off:
                print(f"  -- congestion control {'on' if cc else 'off'}")
            result = run(sc, args.no_plot, args.out, cc)
            for key, value in result.items():
                if key == "timeline":
                    print("  received every 2 s:")
                    for line in value:
                        print(f"    {line}")
                else:
                    print(f"  {key}: {value}")


if __name__ == "__main__":
    main()

"""Process-wide counters any layer may bump cheaply; `edge.metrics` serves them at /metrics.

Two kinds of instruments live here:

* Prometheus counters and histograms for rare events (errors, webhook outcomes, join
  latency). Call the helpers: `count_error(kind)`, `observe_join_stage(stage, seconds)`.
* `MediaStats`: plain integer attributes for the per-packet paths. A track owns one and does
  `stats.packets_in += 1; stats.bytes_in += n` (or `stats.packet_in(n)`); nothing touches
  Prometheus per packet. A collector sums the live objects at scrape time, and an object's
  totals are folded into the retired totals when it is closed or garbage collected, so the
  exported counters never go backwards.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

disable_created_metrics()  # no `*_created` series: they double the output and nobody graphs them
REGISTRY = CollectorRegistry(auto_describe=True)

ERRORS = Counter("roost_errors", "Errors by kind (signal frames, webhooks, ...)", ["kind"],
                 registry=REGISTRY)
LOG_MESSAGES = Counter("roost_log_messages", "Warnings and errors logged, by level and logger",
                       ["level", "logger"], registry=REGISTRY)
JOIN_LATENCY = Histogram(
    "roost_join_latency_seconds", "Time spent in each stage of a join", ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0),
    registry=REGISTRY)
PARTICIPANTS_JOINED = Counter("roost_participants_joined",
                              "Participants that became ACTIVE", registry=REGISTRY)
PARTICIPANTS_LEFT = Counter("roost_participants_left", "Participants that left a room",
                            registry=REGISTRY)
DATA_PACKETS = Counter("roost_data_packets", "Data packets received for routing, by channel",
                       ["label"], registry=REGISTRY)
DATA_BYTES = Counter("roost_data_bytes", "Data packet bytes received for routing, by channel",
                     ["label"], registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter(
    "roost_webhook_deliveries", "Webhook events per URL by final outcome (success|failure)",
    ["result"], registry=REGISTRY)
WEBHOOK_DROPPED = Counter(
    "roost_webhook_dropped",
    "Webhook events given up, by reason (rejected|expired|attempts|queue_full|shutdown|error)",
    ["reason"], registry=REGISTRY)
WEBHOOK_RETRIES = Counter("roost_webhook_retries", "Failed webhook attempts that were retried",
                          registry=REGISTRY)

AGENT_JOBS = Counter(
    "roost_agent_jobs",
    "Agent jobs by outcome (assigned|rejected|timeout|no_worker|join_timeout|reassigned)",
    ["outcome"], registry=REGISTRY)
AGENT_DISPATCH_LATENCY = Histogram(
    "roost_agent_dispatch_seconds", "Job created → assigned to a worker",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY)

TWCC_FEEDBACK = Counter(
    "roost_twcc_feedback", "Transport-wide CC feedback from subscribers, by result "
    "(used|unknown: naming packets not sent or long forgotten)", ["result"], registry=REGISTRY)

TWCC_FEEDBACK_SENT = Counter(
    "roost_twcc_feedback_sent", "Transport-wide CC feedback packets sent to publishers",
    registry=REGISTRY)
TWCC_RECORD_ERRORS = Counter(
    "roost_twcc_record_errors", "Publisher packets whose transport-wide sequence number was "
    "not recorded, by kind (malformed: an element not 2 bytes or a cut block; late: behind "
    "the reordering window)", ["kind"], registry=REGISTRY)

for _result in ("success", "failure"):
    WEBHOOK_DELIVERIES.labels(_result)
for _kind in ("malformed", "late"):
    TWCC_RECORD_ERRORS.labels(_kind)


def count_error(kind: str) -> None:
    """Count one error of `kind` (a short snake_case name such as `signal_frame`)."""
    ERRORS.labels(kind).inc()


def count_twcc_feedback(used: bool) -> None:
    """Count one TWCC feedback packet: read into the estimate, or naming nothing known."""
    TWCC_FEEDBACK.labels("used" if used else "unknown").inc()


def count_twcc_feedback_sent(packets: int, malformed: int = 0, late: int = 0) -> None:
    """Count TWCC feedback sent to a publisher, and the packets it could not record."""
    if packets:
        TWCC_FEEDBACK_SENT.inc(packets)
    if malformed:
        TWCC_RECORD_ERRORS.labels("malformed").inc(malformed)
    if late:
        TWCC_RECORD_ERRORS.labels("late").inc(late)


def count_agent_job(outcome: str, dispatch_seconds: float | None = None) -> None:
    """Count one agent job outcome; an assignment also records its dispatch latency."""
    AGENT_JOBS.labels(outcome).inc()
    if dispatch_seconds is not None:
        AGENT_DISPATCH_LATENCY.observe(max(0.0, dispatch_seconds))


def observe_join_stage(stage: str, seconds: float) -> None:
    """Record how long one join stage took (e.g. `ws_open_to_join_response`)."""
    JOIN_LATENCY.labels(stage).observe(max(0.0, seconds))


# -- media counters, batched ---------------------------------------------------

_FIELDS = ("packets_in", "bytes_in", "packets_out", "bytes_out",
           "nacks_in", "nacks_out", "plis_in", "plis_out")
_KINDS = ("audio", "video")
_live: weakref.WeakSet[MediaStats] = weakref.WeakSet()
_retired: dict[tuple[str, str], int] = {(k, f): 0 for k in _KINDS for f in _FIELDS}


class MediaStats:
    """Per-track packet counters: plain int adds on the hot path, summed at scrape time.

    `in` is what roost received (RTP from publishers, NACK/PLI from subscribers), `out` what
    it sent (RTP to subscribers, NACK/PLI to publishers).
    """

    __slots__ = ("__weakref__", "_closed", "bytes_in", "bytes_out", "kind", "nacks_in",
                 "nacks_out", "packets_in", "packets_out", "plis_in", "plis_out")

    def __init__(self, kind: str) -> None:
        self.kind = kind if kind in _KINDS else "video"
        self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = 0
        self.nacks_in = self.nacks_out = self.plis_in = self.plis_out = 0
        self._closed = False
        _live.add(self)

    def packet_in(self, size: int) -> None:
        """One RTP packet of `size` bytes received."""
        self.packets_in += 1
        self.bytes_in += size

    def packet_out(self, size: int) -> None:
        """One RTP packet of `size` bytes sent."""
        self.packets_out += 1
        self.bytes_out += size

    def close(self) -> None:
        """Fold this object's totals into the retired totals (idempotent; also on GC)."""
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        for name in _FIELDS:
            _retired[self.kind, name] += getattr(self, name)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: module globals may be gone
            pass


def media_totals() -> dict[tuple[str, str], int]:
    """Totals by (kind, field) over retired and live MediaStats."""
    enabled = gc.isenabled()
    gc.disable()  # no object may be folded into _retired while we sum
    try:
        totals = dict(_retired)
        for stats in list(_live):
            if stats._closed:
                continue
            for name in _FIELDS:
                totals[stats.kind, name] += getattr(stats, name)
    finally:
        if enabled:
            gc.enable()
    return totals


class _MediaCollector(Collector):
    """Exports the MediaStats totals as `roost_media_*_total{direction, kind}`."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        totals = media_totals()
        for metric, doc in (("packets", "RTP packets"), ("bytes", "RTP payload bytes"),
                            ("nacks", "RTCP NACKs"), ("plis", "RTCP PLIs")):
            family = CounterMetricFamily(f"roost_media_{metric}", f"{doc} by direction and kind",
                                         labels=["direction", "kind"])
            for direction in ("in", "out"):
                for kind in _KINDS:
                    family.add_metric([direction, kind], totals[kind, f"{metric}_{direction}"])
            yield family


REGISTRY.register(_MediaCollector())


# -- congestion control, read at scrape time -----------------------------------------


def _media_sessions() -> list[object]:
    """The RtpSessions the media clocks tick (only those whose DTLS is up)."""
    from roost.media.rtpsession import MediaClock  # late: telemetry must not import media early

    clocks = getattr(MediaClock, "_clocks", {})
    return [s for clock in list(clocks.values()) for s in list(getattr(clock, "sessions", {}))]


class _CongestionCollector(Collector):
    """Per-subscriber estimate and forwarded layer, per-publisher layer bitrates (gauges).

    Read from the live media sessions when /metrics is scraped (nothing on the packet path):
    `roost_cc_available_bps{session}` the bandwidth a subscriber's link is believed to take
    (TWCC estimate while feedback arrives, else REMB; absent when unknown),
    `roost_cc_forwarded_layer{session,track}` the spatial layer forwarded to a subscriber
    (-1: none/paused), `roost_cc_target_layer{session,track}` the layer it switches to, and
    `roost_cc_publisher_layer_bps{session,mid,layer}` what each simulcast layer brings in.
    `session` is roost's transport label (`<participant sid>/<publisher|subscriber>`).
    Attributes are read defensively: a media object without one is skipped.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import time

        estimate = GaugeMetricFamily("roost_cc_available_bps",
                                     "Bandwidth believed available towards a subscriber",
                                     labels=["session"])
        forwarded = GaugeMetricFamily("roost_cc_forwarded_layer",
                                      "Spatial layer forwarded to a subscriber (-1 none)",
                                      labels=["session", "track"])
        target = GaugeMetricFamily("roost_cc_target_layer",
                                   "Spatial layer a subscriber's forwarder aims at (-1 none)",
                                   labels=["session", "track"])
        layers = GaugeMetricFamily("roost_cc_publisher_layer_bps",
                                   "Received bits/s per published layer",
                                   labels=["session", "mid", "layer"])
        try:
            sessions = _media_sessions()
        except Exception:  # media not importable / no loop: nothing to report
            sessions = []
        now = time.monotonic()
        for session in sessions:
            label = str(getattr(session, "label", "?"))
            try:
                available = getattr(session, "available_bps", None)
                bps = available(now) if callable(available) else None
                if bps is not None:
                    estimate.add_metric([label], float(bps))
                for ssrc, down in list(getattr(session, "downs", {}).items()):
                    forwarder = getattr(down, "forwarder", None)
                    if ssrc != getattr(down, "ssrc", None) or forwarder is None:
                        continue
                    if getattr(down, "kind", "video") != "video":
                        continue
                    track = str(getattr(down, "track_sid", "?"))
                    current = getattr(forwarder, "current_layer", None)
                    layer = current() if callable(current) else current
                    forwarded.add_metric([label, track], -1.0 if layer is None else layer)
                    aim = getattr(forwarder, "target_layer", None)
                    target.add_metric([label, track], -1.0 if aim is None else aim)
                for up in list(getattr(session, "ups", {}).values()):
                    if getattr(up, "kind", "") != "video":
                        continue
                    for index, rate in up.layer_bitrates().items():
                        layers.add_metric([label, str(getattr(up, "mid", "?")), str(index)],
                                          float(rate))
            except Exception:  # a media object mid-change: skip it this scrape
                continue
        yield estimate
        yield forwarded
        yield target
        yield layers


REGISTRY.register(_CongestionCollector())


class _LogCounter(logging.Handler):
    """Counts WARNING and above per level and logger name."""

    def emit(self, record: logging.LogRecord) -> None:
        LOG_MESSAGES.labels(record.levelname.lower(), record.name).inc()


def count_log_messages(logger: str = "roost") -> None:
    """Count warnings and errors logged under `logger` (installed once)."""
    target = logging.getLogger(logger)
    if not any(isinstance(h, _LogCounter) for h in target.handlers):
        target.addHandler(_LogCounter(logging.WARNING))

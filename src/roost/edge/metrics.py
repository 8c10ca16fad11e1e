"""`GET /metrics` (Prometheus text), `GET /healthz` (liveness) and `GET /readyz` (readiness).

Room, participant and track gauges are read from the RoomManager at scrape time; the
process-wide counters come from `roost.telemetry`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from livekit.protocol import models
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from roost import telemetry
from roost.room.manager import RoomManager
from roost.room.participant import Participant
from roost.room.room import LOSSY, RELIABLE, Room


class _Forward(Collector):
    """Re-exports everything in another registry (the process-wide one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


class RoomCollector(Collector):
    """Gauges over the live rooms of one RoomManager."""

    def __init__(self, rooms: RoomManager) -> None:
        self.rooms = rooms

    def collect(self) -> Iterator[Metric]:
        rooms = [r for r in self.rooms.rooms.values() if not r.closed]
        participants = GaugeMetricFamily("roost_participants",
                                         "Participants in rooms on this node, by state",
                                         labels=["state"])
        states = {name.lower(): 0 for name in models.ParticipantInfo.State.keys()
                  if name != "DISCONNECTED"}
        tracks = {"audio": 0, "video": 0}
        subscriptions = 0
        for room in rooms:
            for p in room.participants.values():
                name = models.ParticipantInfo.State.Name(p.state).lower()
                states[name] = states.get(name, 0) + 1
                for pub in p.publications.published.values():
                    kind = "audio" if pub.info.type == models.TrackType.AUDIO else "video"
                    tracks[kind] += 1
                    subscriptions += len(pub.subscribers)
        yield GaugeMetricFamily("roost_rooms", "Rooms open on this node", value=len(rooms))
        for state, count in states.items():
            participants.add_metric([state], count)
        yield participants
        published = GaugeMetricFamily("roost_tracks", "Published tracks, by kind",
                                      labels=["kind"])
        for kind, count in tracks.items():
            published.add_metric([kind], count)
        yield published
        yield GaugeMetricFamily("roost_subscriptions", "Track subscriptions",
                                value=subscriptions)
        yield GaugeMetricFamily("roost_draining", "1 while the node refuses new joins",
                                value=1 if self.rooms.draining else 0)


class NetworkCollector(Collector):
    """The shared ICE sockets' and the TURN server's counters (read at scrape time)."""

    def __init__(self, sources: Callable[[], tuple[Any, Any]]) -> None:
        self.sources = sources  # () -> (IceMux | None, TurnServer | None)

    def collect(self) -> Iterator[Metric]:
        mux, turn = self.sources()
        if mux is not None:
            dropped = CounterMetricFamily(
                "roost_ice_dropped", "Packets the shared ICE sockets dropped, by reason",
                labels=["reason"])
            stats = mux.stats
            for reason, value in (("unknown_ufrag", stats.unknown_ufrag),
                                  ("unknown_address", stats.unknown_address),
                                  ("tcp_refused", stats.tcp_refused),
                                  ("malformed", stats.malformed)):
                dropped.add_metric([reason], value)
            yield dropped
            yield GaugeMetricFamily("roost_ice_tcp_connections", "Open ICE-TCP connections",
                                    value=len(mux.streams))
        if turn is not None:
            numbers = turn.stats()
            yield GaugeMetricFamily("roost_turn_allocations", "TURN allocations",
                                    value=numbers.get("allocations", 0))
            refused = CounterMetricFamily("roost_turn_errors", "TURN error responses, by code",
                                          labels=["code"])
            for key, value in sorted(numbers.items()):
                if key.startswith("error_"):
                    refused.add_metric([key.removeprefix("error_")], value)
            yield refused


class Metrics:
    """One node's metrics endpoints and the room-event counters feeding them."""

    def __init__(self, rooms: RoomManager,
                 network: Callable[[], tuple[Any, Any]] | None = None) -> None:
        self.rooms = rooms
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Forward(telemetry.REGISTRY))
        self.registry.register(RoomCollector(rooms))
        if network is not None:
            self.registry.register(NetworkCollector(network))
        rooms.listeners.append(self.on_event)
        telemetry.count_log_messages()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)

    def on_event(self, event: str, room: Room, participant: Participant | None,
                 track: models.TrackInfo | None) -> None:
        """RoomManager listener: lifecycle counters, join latency, data counting tap."""
        if event == "room_started":
            room.data_taps.append(_count_data)
        elif event == "participant_joined" and participant is not None:
            telemetry.PARTICIPANTS_JOINED.inc()
            telemetry.observe_join_stage("join_to_active",
                                         time.time() - participant.joined_at_ms / 1000)
        elif event == "participant_left":
            telemetry.PARTICIPANTS_LEFT.inc()

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def readyz(self, request: web.Request) -> web.Response:
        if self.rooms.draining:
            return web.Response(status=503, text="draining")
        return web.Response(text="OK")


_DATA = {label: (telemetry.DATA_PACKETS.labels(label.strip("_")),
                 telemetry.DATA_BYTES.labels(label.strip("_")))
         for label in (RELIABLE, LOSSY)}


def _count_data(sender: Participant, label: str, payload: bytes) -> bool:
    """Room data tap: count the packet on its channel and let routing go on."""
    counters = _DATA.get(label)
    if counters is not None:
        counters[0].inc()
        counters[1].inc(len(payload))
    return False

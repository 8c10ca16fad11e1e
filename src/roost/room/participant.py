"""A participant: identity, state, permissions, and its full-snapshot ParticipantInfo."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livekit.protocol import models, rtc

from roost import ids
from roost.ids import Identity
from roost.room.tracks import PublisherTracks

if TYPE_CHECKING:
    from roost.media.types import Transport
    from roost.room.types import SignalSink

log = logging.getLogger("roost.participant")
_DEPENDENT_KINDS = (models.ParticipantInfo.Kind.AGENT, models.ParticipantInfo.Kind.EGRESS)

State = models.ParticipantInfo.State


@dataclass
class ClientParams:
    """What the client said about itself on the signalling URL (or JoinRequest)."""

    protocol: int = 0
    client_protocol: int = 0
    auto_subscribe: bool = True
    adaptive_stream: bool = False
    sdk: str = ""
    version: str = ""
    os: str = ""
    capabilities: list[int] = field(default_factory=list)
    reconnect: bool = False
    reconnect_sid: str = ""
    reconnect_reason: int = 0
    single_pc: bool = False
    subscriber_allow_pause: bool = False  # the client accepts bandwidth pauses of its video
    # v1: base64 SignalRequests (JoinRequest's add_track_requests, publisher_offer) to
    # handle right after the JoinResponse
    initial_requests: list[str] = field(default_factory=list)
    client_info: models.ClientInfo | None = None


class Participant:
    """One session of one identity in one room."""

    def __init__(
        self,
        *,
        identity: Identity,
        name: str,
        metadata: str,
        attributes: dict[str, str],
        kind: int,
        permission: models.ParticipantPermission,
        params: ClientParams,
        api_key: str,
        grant_raw: dict[str, Any] | None = None,
    ) -> None:
        self.sid = ids.participant_sid()
        self.identity = identity
        self.name = name
        self.metadata = metadata
        self.attributes = dict(attributes)
        self.kind = kind
        self.permission = permission
        self.params = params
        self.api_key = api_key
        self.grant_raw = grant_raw or {}
        self.state: int = State.JOINING
        self.version = 0
        now = time.time()
        self.joined_at = int(now)
        self.joined_at_ms = int(now * 1000)
        self.disconnect_reason: int = 0
        self.is_publisher = False
        self.tracks: dict[str, models.TrackInfo] = {}
        self.session: SignalSink | None = None
        self.publisher: Transport | None = None
        self.subscriber: Transport | None = None
        self.last_reliable_seq = 0  # highest reliable DataPacket.sequence received
        self.subscriber_offer_id = 0
        self.ice_restart_pending = False
        self.signal_rtt_ms = 0
        self.subscription_permission: rtc.SubscriptionPermission | None = None
        self._pending: list[rtc.SignalResponse] = []
        self.missed_departures: dict[str, models.ParticipantInfo] = {}
        self.publications = PublisherTracks(self)
        self.desired: dict[str, bool] = {}  # explicit UpdateSubscription choices by track sid
        # Set by the signal layer: renegotiate the subscriber peer connection soon.
        self.request_negotiation: Callable[[], None] = lambda: None
        # Set by the room: recompute which simulcast layers subscribers need (dynacast).
        self.on_quality_change: Callable[[], None] = lambda: None

    # -- derived facts -------------------------------------------------------
    @property
    def hidden(self) -> bool:
        return bool(self.permission.hidden)

    @property
    def is_dependent(self) -> bool:
        """An agent or egress: it does not count toward limits, keep the room open or get
        agent jobs of its own (livekit's IsDependent)."""
        return self.kind in _DEPENDENT_KINDS or bool(self.permission.agent)

    @property
    def subscriber_primary(self) -> bool:
        return (self.params.protocol > 2 and self.permission.can_subscribe
                and not self.params.single_pc)

    @property
    def primary(self) -> Transport | None:
        return self.subscriber if self.subscriber_primary else self.publisher

    @property
    def downstream(self) -> Transport | None:
        """The transport subscribed tracks are sent on (the only one in single-PC mode)."""
        return self.publisher if self.params.single_pc else self.subscriber

    @property
    def active(self) -> bool:
        return self.state == State.ACTIVE

    @property
    def connected(self) -> bool:
        return self.state in (State.JOINED, State.ACTIVE)

    def log_extra(self) -> dict[str, str]:
        return {"participant": self.identity, "pID": self.sid}

    # -- state ---------------------------------------------------------------
    def touch(self) -> None:
        """Mark the info changed: the next snapshot carries a higher version."""
        self.version += 1

    def set_state(self, state: int) -> bool:
        """Move forward in JOINING → JOINED → ACTIVE → DISCONNECTED; False if not forward."""
        if state <= self.state:
            return False
        self.state = state
        self.touch()
        return True

    # -- room rules: what an update of name, metadata or attributes means ----------------
    def merged_attributes(self, changes: Mapping[str, str]) -> dict[str, str]:
        """The attributes after `changes`, merged as LiveKit does: an empty value removes
        its key, the rest are set; keys not named are kept."""
        merged = dict(self.attributes)
        for key, value in changes.items():
            if value:
                merged[key] = value
            else:
                merged.pop(key, None)
        return merged

    def update_info(self, *, name: str = "", metadata: str = "",
                    attributes: dict[str, str] | None = None) -> None:
        """Apply an update whose limits the caller checked: an empty name or metadata leaves
        the old one, `attributes` (already merged) replaces the map."""
        if name:
            self.name = name
        if metadata:
            self.metadata = metadata
        if attributes is not None:
            self.attributes = attributes

    def to_proto(self) -> models.ParticipantInfo:
        info = models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            state=self.state,  # type: ignore[arg-type]
            metadata=self.metadata,
            joined_at=self.joined_at,
            joined_at_ms=self.joined_at_ms,
            name=self.name,
            version=self.version,
            is_publisher=self.is_publisher,
            kind=self.kind,  # type: ignore[arg-type]
            disconnect_reason=self.disconnect_reason,  # type: ignore[arg-type]
            client_protocol=self.params.client_protocol,
        )
        info.permission.CopyFrom(self.permission)
        info.attributes.update(self.attributes)
        info.tracks.extend(self.tracks.values())
        info.capabilities.extend(self.params.capabilities)  # type: ignore[arg-type]
        return info

    # -- signalling ----------------------------------------------------------
    def send(self, response: rtc.SignalResponse) -> None:
        """Send to the client; messages made before the JoinResponse wait for it."""
        if self.state == State.JOINING:
            self._pending.append(response)
            return
        if self.session is not None:
            self.session.send(response)
        elif response.WhichOneof("message") == "update":
            # Away (waiting for a resume): remember who left, to report it on return.
            for info in response.update.participants:
                if info.state == State.DISCONNECTED and len(self.missed_departures) < 1000:
                    self.missed_departures[info.sid] = info

    def flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for response in pending:
            self.send(response)

    def send_data(self, label: str, payload: bytes) -> bool:
        """Deliver a serialized DataPacket on the primary transport's channel `label`."""
        transport = self.primary
        if transport is None:
            return False
        return transport.send_data(label, payload)

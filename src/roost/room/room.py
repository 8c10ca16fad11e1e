"""A room: its participants, the updates they see, and data routing between them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from google.protobuf.message import DecodeError
from livekit.protocol import agent_dispatch, models, rtc

from roost import ids
from roost.ids import Identity, ParticipantSid, RoomName, TrackSid
from roost.media.types import MediaInfo, UpTrack
from roost.room.dynacast import Dynacast
from roost.room.participant import Participant, State
from roost.room.quality import ConnectionQualities
from roost.room.speakers import ActiveSpeakers
from roost.room.subscriptions import Subscriptions
from roost.room.tracks import TrackPublication

log = logging.getLogger("roost.room")

Reason = models.DisconnectReason

RELIABLE = "_reliable"
LOSSY = "_lossy"


class JoinError(Exception):
    """A participant cannot join; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Room:
    """One room's participants and state; all methods run on the event loop."""

    def __init__(
        self,
        name: RoomName,
        *,
        empty_timeout: int,
        departure_timeout: int,
        max_participants: int = 0,
        metadata: str = "",
    ) -> None:
        self.sid = ids.new_id(ids.ROOM)
        self.name = name
        self.empty_timeout = empty_timeout
        self.departure_timeout = departure_timeout
        self.max_participants = max_participants
        self.metadata = metadata
        now = time.time()
        self.creation_time = int(now)
        self.creation_time_ms = int(now * 1000)
        self.participants: dict[Identity, Participant] = {}
        self.closed = False
        self.allow_pause = False  # rtc.congestion_control.allow_pause, set by the manager
        # RoomConfiguration.agents as the room was created with; None: the default dispatch
        self.agent_dispatches: list[agent_dispatch.RoomAgentDispatch] | None = None
        self.ever_joined = False
        self.last_left_at = 0.0
        self.version = 0
        self.on_participant_active: list[Callable[[Room, Participant], None]] = []
        self.on_participant_left: list[Callable[[Room, Participant], None]] = []
        # (room, publisher, publication, published?) for webhooks and metrics
        self.on_track: list[Callable[[Room, Participant, TrackPublication, bool], None]] = []
        self.subscriptions = Subscriptions(self)
        # Consumers of data addressed to the server itself (RoomService PerformRpc):
        # each sees (sender, label, payload) first and returns True to consume it.
        self.data_taps: list[Callable[[Participant, str, bytes], bool]] = []
        self.speakers = ActiveSpeakers(self)
        self.qualities = ConnectionQualities(self)
        self._dynacast: dict[str, Dynacast] = {}
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the periodic room work (speakers, connection quality)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        ticks = 0
        while not self.closed:
            await asyncio.sleep(0.4)
            ticks += 1
            try:
                self.speakers.tick()
                if ticks % 12 == 0:  # every 4.8 s
                    self.qualities.tick()
            except Exception:
                log.exception("room worker failed", extra=self.log_extra())

    # -- views ---------------------------------------------------------------
    def log_extra(self) -> dict[str, str]:
        return {"room": self.name, "roomID": self.sid}

    def visible(self) -> list[Participant]:
        return [p for p in self.participants.values() if not p.hidden]

    def by_sid(self, sid: ParticipantSid | str) -> Participant | None:
        for p in self.participants.values():
            if p.sid == sid:
                return p
        return None

    def to_proto(self) -> models.Room:
        visible = self.visible()
        room = models.Room(
            sid=self.sid,
            name=self.name,
            empty_timeout=self.empty_timeout,
            departure_timeout=self.departure_timeout,
            max_participants=self.max_participants,
            creation_time=self.creation_time,
            creation_time_ms=self.creation_time_ms,
            metadata=self.metadata,
            num_participants=sum(1 for p in visible if not p.is_dependent),
            num_publishers=sum(1 for p in visible if p.is_publisher),
        )
        room.version.unix_micro = self.creation_time_ms * 1000
        room.version.ticks = self.version
        return room

    # -- membership ----------------------------------------------------------
    def counted(self) -> list[Participant]:
        """The participants limits and emptiness count: not hidden, not agents or egress."""
        return [p for p in self.participants.values() if not p.hidden and not p.is_dependent]

    def check_join(self, joining: Participant | None = None) -> None:
        if self.closed:
            raise JoinError("room is closed", 503)
        if joining is not None and joining.is_dependent:
            return  # agents do not count toward max_participants
        if self.max_participants and len(self.counted()) >= self.max_participants:
            raise JoinError("room is full", 503)

    def join(self, participant: Participant) -> rtc.JoinResponse:
        """Add `participant`; returns the room part of its JoinResponse."""
        self.check_join(participant)
        self.participants[participant.identity] = participant
        if not participant.is_dependent:
            self.ever_joined = True
        dynacast = Dynacast(participant)
        self._dynacast[participant.sid] = dynacast
        participant.on_quality_change = dynacast.update
        response = rtc.JoinResponse(subscriber_primary=participant.subscriber_primary)
        response.room.CopyFrom(self.to_proto())
        response.other_participants.extend(
            p.to_proto() for p in self.visible() if p is not participant and p.connected
        )
        log.info("participant joining", extra={**self.log_extra(), **participant.log_extra()})
        return response

    def mark_joined(self, participant: Participant) -> None:
        """The JoinResponse went out: announce the newcomer and release queued messages."""
        participant.set_state(State.JOINED)
        participant.flush_pending()
        self.broadcast_participant(participant)

    def mark_active(self, participant: Participant) -> None:
        if participant.set_state(State.ACTIVE):
            log.info("participant active", extra={**self.log_extra(), **participant.log_extra()})
            self.broadcast_participant(participant)
            for cb in self.on_participant_active:
                cb(self, participant)
            self.subscriptions.on_active(participant)

    def remove(self, participant: Participant, reason: int, *, send_leave: bool = True) -> bool:
        """Take `participant` out of the room; tell it why and tell the others it left."""
        if self.participants.get(participant.identity) is not participant:
            return False
        del self.participants[participant.identity]
        participant.disconnect_reason = reason
        participant.set_state(State.DISCONNECTED)
        if not participant.is_dependent:
            self.last_left_at = time.monotonic()
        self.subscriptions.on_left(participant)
        dynacast = self._dynacast.pop(participant.sid, None)
        if dynacast is not None:
            dynacast.close()
        for pub in list(participant.publications.published.values()):
            for track_cb in self.on_track:
                track_cb(self, participant, pub, False)
        if send_leave and participant.session is not None:
            participant.session.send(leave_response(reason, participant.params.protocol))
            participant.session.close("removed")
        self.broadcast_participant(participant)
        for cb in self.on_participant_left:
            cb(self, participant)
        task = asyncio.get_running_loop().create_task(_close_transports(participant))
        _background.add(task)
        task.add_done_callback(_background.discard)
        log.info("participant left", extra={**self.log_extra(), **participant.log_extra(),
                                            "reason": Reason.Name(reason)})
        return True

    # -- tracks ----------------------------------------------------------------
    def media_arrived(self, participant: Participant, media: MediaInfo, up: UpTrack) -> None:
        """The publisher's offer carried a media section: bind it to its AddTrack."""
        pub = participant.publications.match(media, up)
        if pub is not None:
            self._published(participant, pub)

    def track_requested(self, participant: Participant) -> None:
        """A new AddTrack may match media that arrived before it."""
        for pub in participant.publications.retry_unmatched():
            self._published(participant, pub)

    def _published(self, participant: Participant, pub: TrackPublication) -> None:
        participant.is_publisher = True
        participant.touch()
        log.info("track published", extra={**self.log_extra(), **participant.log_extra(),
                                           "track": pub.sid, "mime": pub.info.mime_type})
        self.broadcast_participant(participant)
        for cb in self.on_track:
            cb(self, participant, pub, True)
        self.subscriptions.on_published(pub)
        participant.on_quality_change()

    def apply_permission(self, p: Participant) -> None:
        """After a permission replace: unpublish what may no longer be published, re-decide
        every subscription of `p` (revoked when can_subscribe is off, restored when back on)."""
        perm = p.permission
        for pub in list(p.publications.published.values()):
            source = pub.info.source
            if not perm.can_publish or (perm.can_publish_sources
                                        and source not in perm.can_publish_sources):
                self.unpublish(p, pub.sid, notify=True)
        for pub in self.subscriptions.publications():
            self.subscriptions.reconcile(p, pub)

    def unpublish(self, participant: Participant, track_sid: TrackSid, *,
                  notify: bool = False) -> bool:
        """Remove a publication; `notify` tells the publisher (server-initiated unpublish)."""
        pub = participant.publications.remove(track_sid)
        if pub is None:
            return False
        self.subscriptions.on_unpublished(pub)
        participant.touch()
        if notify:
            msg = rtc.SignalResponse()
            msg.track_unpublished.track_sid = track_sid
            participant.send(msg)
        self.broadcast_participant(participant)
        for cb in self.on_track:
            cb(self, participant, pub, False)
        log.info("track unpublished", extra={**self.log_extra(), **participant.log_extra(),
                                             "track": track_sid})
        return True

    def media_ended(self, participant: Participant, mid: str) -> None:
        pub = participant.publications.by_mid(mid)
        if pub is not None:
            self.unpublish(participant, pub.sid)

    def set_muted(self, participant: Participant, track_sid: str, muted: bool) -> bool:
        info = participant.tracks.get(track_sid)
        if info is None:
            return False
        if info.muted != muted:
            info.muted = muted
            participant.touch()
            self.broadcast_participant(participant)
        return True

    # -- updates -------------------------------------------------------------
    def broadcast_participant(self, participant: Participant) -> None:
        """Send `participant`'s snapshot to itself and (unless hidden) to everyone else."""
        update = rtc.SignalResponse()
        update.update.participants.append(participant.to_proto())
        if participant.state != State.DISCONNECTED:
            participant.send(update)
        if participant.hidden:
            return
        for other in self.participants.values():
            # A participant still JOINING queues it until its JoinResponse (whose snapshot
            # may predate this participant) is out, so no one misses a concurrent joiner.
            if other is not participant and (other.connected or other.state == State.JOINING):
                other.send(update)

    def broadcast_room(self) -> None:
        self.version += 1
        message = rtc.SignalResponse()
        message.room_update.room.CopyFrom(self.to_proto())
        for p in self.participants.values():
            if p.connected:
                p.send(message)

    def full_update(self, to: Participant) -> None:
        """Everyone the participant may see (itself included), as on resume."""
        update = rtc.SignalResponse()
        update.update.participants.extend(
            p.to_proto() for p in self.participants.values()
            if p is to or (not p.hidden and p.connected)
        )
        to.send(update)

    # -- data ----------------------------------------------------------------
    def on_data(self, sender: Participant, label: str, payload: bytes) -> None:
        """A DataPacket arrived from `sender` on channel `label`: stamp it and route it."""
        if not sender.connected or not sender.permission.can_publish_data:
            return
        if label not in (RELIABLE, LOSSY):
            return  # _data_track and unlabeled channels are not routed
        for tap in self.data_taps:
            if tap(sender, label, payload):
                return
        packet = models.DataPacket()
        try:
            packet.ParseFromString(payload)
        except DecodeError:
            log.debug("undecodable data packet", extra=sender.log_extra())
            return
        reliable = label == RELIABLE
        if reliable and packet.sequence > 0:
            if packet.sequence <= sender.last_reliable_seq:
                return  # replay of something already routed (after a resume)
            sender.last_reliable_seq = packet.sequence
        kind = packet.WhichOneof("value")
        if kind == "transcription" and sender.kind != models.ParticipantInfo.Kind.AGENT:
            return
        if kind == "metrics":
            return
        keep_identity = (
            sender.kind == models.ParticipantInfo.Kind.AGENT
            and kind in ("chat_message", "stream_header")
            and packet.participant_identity not in ("", sender.identity)
        )
        if not keep_identity:
            packet.participant_identity = "" if sender.hidden else sender.identity
        packet.participant_sid = sender.sid
        packet.kind = models.DataPacket.Kind.RELIABLE if reliable else models.DataPacket.Kind.LOSSY
        destinations = list(packet.destination_identities)
        if kind == "user":
            user = packet.user
            user.participant_sid = sender.sid
            user.participant_identity = packet.participant_identity
            if not destinations and user.destination_identities:
                destinations = list(user.destination_identities)
            if destinations:
                del user.destination_identities[:]
                user.destination_identities.extend(destinations)
            destination_sids = set(user.destination_sids)
        else:
            destination_sids = set()
        if destinations:
            del packet.destination_identities[:]
            packet.destination_identities.extend(destinations)
        self.deliver(packet, reliable, exclude=sender, identities=destinations,
                     sids=destination_sids)

    def deliver(
        self,
        packet: models.DataPacket,
        reliable: bool,
        *,
        exclude: Participant | None = None,
        identities: Iterable[str] = (),
        sids: Iterable[str] = (),
    ) -> int:
        """Serialize once and send to the selected participants; returns how many got it."""
        wanted_ids, wanted_sids = set(identities), set(sids)
        data = packet.SerializeToString()
        label = RELIABLE if reliable else LOSSY
        sent = 0
        for p in self.participants.values():
            if p is exclude or not p.connected:
                continue
            if (wanted_ids or wanted_sids) and p.identity not in wanted_ids \
                    and p.sid not in wanted_sids:
                continue
            if not reliable and not p.active:
                continue
            if p.send_data(label, data):
                sent += 1
            elif reliable:
                log.warning("reliable data not delivered",
                            extra={**self.log_extra(), **p.log_extra()})
        return sent

    def close(self, reason: int = Reason.ROOM_DELETED) -> None:
        self.closed = True
        if self._worker is not None:
            self._worker.cancel()
        for p in list(self.participants.values()):
            self.remove(p, reason)


_background: set[asyncio.Task[None]] = set()


async def _close_transports(participant: Participant) -> None:
    for transport in (participant.publisher, participant.subscriber):
        if transport is not None:
            try:
                await transport.close()
            except Exception:  # a transport failing to close must not stop the others
                log.exception("transport close failed", extra=participant.log_extra())


def leave_response(reason: int, protocol: int, action: int | None = None) -> rtc.SignalResponse:
    """A LeaveRequest for the client, in the form its protocol version understands."""
    msg = rtc.SignalResponse()
    msg.leave.reason = reason  # type: ignore[assignment]
    if action is None:
        action = rtc.LeaveRequest.Action.DISCONNECT
    if protocol >= 13:
        msg.leave.action = action  # type: ignore[assignment]
    else:
        msg.leave.can_reconnect = action != rtc.LeaveRequest.Action.DISCONNECT
    return msg

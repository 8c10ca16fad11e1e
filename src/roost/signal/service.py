"""SignalService: turns an authenticated /rtc request into a participant with a session."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from livekit.protocol import rtc

from roost import ids
from roost.auth import Claims, VideoGrant, issue_token
from roost.config import Settings
from roost.ids import ParticipantSid, RoomName
from roost.media.icemux import IceMux
from roost.media.transport import PeerTransport
from roost.room.manager import JoinResult, RoomManager
from roost.room.participant import ClientParams, Participant, State
from roost.room.room import Reason, Room, leave_response
from roost.routing import LocalRouter, NodeInfo, Router, RoutingUnavailable
from roost.signal.connection import SignalConnection
from roost.signal.handlers import Handlers
from roost.signal.negotiation import Negotiator
from roost.signal.peers import peer
from roost.signal.relay import SignalRelay
from roost.signal.session import SignalSession
from roost.telemetry import observe_join_stage

log = logging.getLogger("roost.signal")

TOKEN_REFRESH_INTERVAL = 300.0
RESUME_GRACE = 20.0  # seconds a participant whose socket dropped may take to resume
# seconds a participant whose primary transport failed is kept (livekit-server's
# disconnectCleanupDuration): a client that closed its socket and its connection while its
# leave was lost (a TCP reset drops unread frames) is gone after this, not RESUME_GRACE
TRANSPORT_FAILED_GRACE = 5.0



class SignalService:
    """Owns every SignalSession on this node."""

    def __init__(self, settings: Settings, rooms: RoomManager,
                 router: Router | None = None) -> None:
        self.settings = settings
        self.rooms = rooms
        self.router: Router = router or LocalRouter(ids.node_id())
        self.node_id = self.router.node_id
        bus = self.router.bus
        self.relay = SignalRelay(self, self.router, bus) if bus is not None else None
        self.sessions: set[SignalSession] = set()
        self._grace: dict[ParticipantSid, asyncio.TimerHandle] = {}  # resume-grace timers
        self._failed: dict[ParticipantSid, asyncio.TimerHandle] = {}  # failed-transport timers
        self._refresh: dict[ParticipantSid, asyncio.Task[None]] = {}
        self._negotiators: dict[ParticipantSid, Negotiator] = {}
        self._all_closed = asyncio.Event()
        self.ice_mux: IceMux | None = None  # the shared ICE sockets; set by the edge at start
        # participant sid → the STUN/TURN servers it is told about (JoinResponse, reconnect)
        self.ice_servers: Callable[[ParticipantSid], list[rtc.ICEServer]] | None = None

    # -- admission -------------------------------------------------------------
    async def place(self, name: RoomName) -> NodeInfo | None:
        """The node to join room `name` on: None for this one, else a peer to relay to.

        Raises RoutingUnavailable when the cluster cannot say where the room belongs.
        """
        if self.relay is None or self.rooms.draining or self.hosts(name):
            return None
        node = await self.router.place(name)
        return None if node.id == self.node_id else node

    def hosts(self, room: RoomName) -> bool:
        """Whether `room` is open on this node."""
        found = self.rooms.rooms.get(room)
        return found is not None and not found.closed

    async def room_exists(self, room: RoomName) -> bool:
        """Whether `room` is open on this node or, with several nodes, on any node."""
        if self.hosts(room):
            return True
        try:
            return await self.router.owner(room) is not None
        except RoutingUnavailable:
            return False

    def admit(self, claims: Claims, params: ClientParams, *,
              attributes: dict[str, str] | None = None,
              metadata: str | None = None) -> JoinResult:
        """Place a join in a room of this node (resume or new participant); may refuse."""
        return self.rooms.join(claims, params, attributes=attributes, metadata=metadata)

    async def serve(self, conn: SignalConnection, result: JoinResult) -> None:
        """Run an admitted participant's session on `conn` until the connection ends."""
        session = SignalSession(self, conn, result.room, result.participant)
        session.handlers = Handlers(self, session)
        self.sessions.add(session)
        if result.resumed:
            await self._resume(session)
        else:
            await self._start(session)
        # v1: the JoinRequest's AddTracks and publisher offer, handled like client requests
        initial, result.participant.params.initial_requests = \
            result.participant.params.initial_requests, []
        for encoded in initial:
            session.enqueue(rtc.SignalRequest.FromString(base64.b64decode(encoded)))
        await session.run()

    async def _start(self, session: SignalSession) -> None:
        room, p = session.room, session.participant
        join = room.join(p)
        p.session = session
        if p.subscriber_primary:
            p.subscriber = self._transport(room, p, "subscriber")
            negotiator = Negotiator(lambda: self.send_subscriber_offer(p, room))
            self._negotiators[p.sid] = negotiator
            p.request_negotiation = negotiator.request
        elif p.params.single_pc:
            # The client always offers: ask it to (with the sections it lacks).
            negotiator = Negotiator(lambda: self.send_media_requirement(p))
            self._negotiators[p.sid] = negotiator
            p.request_negotiation = negotiator.request
        session.fill_join(join)
        session.send(rtc.SignalResponse(join=join))
        observe_join_stage("ws_open_to_join_response", time.time() - p.joined_at_ms / 1000)
        room.mark_joined(p)
        self._send_refresh_token(p)
        self._refresh[p.sid] = asyncio.get_running_loop().create_task(self._refresh_loop(p))
        if p.subscriber is not None:
            p.subscriber_offer_id = random.randint(1, 256)
            await self.send_subscriber_offer(p, room)
            self._negotiators[p.sid].offer_sent_elsewhere()

    async def _resume(self, session: SignalSession) -> None:
        room, p = session.room, session.participant
        timer = self._grace.pop(p.sid, None)
        if timer is not None:
            timer.cancel()
        old = p.session
        p.session = session
        if isinstance(old, SignalSession) and old is not session:
            old.closed = True
            with contextlib.suppress(Exception):
                await old.conn.close()
        log.info("participant resuming", extra={**room.log_extra(), **p.log_extra()})
        reconnect = rtc.SignalResponse()
        reconnect.reconnect.server_info.CopyFrom(session.server_info())
        reconnect.reconnect.last_message_seq = p.last_reliable_seq
        if self.ice_servers is not None:
            reconnect.reconnect.ice_servers.extend(self.ice_servers(p.sid))
        session.send(reconnect)
        missed, p.missed_departures = p.missed_departures, {}
        if missed and p.params.protocol > 8:
            gone = rtc.SignalResponse()
            gone.update.participants.extend(missed.values())
            session.send(gone)
        room.full_update(p)
        msg = rtc.SignalResponse()
        msg.room_update.room.CopyFrom(room.to_proto())
        session.send(msg)
        self._send_refresh_token(p)
        negotiator = self._negotiators.get(p.sid)
        if negotiator is not None and not p.params.single_pc:
            p.ice_restart_pending = True
            negotiator.request()

    def _transport(self, room: Room, p: Participant, label: str) -> PeerTransport:
        rtc_cfg = self.settings.rtc
        port_range = None
        if rtc_cfg.port_range_start and rtc_cfg.port_range_end:
            port_range = (rtc_cfg.port_range_start, rtc_cfg.port_range_end)
        mux = self.ice_mux
        addresses = mux.addresses if mux is not None else self.settings.media_addresses
        transport = PeerTransport(addresses=addresses, port_range=port_range,
                                  label=f"{p.sid}/{label}", mux=mux,
                                  congestion_control=rtc_cfg.congestion_control)
        transport.rtp.uplink_max_bps = rtc_cfg.publisher_max_bitrate
        transport.on_data = lambda channel, data: room.on_data(p, channel, data)
        transport.on_track = lambda media, up: room.media_arrived(p, media, up)
        transport.on_track_ended = lambda mid: room.media_ended(p, mid)

        def on_state(state: str) -> None:
            if state == "connected" and transport is p.primary:
                room.mark_active(p)
            elif state == "failed" and p.state != State.DISCONNECTED:
                log.debug("%s transport failed", label, extra={**room.log_extra(),
                                                              **p.log_extra()})
                if transport is p.primary:
                    self._primary_failed(room, p, transport)
        transport.on_state = on_state
        return transport

    def publisher_transport(self, p: Participant) -> PeerTransport:
        publisher = peer(p.publisher)
        if publisher is None:
            session = p.session
            room = session.room if isinstance(session, SignalSession) else None
            if room is None:
                raise RuntimeError("participant has no session")
            p.publisher = publisher = self._transport(room, p, "publisher")
        return publisher

    async def send_subscriber_offer(self, p: Participant, room: Room) -> None:
        transport = peer(p.subscriber)
        if transport is None or p.state == State.DISCONNECTED \
                or transport.state in ("failed", "closed"):
            return
        restart, p.ice_restart_pending = p.ice_restart_pending, False
        sdp = await transport.create_offer(ice_restart=restart)
        p.subscriber_offer_id += 1
        msg = rtc.SignalResponse()
        msg.offer.type = "offer"
        msg.offer.sdp = sdp
        msg.offer.id = p.subscriber_offer_id
        for pub in room.subscriptions.publications():
            s = pub.subscribers.get(p.sid)
            if s is not None and s.down.mid:
                msg.offer.mid_to_track_id[s.down.mid] = pub.sid
        p.send(msg)

    async def send_media_requirement(self, p: Participant) -> None:
        """Single PC: ask the client to re-offer, adding the recvonly sections still needed."""
        transport = peer(p.publisher)
        if transport is None or p.state == State.DISCONNECTED \
                or transport.state in ("failed", "closed"):
            return
        audios, videos = transport.missing_sections()
        log.debug("media sections requirement: %d audio, %d video", audios, videos,
                  extra=p.log_extra())
        msg = rtc.SignalResponse()
        msg.media_sections_requirement.num_audios = audios
        msg.media_sections_requirement.num_videos = videos
        p.send(msg)

    # -- tokens ----------------------------------------------------------------
    def refresh_token(self, p: Participant) -> str:
        secret = self.settings.keys.get(p.api_key) or next(iter(self.settings.keys.values()))
        raw: dict[str, Any] = p.grant_raw
        video = VideoGrant.from_claim(dict(raw.get("video") or {}))
        perm = p.permission
        video.can_publish = perm.can_publish
        video.can_subscribe = perm.can_subscribe
        video.can_publish_data = perm.can_publish_data
        video.can_update_own_metadata = perm.can_update_metadata
        video.hidden = perm.hidden
        left = float(raw.get("exp") or 0) - time.time()
        return issue_token(p.api_key, secret, identity=p.identity, video=video, name=p.name,
                           metadata=p.metadata, kind=p.kind, attributes=p.attributes,
                           valid_for=max(600.0, left))

    def _send_refresh_token(self, p: Participant) -> None:
        p.send(rtc.SignalResponse(refresh_token=self.refresh_token(p)))

    async def _refresh_loop(self, p: Participant) -> None:
        while p.state != State.DISCONNECTED:
            await asyncio.sleep(TOKEN_REFRESH_INTERVAL)
            if p.state != State.DISCONNECTED:
                self._send_refresh_token(p)

    def participant_changed(self, room: Room, p: Participant) -> None:
        """Name, metadata, attributes or permission changed: tell everyone, refresh the token."""
        p.touch()
        room.broadcast_participant(p)
        self._send_refresh_token(p)

    # -- endings ---------------------------------------------------------------
    def session_ended(self, session: SignalSession) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._all_closed.set()
        p, room = session.participant, session.room
        if p.session is not session:
            return  # replaced by a resumed session
        p.session = None
        if p.state == State.DISCONNECTED:
            self._forget(p)
            return
        # The socket dropped without a leave: hold the participant for a resume.
        loop = asyncio.get_running_loop()
        self._grace[p.sid] = loop.call_later(RESUME_GRACE, self._expire, room, p)

    def _expire(self, room: Room, p: Participant) -> None:
        self._grace.pop(p.sid, None)
        if p.session is None:
            room.remove(p, Reason.SIGNAL_CLOSE, send_leave=False)
            self._forget(p)

    def _primary_failed(self, room: Room, p: Participant, transport: PeerTransport) -> None:
        """A failed primary transport never recovers: remove the participant soon unless
        something else (its leave, a full reconnect) removes it first."""
        old = self._failed.pop(p.sid, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._failed[p.sid] = loop.call_later(TRANSPORT_FAILED_GRACE, self._expire_failed,
                                              room, p, transport)

    def _expire_failed(self, room: Room, p: Participant, transport: PeerTransport) -> None:
        self._failed.pop(p.sid, None)
        if p.state != State.DISCONNECTED and p.primary is transport \
                and transport.state in ("failed", "closed"):
            log.info("primary transport failed %.0f s ago; removing the participant",
                     TRANSPORT_FAILED_GRACE, extra={**room.log_extra(), **p.log_extra()})
            room.remove(p, Reason.CONNECTION_TIMEOUT)
            self._forget(p)

    def subscriber_answered(self, p: Participant) -> None:
        negotiator = self._negotiators.get(p.sid)
        if negotiator is not None:
            negotiator.answered()

    def _forget(self, p: Participant) -> None:
        negotiator = self._negotiators.pop(p.sid, None)
        if negotiator is not None:
            negotiator.close()
        task = self._refresh.pop(p.sid, None)
        if task is not None:
            task.cancel()
        for timers in (self._grace, self._failed):
            timer = timers.pop(p.sid, None)
            if timer is not None:
                timer.cancel()

    def leave(self, room: Room, p: Participant, reason: int) -> None:
        """The client asked to leave: echo a DISCONNECT leave and remove it."""
        room.remove(p, reason)
        self._forget(p)

    def evict(self, name: RoomName) -> None:
        """Another node holds this room: ask everyone here to rejoin (and land there)."""
        room = self.rooms.rooms.get(name)
        if room is None:
            return
        for p in list(room.participants.values()):
            p.send(leave_response(Reason.MIGRATION, p.params.protocol,
                                  rtc.LeaveRequest.Action.RECONNECT))
            if p.session is not None:
                p.session.close("room moved to another node")
            room.remove(p, Reason.MIGRATION, send_leave=False)
        self.rooms.delete_room(name, Reason.MIGRATION)

    async def drain(self, deadline: float) -> None:
        """Refuse new joins, tell everyone to leave, wait for sockets to close."""
        self.rooms.draining = True
        if self.relay is not None:
            await self.relay.close_all()
        for name in list(self.rooms.rooms):
            self.rooms.delete_room(name, Reason.SERVER_SHUTDOWN)
        if self.sessions:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), deadline)
        for session in list(self.sessions):
            with contextlib.suppress(Exception):
                await session.conn.close()


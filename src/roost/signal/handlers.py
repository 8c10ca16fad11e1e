"""The SignalRequest dispatch table: one handler per request variant."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from livekit.protocol import models, rtc

from roost.config import Settings
from roost.media.sdp import SdpError
from roost.room.room import Reason, leave_response
from roost.room.tracks import TrackRefused
from roost.signal.peers import peer

if TYPE_CHECKING:
    from roost.media.transport import PeerTransport
    from roost.room.participant import Participant
    from roost.room.room import Room
    from roost.signal.session import SignalSession

log = logging.getLogger("roost.signal")

RR = rtc.RequestResponse.Reason
Action = rtc.LeaveRequest.Action

# DisconnectReasons a client may give for leaving; anything else counts as CLIENT_INITIATED.
_CLIENT_LEAVE_REASONS = {Reason.USER_UNAVAILABLE, Reason.USER_REJECTED, Reason.AGENT_ERROR}


class HandlerHost(Protocol):
    """What the handlers ask of the node's signalling (SignalService)."""

    settings: Settings

    def publisher_transport(self, p: Participant) -> PeerTransport:
        """The participant's publishing peer connection, made on its first offer."""
        ...

    def subscriber_answered(self, p: Participant) -> None:
        """The client answered the subscriber offer: the next one may be sent."""
        ...

    def leave(self, room: Room, p: Participant, reason: int) -> None:
        """Remove a participant that asked to leave."""
        ...

    def participant_changed(self, room: Room, p: Participant) -> None:
        """Name, metadata or attributes changed: broadcast and refresh the token."""
        ...


class Handlers:
    """Handles the requests of one SignalSession, in the order they arrived."""

    def __init__(self, service: HandlerHost, session: SignalSession) -> None:
        self.service = service
        self.session = session
        self.table: dict[str, Callable[[rtc.SignalRequest], Awaitable[None]]] = {
            "offer": self.offer,
            "answer": self.answer,
            "trickle": self.trickle,
            "add_track": self.add_track,
            "mute": self.mute,
            "subscription": self.subscription,
            "track_setting": self.track_setting,
            "leave": self.leave,
            "update_layers": self.ignore,
            "subscription_permission": self.subscription_permission,
            "sync_state": self.sync_state,
            "simulate": self.simulate,
            "update_metadata": self.update_metadata,
            "update_audio_track": self.update_audio_track,
            "update_video_track": self.update_video_track,
            "publish_data_track_request": self.publish_data_track,
            "unpublish_data_track_request": self.unpublish_data_track,
            "update_data_subscription": self.ignore,
            "store_data_blob_request": self.store_data_blob,
            "get_data_blob_request": self.get_data_blob,
        }

    @property
    def p(self) -> Participant:
        return self.session.participant

    @property
    def room(self) -> Room:
        return self.session.room

    async def dispatch(self, request: rtc.SignalRequest) -> None:
        which = request.WhichOneof("message")
        if which is None:
            return
        handler = self.table.get(which)
        if handler is None:
            log.debug("unhandled request %s", which)
            return
        await handler(request)

    def respond(self, reason: int, message: str = "", request_id: int = 0,
                **echo: object) -> None:
        """RequestResponse; OK answers only go to clients of protocol 15 and later."""
        if reason == RR.OK and self.p.params.protocol < 15:
            return
        resp = rtc.SignalResponse()
        rr = resp.request_response
        rr.request_id = request_id
        rr.reason = reason  # type: ignore[assignment]
        rr.message = message
        for field, value in echo.items():
            getattr(rr, field).CopyFrom(value)
        self.p.send(resp)

    async def ignore(self, request: rtc.SignalRequest) -> None:
        return None

    # -- negotiation -----------------------------------------------------------
    async def offer(self, request: rtc.SignalRequest) -> None:
        offer = request.offer
        transport = self.service.publisher_transport(self.p)
        try:
            sdp = await transport.handle_offer(offer.sdp)
        except (SdpError, ConnectionError) as exc:
            log.info("bad publisher offer: %s", exc, extra=self.session.log_extra())
            self._full_reconnect_or_close(f"invalid offer: {exc}")
            return
        resp = rtc.SignalResponse()
        resp.answer.type = "answer"
        resp.answer.sdp = sdp
        resp.answer.id = offer.id
        if self.p.params.single_pc:
            resp.answer.mid_to_track_id.update(transport.mid_to_track_id())
        self.p.send(resp)
        if self.p.params.single_pc:
            self.service.subscriber_answered(self.p)  # the re-offer a requirement asked for

    async def answer(self, request: rtc.SignalRequest) -> None:
        subscriber = peer(self.p.subscriber)
        if subscriber is None:
            return
        try:
            await subscriber.handle_answer(request.answer.sdp)
        except (SdpError, ConnectionError) as exc:
            log.info("bad subscriber answer: %s", exc, extra=self.session.log_extra())
            self._full_reconnect_or_close(f"invalid answer: {exc}")
            return
        self.service.subscriber_answered(self.p)

    def _full_reconnect_or_close(self, reason: str) -> None:
        """Ask the client to rejoin from scratch (one RECONNECT leave) and drop this session."""
        log.info("asking for a full reconnect: %s", reason, extra=self.session.log_extra())
        self.p.send(leave_response(Reason.STATE_MISMATCH, self.p.params.protocol,
                                   Action.RECONNECT))
        self.session.close(reason)
        self.room.remove(self.p, Reason.STATE_MISMATCH, send_leave=False)

    async def trickle(self, request: rtc.SignalRequest) -> None:
        trickle = request.trickle
        target = peer(self.p.subscriber if trickle.target == rtc.SignalTarget.SUBSCRIBER
                      else self.p.publisher)
        try:
            init = json.loads(trickle.candidateInit) if trickle.candidateInit else {}
            if not isinstance(init, dict):
                raise ValueError("candidateInit is not a JSON object")
            if target is None:
                raise ValueError("no peer connection for that target yet")
            await target.add_remote_candidate(init)
        except (ValueError, TypeError) as exc:
            self.respond(RR.UNCLASSIFIED_ERROR, f"bad ICE candidate: {exc}", trickle=trickle)

    # -- tracks ----------------------------------------------------------------
    async def add_track(self, request: rtc.SignalRequest) -> None:
        req = request.add_track
        try:
            pub = self.p.publications.add(req)
        except TrackRefused as exc:
            self.respond(exc.reason, str(exc), add_track=req)
            return
        resp = rtc.SignalResponse()
        resp.track_published.cid = req.cid
        resp.track_published.track.CopyFrom(pub.info)
        self.p.send(resp)
        self.room.track_requested(self.p)

    async def mute(self, request: rtc.SignalRequest) -> None:
        if not self.room.set_muted(self.p, request.mute.sid, request.mute.muted):
            self.respond(RR.NOT_FOUND, f"unknown track {request.mute.sid}", mute=request.mute)
            return
        self.respond(RR.OK, mute=request.mute)

    async def subscription(self, request: rtc.SignalRequest) -> None:
        sub = request.subscription
        sids = list(sub.track_sids)
        for pt in sub.participant_tracks:
            sids.extend(pt.track_sids)
        for sid in self.room.subscriptions.update(self.p, sids, sub.subscribe):
            if not sub.subscribe:
                continue
            resp = rtc.SignalResponse()
            resp.subscription_response.track_sid = sid
            resp.subscription_response.err = models.SubscriptionError.SE_TRACK_NOTFOUND
            self.p.send(resp)

    async def track_setting(self, request: rtc.SignalRequest) -> None:
        self.room.subscriptions.apply_settings(self.p, request.track_setting)

    async def update_audio_track(self, request: rtc.SignalRequest) -> None:
        upd = request.update_audio_track
        track = self.p.tracks.get(upd.track_sid)
        if track is None:
            self.respond(RR.NOT_FOUND, f"unknown track {upd.track_sid}", update_audio_track=upd)
            return
        del track.audio_features[:]
        track.audio_features.extend(upd.features)
        self.p.touch()
        self.room.broadcast_participant(self.p)
        self.respond(RR.OK, update_audio_track=upd)

    async def update_video_track(self, request: rtc.SignalRequest) -> None:
        upd = request.update_video_track
        track = self.p.tracks.get(upd.track_sid)
        if track is None:
            self.respond(RR.NOT_FOUND, f"unknown track {upd.track_sid}", update_video_track=upd)
            return
        track.width, track.height = upd.width, upd.height
        self.p.touch()
        self.room.broadcast_participant(self.p)
        self.respond(RR.OK, update_video_track=upd)

    async def subscription_permission(self, request: rtc.SignalRequest) -> None:
        perm = rtc.SubscriptionPermission()
        perm.CopyFrom(request.subscription_permission)
        self.room.subscriptions.set_permission(self.p, perm)

    async def publish_data_track(self, request: rtc.SignalRequest) -> None:
        self.respond(RR.UNSUPPORTED_TYPE, "data tracks are not supported by this server",
                     publish_data_track=request.publish_data_track_request)

    async def unpublish_data_track(self, request: rtc.SignalRequest) -> None:
        self.respond(RR.NOT_FOUND, "data tracks are not supported by this server",
                     unpublish_data_track=request.unpublish_data_track_request)

    async def store_data_blob(self, request: rtc.SignalRequest) -> None:
        self.respond(RR.UNSUPPORTED_TYPE, "data blobs are not supported by this server",
                     request_id=request.store_data_blob_request.request_id)

    async def get_data_blob(self, request: rtc.SignalRequest) -> None:
        self.respond(RR.UNSUPPORTED_TYPE, "data blobs are not supported by this server",
                     request_id=request.get_data_blob_request.request_id)

    # -- participant -----------------------------------------------------------
    async def leave(self, request: rtc.SignalRequest) -> None:
        reason = request.leave.reason
        if reason not in _CLIENT_LEAVE_REASONS:
            reason = Reason.CLIENT_INITIATED
        self.service.leave(self.room, self.p, reason)

    async def update_metadata(self, request: rtc.SignalRequest) -> None:
        upd = request.update_metadata
        p, limits = self.p, self.service.settings.limit
        if not p.permission.can_update_metadata:
            self.respond(RR.NOT_ALLOWED, "does not have permission to update own metadata",
                         upd.request_id, update_metadata=upd)
            return
        attributes = p.merged_attributes(upd.attributes)
        if not limits.check_metadata(upd.metadata) or not limits.check_name(upd.name) \
                or not limits.check_attributes(attributes):
            self.respond(RR.LIMIT_EXCEEDED, "metadata, name or attributes exceed the size limit",
                         upd.request_id, update_metadata=upd)
            return
        p.update_info(name=upd.name, metadata=upd.metadata, attributes=attributes)
        self.service.participant_changed(self.room, p)
        self.respond(RR.OK, "", upd.request_id, update_metadata=upd)

    async def sync_state(self, request: rtc.SignalRequest) -> None:
        sync = request.sync_state
        for published in sync.publish_tracks:
            if published.track.sid not in self.p.tracks:
                log.info("sync state names unknown track %s", published.track.sid,
                         extra=self.session.log_extra())
                self._full_reconnect_or_close("unknown published track")
                return
        if sync.HasField("subscription"):
            await self.subscription(rtc.SignalRequest(subscription=sync.subscription))
        for sid in sync.track_sids_disabled:
            settings = rtc.UpdateTrackSettings(disabled=True)
            settings.track_sids.append(sid)
            self.room.subscriptions.apply_settings(self.p, settings)

    async def simulate(self, request: rtc.SignalRequest) -> None:
        sim = request.simulate
        which = sim.WhichOneof("scenario")
        protocol = self.p.params.protocol
        if which == "server_leave":
            self.p.send(leave_response(Reason.SERVER_SHUTDOWN, protocol))
            self.service.leave(self.room, self.p, Reason.SERVER_SHUTDOWN)
        elif which in ("node_failure", "leave_request_full_reconnect"):
            self.p.send(leave_response(Reason.UNKNOWN_REASON, protocol, Action.RECONNECT))
            self.session.close("simulated node failure")
        elif which in ("migration", "switch_candidate_protocol"):
            self.p.send(leave_response(Reason.MIGRATION if which == "migration"
                                       else Reason.UNKNOWN_REASON, protocol, Action.RESUME))
            self.session.close("simulated migration")
        else:
            log.debug("simulate %s is a no-op here", which)

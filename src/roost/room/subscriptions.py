"""Who receives which track: auto-subscribe, explicit requests, publisher permissions."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from livekit.protocol import models, rtc

from roost.ids import TrackSid
from roost.media.types import PRIORITY_SCREEN_SHARE
from roost.room.tracks import Subscription, TrackPublication, quality_for

if TYPE_CHECKING:
    from roost.room.participant import Participant
    from roost.room.room import Room

log = logging.getLogger("roost.subscriptions")


def permitted(publisher: Participant, subscriber: Participant, track_sid: str) -> bool:
    """Does the publisher's SubscriptionPermission let `subscriber` receive `track_sid`?"""
    perm = publisher.subscription_permission
    if perm is None or perm.all_participants:
        return True
    for tp in perm.track_permissions:
        if (tp.participant_identity and tp.participant_identity == subscriber.identity) or (
                tp.participant_sid and tp.participant_sid == subscriber.sid):
            return tp.all_tracks or track_sid in tp.track_sids
    return False


class Subscriptions:
    """The room's subscription decisions; media is attached through the transports."""

    def __init__(self, room: Room) -> None:
        self.room = room

    def publications(self) -> list[TrackPublication]:
        return [pub for p in self.room.participants.values()
                for pub in p.publications.published.values()]

    def find(self, track_sid: TrackSid) -> TrackPublication | None:
        for p in self.room.participants.values():
            pub = p.publications.published.get(track_sid)
            if pub is not None:
                return pub
        return None

    # -- decisions -------------------------------------------------------------
    def wants(self, sub: Participant, pub: TrackPublication) -> bool:
        return sub.desired.get(pub.sid, sub.params.auto_subscribe)

    def reconcile(self, sub: Participant, pub: TrackPublication, *, notify: bool = True) -> None:
        """Make the subscription match what is desired and permitted."""
        if sub is pub.publisher or not pub.published:
            return
        desired = self.wants(sub, pub)
        allowed = permitted(pub.publisher, sub, pub.sid)
        can = bool(sub.permission.can_subscribe) and sub.active and sub.downstream is not None
        current = pub.subscribers.get(sub.sid)
        if desired and allowed and can:
            if current is None:
                self._subscribe(sub, pub)
        elif current is not None:
            self._unsubscribe(current)
        if desired and notify and not allowed:
            self._permission_update(sub, pub, False)

    def on_published(self, pub: TrackPublication) -> None:
        for sub in list(self.room.participants.values()):
            self.reconcile(sub, pub)

    def on_active(self, sub: Participant) -> None:
        for pub in self.publications():
            self.reconcile(sub, pub)

    def on_unpublished(self, pub: TrackPublication) -> None:
        for s in list(pub.subscribers.values()):
            self._unsubscribe(s)

    def on_left(self, p: Participant) -> None:
        for pub in list(p.publications.published.values()):
            self.on_unpublished(pub)
        for pub in self.publications():
            s = pub.subscribers.get(p.sid)
            if s is not None:
                self._unsubscribe(s, negotiate=False)

    # -- requests --------------------------------------------------------------
    def update(self, sub: Participant, track_sids: list[str], subscribe: bool) -> list[str]:
        """UpdateSubscription; returns the sids that name no published track."""
        missing = []
        for sid in track_sids:
            sub.desired[sid] = subscribe
            pub = self.find(TrackSid(sid))
            if pub is None:
                missing.append(sid)
                continue
            self.reconcile(sub, pub)
        return missing

    def set_permission(self, publisher: Participant, perm: rtc.SubscriptionPermission) -> None:
        """The publisher changed who may subscribe: revoke and restore accordingly."""
        before = {(sub.sid, pub.sid): permitted(publisher, sub, pub.sid)
                  for sub in self.room.participants.values()
                  for pub in publisher.publications.published.values()}
        publisher.subscription_permission = perm
        for sub in list(self.room.participants.values()):
            if sub is publisher:
                continue
            for pub in list(publisher.publications.published.values()):
                now = permitted(publisher, sub, pub.sid)
                if before.get((sub.sid, pub.sid)) != now and self.wants(sub, pub):
                    self._permission_update(sub, pub, now)
                self.reconcile(sub, pub, notify=False)

    def apply_settings(self, sub: Participant, settings: rtc.UpdateTrackSettings) -> None:
        for sid in settings.track_sids:
            pub = self.find(TrackSid(sid))
            s = pub.subscribers.get(sub.sid) if pub is not None else None
            if s is None or pub is None:
                continue
            s.disabled = settings.disabled
            s.down.set_enabled(not settings.disabled)
            if settings.width or settings.height:
                s.max_quality = quality_for(pub.info, settings.width, settings.height)
            elif settings.quality != models.VideoQuality.HIGH or not settings.disabled:
                s.max_quality = int(settings.quality)
            s.down.set_max_quality(min(int(s.max_quality), 2))
            pub.publisher.on_quality_change()

    # -- mechanics -------------------------------------------------------------
    def _subscribe(self, sub: Participant, pub: TrackPublication) -> None:
        transport = sub.downstream
        assert pub.up is not None and transport is not None
        down = transport.add_track(pub.up, track_sid=pub.sid,
                                        stream_id=f"{pub.publisher.sid}|{pub.sid}")
        pub.subscribers[sub.sid] = Subscription(sub, pub, down)
        down.allow_pause = self.room.allow_pause or sub.params.subscriber_allow_pause
        if pub.info.source == models.TrackSource.SCREEN_SHARE:
            down.priority = PRIORITY_SCREEN_SHARE
        down.on_stream_state = lambda active: sub.send(rtc.SignalResponse(
            stream_state_update=rtc.StreamStateUpdate(stream_states=[rtc.StreamStateInfo(
                participant_sid=pub.publisher.sid, track_sid=pub.sid,
                state=rtc.StreamState.ACTIVE if active else rtc.StreamState.PAUSED)])))
        sub.request_negotiation()
        if not pub.ever_subscribed:
            pub.ever_subscribed = True
            msg = rtc.SignalResponse()
            msg.track_subscribed.track_sid = pub.sid
            pub.publisher.send(msg)
        pub.publisher.on_quality_change()
        log.debug("subscribed", extra={"room": self.room.name, "participant": sub.identity,
                                       "track": pub.sid})

    def _unsubscribe(self, s: Subscription, *, negotiate: bool = True) -> None:
        sub, pub = s.subscriber, s.publication
        if pub.subscribers.pop(sub.sid, None) is None:
            return
        transport = sub.downstream
        if transport is not None:
            transport.remove_track(s.down)
            if negotiate and sub.connected:
                sub.request_negotiation()
        pub.publisher.on_quality_change()

    def _permission_update(self, sub: Participant, pub: TrackPublication, allowed: bool) -> None:
        msg = rtc.SignalResponse()
        upd = msg.subscription_permission_update
        upd.participant_sid = pub.publisher.sid
        upd.track_sid = pub.sid
        upd.allowed = allowed
        sub.send(msg)

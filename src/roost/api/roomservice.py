"""livekit.RoomService methods over the room layer: each takes verified claims and a request."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message
from livekit.protocol import models, rtc
from livekit.protocol import room as room_pb

from roost.api import errors
from roost.api.errors import TwirpError
from roost.api.guards import ensure_admin, ensure_create, ensure_destination, ensure_list
from roost.api.rpc import ServerRpc
from roost.auth import Claims
from roost.config import Settings
from roost.ids import Identity, RoomName, TrackSid
from roost.room.manager import RoomManager
from roost.room.participant import Participant
from roost.room.room import JoinError, Reason, Room
from roost.signal.service import SignalService

log = logging.getLogger("roost.api")

NONCE_LENGTH = 16
NONCES_PER_ROOM = 1024  # recent SendData nonces remembered per room for de-duplication

Method = Callable[[Claims | None, Any], Awaitable[Message]]


class RoomService:
    """The RoomService operations; Twirp transport lives in `roost.api.twirp`."""

    def __init__(self, settings: Settings, rooms: RoomManager, signal: SignalService) -> None:
        self.settings = settings
        self.limit = settings.limit
        self.rooms = rooms
        self.signal = signal
        self.rpc = ServerRpc()
        self._nonces: dict[str, OrderedDict[bytes, None]] = {}  # room sid → recent nonces

    def methods(self) -> dict[str, tuple[type[Message], Method]]:
        """Twirp method name → (request type, implementation)."""
        return {
            "CreateRoom": (room_pb.CreateRoomRequest, self.create_room),
            "ListRooms": (room_pb.ListRoomsRequest, self.list_rooms),
            "DeleteRoom": (room_pb.DeleteRoomRequest, self.delete_room),
            "ListParticipants": (room_pb.ListParticipantsRequest, self.list_participants),
            "GetParticipant": (room_pb.RoomParticipantIdentity, self.get_participant),
            "RemoveParticipant": (room_pb.RoomParticipantIdentity, self.remove_participant),
            "MutePublishedTrack": (room_pb.MuteRoomTrackRequest, self.mute_published_track),
            "UpdateParticipant": (room_pb.UpdateParticipantRequest, self.update_participant),
            "UpdateSubscriptions": (room_pb.UpdateSubscriptionsRequest,
                                    self.update_subscriptions),
            "SendData": (room_pb.SendDataRequest, self.send_data),
            "UpdateRoomMetadata": (room_pb.UpdateRoomMetadataRequest,
                                   self.update_room_metadata),
            "ForwardParticipant": (room_pb.ForwardParticipantRequest, self.forward_participant),
            "MoveParticipant": (room_pb.MoveParticipantRequest, self.move_participant),
            "PerformRpc": (room_pb.PerformRpcRequest, self.perform_rpc),
        }

    # -- lookups -----------------------------------------------------------------
    def _room(self, name: str) -> Room:
        """The open room a request names; Twirp's not_found otherwise."""
        room = self.rooms.rooms.get(RoomName(name))
        if room is None or room.closed:
            raise errors.room_not_found()
        return room

    def _participant(self, room_name: str, identity: str) -> tuple[Room, Participant]:
        room = self._room(room_name)
        p = room.participants.get(Identity(identity))
        if p is None:
            raise errors.participant_not_found()
        return room, p

    def _check_metadata(self, metadata: str) -> None:
        if not self.limit.check_metadata(metadata):
            raise errors.invalid_argument("metadata size exceeds limits",
                                          self.limit.max_metadata_size)

    # -- rooms -------------------------------------------------------------------
    async def create_room(self, claims: Claims | None,
                          req: room_pb.CreateRoomRequest) -> models.Room:
        ensure_create(claims)
        if not req.name:
            raise errors.invalid_argument("no room name")
        if len(req.name) > self.limit.max_room_name_length:
            raise errors.invalid_argument("room name length exceeds limits: max length",
                                          self.limit.max_room_name_length)
        self._check_metadata(req.metadata)
        for agent in req.agents:
            self._check_metadata(agent.metadata)
            if not self.limit.check_attributes(dict(agent.attributes)):
                raise errors.invalid_argument("agent dispatch attributes exceed the size limit")
        if req.HasField("egress"):
            raise TwirpError("internal", "egress not connected (redis required)")
        given = room_pb.RoomConfiguration(
            empty_timeout=req.empty_timeout, departure_timeout=req.departure_timeout,
            max_participants=req.max_participants, metadata=req.metadata, agents=req.agents)
        try:
            cfg = self.rooms.room_configuration(given, req.room_preset)
        except JoinError as exc:
            raise errors.invalid_argument(str(exc)) from exc
        room = self.rooms.create_room(
            RoomName(req.name),
            empty_timeout=cfg.empty_timeout,
            departure_timeout=cfg.departure_timeout,
            max_participants=cfg.max_participants,
            metadata=cfg.metadata,
            agents=list(cfg.agents),
        )
        return room.to_proto()

    async def list_rooms(self, claims: Claims | None,
                         req: room_pb.ListRoomsRequest) -> room_pb.ListRoomsResponse:
        ensure_list(claims)
        wanted = set(req.names)
        rooms = [r.to_proto() for r in self.rooms.rooms.values()
                 if not r.closed and (not wanted or r.name in wanted)]
        return room_pb.ListRoomsResponse(rooms=rooms)

    async def delete_room(self, claims: Claims | None,
                          req: room_pb.DeleteRoomRequest) -> room_pb.DeleteRoomResponse:
        ensure_create(claims)
        room = self._room(req.room)
        self.rooms.delete_room(room.name, Reason.ROOM_DELETED)
        return room_pb.DeleteRoomResponse()

    async def update_room_metadata(self, claims: Claims | None,
                                   req: room_pb.UpdateRoomMetadataRequest) -> models.Room:
        ensure_admin(claims, req.room)
        self._check_metadata(req.metadata)
        room = self._room(req.room)
        if room.metadata != req.metadata:
            room.metadata = req.metadata
            room.broadcast_room()
        return room.to_proto()

    # -- participants --------------------------------------------------------------
    async def list_participants(
            self, claims: Claims | None,
            req: room_pb.ListParticipantsRequest) -> room_pb.ListParticipantsResponse:
        ensure_admin(claims, req.room)
        room = self._room(req.room)
        return room_pb.ListParticipantsResponse(
            participants=[p.to_proto() for p in room.participants.values()])

    async def get_participant(self, claims: Claims | None,
                              req: room_pb.RoomParticipantIdentity) -> models.ParticipantInfo:
        ensure_admin(claims, req.room)
        _, p = self._participant(req.room, req.identity)
        return p.to_proto()

    async def remove_participant(
            self, claims: Claims | None,
            req: room_pb.RoomParticipantIdentity) -> room_pb.RemoveParticipantResponse:
        ensure_admin(claims, req.room)
        room, p = self._participant(req.room, req.identity)
        log.info("removing participant", extra={**room.log_extra(), **p.log_extra()})
        room.remove(p, Reason.PARTICIPANT_REMOVED)
        return room_pb.RemoveParticipantResponse()

    async def mute_published_track(
            self, claims: Claims | None,
            req: room_pb.MuteRoomTrackRequest) -> room_pb.MuteRoomTrackResponse:
        ensure_admin(claims, req.room)
        room, p = self._participant(req.room, req.identity)
        if not req.muted and not self.settings.room.enable_remote_unmute:
            raise TwirpError("failed_precondition", "remote unmute not enabled")
        track = p.tracks.get(req.track_sid)
        if track is None:
            raise errors.track_not_found()
        # Tell the publisher first (its SDK mutes the local track), then everyone.
        p.send(rtc.SignalResponse(mute=rtc.MuteTrackRequest(sid=req.track_sid,
                                                             muted=req.muted)))
        room.set_muted(p, req.track_sid, req.muted)
        response = room_pb.MuteRoomTrackResponse()
        response.track.CopyFrom(track)
        return response

    async def update_participant(
            self, claims: Claims | None,
            req: room_pb.UpdateParticipantRequest) -> models.ParticipantInfo:
        ensure_admin(claims, req.room)
        limit = self.limit
        if not limit.check_name(req.name):
            raise errors.invalid_argument("name length exceeds limits", limit.max_name_length)
        self._check_metadata(req.metadata)
        attributes_error = errors.invalid_argument("attribute size exceeds limits",
                                                   limit.max_attributes_size)
        if not limit.check_attributes(dict(req.attributes)):
            raise attributes_error
        room, p = self._participant(req.room, req.identity)
        merged = p.merged_attributes(req.attributes)
        if not limit.check_attributes(merged):
            raise attributes_error
        p.update_info(name=req.name, metadata=req.metadata, attributes=merged)
        permission_changed = req.HasField("permission") and req.permission != p.permission
        if permission_changed:
            p.permission = models.ParticipantPermission()
            p.permission.CopyFrom(req.permission)
        self.signal.participant_changed(room, p)
        if permission_changed:
            room.apply_permission(p)
        return p.to_proto()

    async def update_subscriptions(
            self, claims: Claims | None,
            req: room_pb.UpdateSubscriptionsRequest) -> room_pb.UpdateSubscriptionsResponse:
        ensure_admin(claims, req.room)
        room, p = self._participant(req.room, req.identity)
        sids = list(req.track_sids)
        for pt in req.participant_tracks:
            sids.extend(pt.track_sids)
        missing = [sid for sid in sids if room.subscriptions.find(TrackSid(sid)) is None]
        if missing:
            raise TwirpError("not_found", f"track is not found: {', '.join(missing)}")
        room.subscriptions.update(p, sids, req.subscribe)
        return room_pb.UpdateSubscriptionsResponse()

    # -- data ------------------------------------------------------------------------
    async def send_data(self, claims: Claims | None,
                        req: room_pb.SendDataRequest) -> room_pb.SendDataResponse:
        ensure_admin(claims, req.room)
        if len(req.nonce) not in (0, NONCE_LENGTH):
            raise TwirpError("invalid_argument", "nonce should be 16-bytes or not present, "
                             f"got: {len(req.nonce)} bytes")
        room = self._room(req.room)
        if req.nonce and self._seen(room, req.nonce):
            return room_pb.SendDataResponse()
        packet = models.DataPacket(kind=req.kind)
        packet.destination_identities.extend(req.destination_identities)
        user = packet.user
        user.payload = req.data
        user.destination_identities.extend(req.destination_identities)
        user.destination_sids.extend(req.destination_sids)
        if req.HasField("topic"):
            user.topic = req.topic
        if req.nonce:
            user.nonce = req.nonce
        room.deliver(packet, reliable=req.kind == models.DataPacket.Kind.RELIABLE,
                     identities=req.destination_identities, sids=req.destination_sids)
        return room_pb.SendDataResponse()

    def _seen(self, room: Room, nonce: bytes) -> bool:
        """Remember `nonce` for `room`; True if it was already used there (a retried call)."""
        live = {r.sid for r in self.rooms.rooms.values()}
        for sid in [sid for sid in self._nonces if sid not in live]:
            del self._nonces[sid]
        recent = self._nonces.setdefault(room.sid, OrderedDict())
        if nonce in recent:
            return True
        recent[nonce] = None
        if len(recent) > NONCES_PER_ROOM:
            recent.popitem(last=False)
        return False

    async def perform_rpc(self, claims: Claims | None,
                          req: room_pb.PerformRpcRequest) -> room_pb.PerformRpcResponse:
        ensure_admin(claims, req.room)
        if not req.destination_identity:
            raise errors.invalid_argument("destination identity is required")
        room, p = self._participant(req.room, req.destination_identity)
        payload = await self.rpc.perform(room, p, req)
        return room_pb.PerformRpcResponse(payload=payload)

    # -- not available in the open-source reference either ---------------------------
    async def forward_participant(
            self, claims: Claims | None,
            req: room_pb.ForwardParticipantRequest) -> room_pb.ForwardParticipantResponse:
        ensure_destination(claims, req.room, req.destination_room)
        self._check_distinct(req.room, req.destination_room)
        raise TwirpError("unimplemented", "ForwardParticipant is not supported by roost "
                         "(it is a LiveKit Cloud feature)")

    async def move_participant(
            self, claims: Claims | None,
            req: room_pb.MoveParticipantRequest) -> room_pb.MoveParticipantResponse:
        ensure_destination(claims, req.room, req.destination_room)
        self._check_distinct(req.room, req.destination_room)
        raise TwirpError("unimplemented", "MoveParticipant is not supported by roost "
                         "(it is a LiveKit Cloud feature)")

    @staticmethod
    def _check_distinct(room: str, destination: str) -> None:
        if room == destination:
            raise errors.invalid_argument("destination room cannot be the same as source room")


"""Server-originated RPC (RoomService.PerformRpc): send an rpc_request, wait for ack and response.

As livekit-server does, the request carries a fresh UUID both as its id and as the caller's
`participant_identity`; the callee's rpc_ack / rpc_response come back addressed to that
identity and are taken out of the room's data path here instead of being forwarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from livekit.protocol import models
from livekit.protocol import room as room_pb

from roost.api.errors import TwirpError
from roost.room.participant import Participant
from roost.room.room import RELIABLE, Room

log = logging.getLogger("roost.api.rpc")

MAX_PAYLOAD_BYTES = 15 * 1024
ACK_TIMEOUT = 2.0
DEFAULT_RESPONSE_TIMEOUT_MS = 10_000

APPLICATION_ERROR = 1500
CONNECTION_TIMEOUT = 1501
RESPONSE_TIMEOUT = 1502
RECIPIENT_DISCONNECTED = 1503
SEND_FAILED = 1505
REQUEST_PAYLOAD_TOO_LARGE = 1402

_MESSAGES = {
    APPLICATION_ERROR: "Application error in method handler",
    CONNECTION_TIMEOUT: "Connection timeout",
    RESPONSE_TIMEOUT: "Response timeout",
    RECIPIENT_DISCONNECTED: "Recipient disconnected",
    1504: "Response payload too large",
    SEND_FAILED: "Failed to send",
    1400: "Method not supported at destination",
    1401: "Recipient not found",
    REQUEST_PAYLOAD_TOO_LARGE: "Request payload too large",
    1403: "RPC not supported by server",
    1404: "Unsupported RPC version",
}
# RPC error code → Twirp code, following protocol utils/data_channel_rpc.go PsrpcError().
_TWIRP_CODES = {
    CONNECTION_TIMEOUT: "canceled",
    RESPONSE_TIMEOUT: "canceled",
    RECIPIENT_DISCONNECTED: "unavailable",
    1400: "invalid_argument",
    1401: "not_found",
    REQUEST_PAYLOAD_TOO_LARGE: "malformed",
    1403: "unimplemented",
    1404: "unimplemented",
}


def rpc_error(code: int, message: str = "", data: str = "") -> TwirpError:
    """An RPC failure as a Twirp error; the RPC code, message and data travel in `meta`."""
    message = message or _MESSAGES.get(code, "RPC failed")
    text = f"RpcError {code}: {message}" + (f": {data}" if data else "")
    meta = {"rpc_code": str(code), "rpc_message": message}
    if data:
        meta["rpc_data"] = data
    return TwirpError(_TWIRP_CODES.get(code, "internal"), text, meta)


@dataclass
class _Pending:
    room: Room
    callee: Participant
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    result: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class ServerRpc:
    """Pending server-originated RPCs on this node, keyed by request id."""

    def __init__(self) -> None:
        self.pending: dict[str, _Pending] = {}
        self._tapped: weakref.WeakSet[Room] = weakref.WeakSet()  # rooms whose data is tapped

    async def perform(self, room: Room, callee: Participant,
                      req: room_pb.PerformRpcRequest) -> str:
        """Send `req` to `callee` and return its response payload, or raise a TwirpError."""
        if len(req.payload.encode()) > MAX_PAYLOAD_BYTES:
            raise rpc_error(REQUEST_PAYLOAD_TOO_LARGE)
        timeout_ms = req.response_timeout_ms or DEFAULT_RESPONSE_TIMEOUT_MS
        self._tap(room)
        request_id = str(uuid.uuid4())
        packet = models.DataPacket(kind=models.DataPacket.Kind.RELIABLE,
                                   participant_identity=request_id)
        packet.destination_identities.append(callee.identity)
        rtt = max(0, int(callee.signal_rtt_ms))
        packet.rpc_request.id = request_id
        packet.rpc_request.method = req.method
        packet.rpc_request.payload = req.payload
        packet.rpc_request.response_timeout_ms = max(1, timeout_ms - rtt)
        packet.rpc_request.version = 1
        pending = _Pending(room, callee)
        self.pending[request_id] = pending
        try:
            if room.deliver(packet, True, identities=[callee.identity]) == 0:
                raise rpc_error(SEND_FAILED)
            return await self._wait(pending, timeout_ms / 1000)
        finally:
            self.pending.pop(request_id, None)

    async def _wait(self, pending: _Pending, response_timeout: float) -> str:
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(pending.acked.wait()), ACK_TIMEOUT)
        except TimeoutError:
            if not pending.result.done():
                raise rpc_error(CONNECTION_TIMEOUT) from None
        try:
            remaining = response_timeout - (time.monotonic() - started)
            return await asyncio.wait_for(pending.result, max(0.0, remaining))
        except TimeoutError:
            raise rpc_error(RESPONSE_TIMEOUT) from None

    # -- the data path tap -------------------------------------------------------------
    def _tap(self, room: Room) -> None:
        """Wrap `room.on_data` (once per room) so acks and responses to us are consumed."""
        if room in self._tapped:
            return
        self._tapped.add(room)

        def tap(sender: Participant, label: str, payload: bytes) -> bool:
            return label == RELIABLE and bool(self.pending) and self.intercept(sender, payload)

        room.data_taps.append(tap)
        room.on_participant_left.append(self._participant_left)

    def intercept(self, sender: Participant, payload: bytes) -> bool:
        """Consume an rpc_ack / rpc_response answering one of our requests; True if consumed."""
        packet = models.DataPacket()
        try:
            packet.ParseFromString(payload)
        except DecodeError:
            return False
        kind = packet.WhichOneof("value")
        if kind == "rpc_ack":
            pending = self.pending.get(packet.rpc_ack.request_id)
            if pending is None or pending.callee is not sender:
                return False
            pending.acked.set()
            return True
        if kind == "rpc_response":
            response = packet.rpc_response
            pending = self.pending.get(response.request_id)
            if pending is None or pending.callee is not sender:
                return False
            pending.acked.set()
            if not pending.result.done():
                if response.WhichOneof("value") == "error":
                    err = response.error
                    pending.result.set_exception(rpc_error(err.code, err.message, err.data))
                else:
                    pending.result.set_result(response.payload)
            return True
        return False

    def _participant_left(self, room: Room, participant: Participant) -> None:
        for pending in self.pending.values():
            if pending.callee is participant and not pending.result.done():
                pending.result.set_exception(rpc_error(RECIPIENT_DISCONNECTED))
                pending.acked.set()

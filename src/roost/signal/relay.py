"""Signal relay: a client on one node, its room on another, frames carried over the bus.

The node the client reached validates the token, asks the room's node to admit the
participant (`signal.join`: refusals come back before the upgrade, raised as the local
join's would be), then copies frames between the client's connection and a bus stream.
The room's node serves the participant exactly as a local one, on a RelayConnection
instead of a WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from livekit.protocol import models

from roost import ids
from roost.auth import Claims, claims_from_dict
from roost.room.manager import JoinResult, ResumeRefused
from roost.room.participant import ClientParams
from roost.room.room import JoinError
from roost.routing.types import (
    BINARY,
    CLOSE,
    TEXT,
    Bus,
    NodeInfo,
    NodeUnreachable,
    Router,
    RoutingUnavailable,
    Stream,
)
from roost.signal.connection import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    Frame,
    SignalConnection,
)

if TYPE_CHECKING:
    from roost.signal.service import SignalService

log = logging.getLogger("roost.signal")

JOIN = "signal.join"
JOIN_TIMEOUT = 5.0  # seconds for the room's node to admit or refuse
LIVENESS_CHECK = 2.0  # seconds of silence from the room's node before checking it is alive
LOST = "signal relay lost"


def params_to_dict(params: ClientParams) -> dict[str, Any]:
    """ClientParams as JSON-able values (ClientInfo as base64 protobuf)."""
    out = {f.name: getattr(params, f.name) for f in fields(params) if f.name != "client_info"}
    info = params.client_info
    out["client_info"] = base64.b64encode(info.SerializeToString()).decode() if info else ""
    return out


def params_from_dict(data: dict[str, Any]) -> ClientParams:
    known = {f.name for f in fields(ClientParams)} - {"client_info"}
    params = ClientParams(**{k: v for k, v in data.items() if k in known})
    if data.get("client_info"):
        info = models.ClientInfo()
        info.ParseFromString(base64.b64decode(data["client_info"]))
        params.client_info = info
    return params


class RelayConnection:
    """The room node's end of a relayed client: a SignalConnection over a bus stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._closed = False
        self._error = ""

    @property
    def closed(self) -> bool:
        return self._closed

    async def receive(self) -> Frame | None:
        if self._closed:
            return None
        item = await self.stream.receive()
        if item is None:
            self._closed, self._error = True, LOST
            return None
        kind, payload = item
        if kind == BINARY:
            return payload
        if kind == TEXT:
            return payload.decode("utf-8", "replace")
        self._closed = True  # CLOSE: the client's socket ended at the relaying node
        self.stream.close()
        return None

    async def send(self, frame: Frame) -> None:
        if self._closed:
            raise ConnectionError("relayed connection closed")
        kind, payload = (TEXT, frame.encode()) if isinstance(frame, str) else (BINARY, frame)
        try:
            await self.stream.send(kind, payload)
        except ConnectionError:
            self._closed, self._error = True, LOST
            self.stream.close()
            raise

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ConnectionError):
            await self.stream.send(CLOSE, json.dumps({"code": code, "reason": reason}).encode())
        self.stream.close()

    def describe_error(self) -> str:
        return self._error


class RelayedJoin:
    """A join the room's node admitted: relay the client's connection to it, or abandon it."""

    def __init__(self, relay: SignalRelay, stream: Stream, owner: str,
                 extra: dict[str, str]) -> None:
        self.relay = relay
        self.stream = stream
        self.owner = owner
        self._extra = extra

    async def abandon(self) -> None:
        """The client's connection never opened: tell the room's node to drop the session."""
        with contextlib.suppress(ConnectionError):
            await self.stream.send(CLOSE, b"{}")
        self.stream.close()

    async def run(self, conn: SignalConnection) -> None:
        """Copy frames between `conn` and the room's node until either side ends."""
        log.debug("relaying signalling", extra=self._extra)
        await self.relay.carry(conn, self.stream, self.owner)


class SignalRelay:
    """Relays joins to the nodes hosting their rooms, and hosts joins relayed from others."""

    def __init__(self, service: SignalService, router: Router, bus: Bus) -> None:
        self.service = service
        self.router = router
        self.bus = bus
        self.sockets: set[SignalConnection] = set()  # clients relayed through here
        self._idle = asyncio.Event()  # set while `sockets` is empty
        self._idle.set()
        self._hosted: set[asyncio.Task[None]] = set()
        bus.serve(JOIN, self._host_join)

    # -- the node the client reached -----------------------------------------------
    async def request_join(self, node: NodeInfo, claims: Claims, params: ClientParams, *,
                           attributes: dict[str, str] | None = None,
                           metadata: str | None = None) -> RelayedJoin:
        """Ask `node` to admit the participant; its refusals are raised as they would be here.

        Raises RoutingUnavailable (node unreachable), ResumeRefused or JoinError.
        """
        stream = self.bus.open_stream(ids.new_id(ids.CONNECTION), node.id)
        body = {"stream": stream.stream_id, "api_key": claims.api_key, "claims": claims.raw,
                "params": params_to_dict(params), "attributes": attributes,
                "metadata": metadata}
        extra = {"room": claims.video.room, "participant": claims.identity, "node": node.id}
        try:
            reply = await self.bus.request(node.id, JOIN, body, JOIN_TIMEOUT)
        except RoutingUnavailable as exc:
            stream.close()
            if isinstance(exc, NodeUnreachable):
                self.router.suspect(node.id)
            log.warning("relayed join failed: %s", exc, extra=extra)
            raise
        if reply.get("resume_refused"):
            stream.close()
            raise ResumeRefused("no session to resume")
        status = int(reply.get("status") or 0)
        if status:
            stream.close()
            raise JoinError(str(reply.get("reason") or ""), status)
        return RelayedJoin(self, stream, node.id, extra)

    async def carry(self, conn: SignalConnection, stream: Stream, owner: str) -> None:
        """Copy frames both ways between a client and the room's node; counted for drains."""
        self.sockets.add(conn)
        self._idle.clear()
        try:
            await self._pump(conn, stream, owner)
        finally:
            self.sockets.discard(conn)
            if not self.sockets:
                self._idle.set()
            stream.close()

    async def _pump(self, conn: SignalConnection, stream: Stream, owner: str) -> None:
        up = asyncio.ensure_future(self._client_to_owner(conn, stream))
        down = asyncio.ensure_future(self._owner_to_client(conn, stream, owner))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if up in done:  # the client went away: end its session on the room's node
            with contextlib.suppress(ConnectionError):
                await stream.send(CLOSE, b"{}")
        if not conn.closed:
            with contextlib.suppress(Exception):
                await conn.close()

    @staticmethod
    async def _client_to_owner(conn: SignalConnection, stream: Stream) -> None:
        try:
            while (frame := await conn.receive()) is not None:
                if isinstance(frame, str):
                    await stream.send(TEXT, frame.encode())
                else:
                    await stream.send(BINARY, frame)
            error = conn.describe_error()
            if error:
                log.info("%s", error)
        except ConnectionError as exc:
            log.info("%s: %s", LOST, exc)
            await conn.close(CLOSE_INTERNAL_ERROR, LOST)

    async def _owner_to_client(self, conn: SignalConnection, stream: Stream,
                               owner: str) -> None:
        misses = 0
        while True:
            try:
                item = await stream.receive(LIVENESS_CHECK)
            except TimeoutError:
                misses = 0 if self.router.is_alive(owner) else misses + 1
                if misses >= 2:
                    log.info("the room's node is gone; closing relayed socket",
                             extra={"node": owner})
                    await conn.close(CLOSE_INTERNAL_ERROR, "room node lost")
                    return
                continue
            if item is None:
                await conn.close(CLOSE_INTERNAL_ERROR, LOST)
                return
            kind, payload = item
            try:
                if kind == BINARY:
                    await conn.send(payload)
                elif kind == TEXT:
                    await conn.send(payload.decode("utf-8", "replace"))
                else:
                    close = json.loads(payload or b"{}")
                    await conn.close(int(close.get("code") or CLOSE_NORMAL),
                                     str(close.get("reason") or ""))
                    return
            except ConnectionError:
                return

    async def close_all(self, timeout: float = 2.0) -> None:
        """Draining: end relayed sockets so their clients reconnect through another node,
        and wait (bounded) until each has told the room's node."""
        for conn in list(self.sockets):
            with contextlib.suppress(Exception):
                await conn.close(CLOSE_GOING_AWAY, "server shutting down")
        if self.sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)

    # -- the node hosting the room -------------------------------------------------
    async def _host_join(self, sender: str, body: dict[str, Any]) -> dict[str, Any]:
        claims = claims_from_dict(str(body["api_key"]), dict(body["claims"]))
        params = params_from_dict(dict(body["params"]))
        try:
            result = self.service.admit(claims, params, attributes=body.get("attributes"),
                                        metadata=body.get("metadata"))
        except ResumeRefused:
            return {"resume_refused": True}
        except JoinError as exc:
            return {"status": exc.status, "reason": str(exc)}
        conn = RelayConnection(self.bus.open_stream(str(body["stream"]), sender))
        task = asyncio.get_running_loop().create_task(self._host(conn, result))
        self._hosted.add(task)
        task.add_done_callback(self._hosted.discard)
        return {"ok": True}

    async def _host(self, conn: RelayConnection, result: JoinResult) -> None:
        try:
            await self.service.serve(conn, result)
        except Exception:
            log.exception("relayed session failed", extra=result.participant.log_extra())
            await conn.close(CLOSE_INTERNAL_ERROR, "server error")

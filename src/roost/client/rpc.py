"""RPC between participants: v1 packets (`rpc_request`/`rpc_ack`/`rpc_response`, 15 KiB
payloads) and v2 requests/responses over text streams when the peer's client_protocol ≥ 1.

Timings follow the reference SDKs: the ack must arrive within `max_round_trip_latency`
(7 s), the response within `response_timeout` (15 s); the callee is told
`max(response_timeout - max_round_trip_latency, 1 s)`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Protocol

from livekit.protocol import models

from .streams import TextStreamReader

log = logging.getLogger("roost.client.rpc")

MAX_PAYLOAD_BYTES = 15_360
MAX_MESSAGE_BYTES = 256
MAX_DATA_BYTES = 15_360
DEFAULT_RESPONSE_TIMEOUT = 15.0
DEFAULT_MAX_ROUND_TRIP = 7.0
MIN_EFFECTIVE_TIMEOUT = 1.0
REQUEST_TOPIC = "lk.rpc_request"
RESPONSE_TOPIC = "lk.rpc_response"
ATTR_REQUEST_ID = "lk.rpc_request_id"
ATTR_METHOD = "lk.rpc_request_method"
ATTR_TIMEOUT = "lk.rpc_request_response_timeout_ms"
ATTR_VERSION = "lk.rpc_request_version"


def _truncate(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


class RpcError(Exception):
    """An RPC failure; raise it in a handler to send `code`, `message` and `data` back."""

    class ErrorCode(IntEnum):
        APPLICATION_ERROR = 1500
        CONNECTION_TIMEOUT = 1501
        RESPONSE_TIMEOUT = 1502
        RECIPIENT_DISCONNECTED = 1503
        RESPONSE_PAYLOAD_TOO_LARGE = 1504
        SEND_FAILED = 1505
        UNSUPPORTED_METHOD = 1400
        RECIPIENT_NOT_FOUND = 1401
        REQUEST_PAYLOAD_TOO_LARGE = 1402
        UNSUPPORTED_SERVER = 1403
        UNSUPPORTED_VERSION = 1404

    ErrorMessage: ClassVar[dict[ErrorCode, str]] = {
        ErrorCode.APPLICATION_ERROR: "Application error in method handler",
        ErrorCode.CONNECTION_TIMEOUT: "Connection timeout",
        ErrorCode.RESPONSE_TIMEOUT: "Response timeout",
        ErrorCode.RECIPIENT_DISCONNECTED: "Recipient disconnected",
        ErrorCode.RESPONSE_PAYLOAD_TOO_LARGE: "Response payload too large",
        ErrorCode.SEND_FAILED: "Failed to send",
        ErrorCode.UNSUPPORTED_METHOD: "Method not supported at destination",
        ErrorCode.RECIPIENT_NOT_FOUND: "Recipient not found",
        ErrorCode.REQUEST_PAYLOAD_TOO_LARGE: "Request payload too large",
        ErrorCode.UNSUPPORTED_SERVER: "RPC not supported by server",
        ErrorCode.UNSUPPORTED_VERSION: "Unsupported RPC version",
    }

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self._code = int(code)
        self._message = message
        self._data = data

    @property
    def code(self) -> int:
        return self._code

    @property
    def message(self) -> str:
        return self._message

    @property
    def data(self) -> str | None:
        return self._data

    @classmethod
    def _built_in(cls, code: ErrorCode, data: str | None = None) -> RpcError:
        return cls(code, cls.ErrorMessage[code], data)

    @classmethod
    def _from_proto(cls, proto: models.RpcError) -> RpcError:
        return cls(proto.code, proto.message, proto.data or None)

    def _to_proto(self) -> models.RpcError:
        return models.RpcError(code=self._code, message=_truncate(self._message, MAX_MESSAGE_BYTES),
                               data=_truncate(self._data or "", MAX_DATA_BYTES))

    def __repr__(self) -> str:
        return f"RpcError(code={self._code}, message={self._message!r}, data={self._data!r})"


@dataclass
class RpcInvocationData:
    """What a handler receives."""

    request_id: str
    caller_identity: str
    payload: str
    response_timeout: float
    method: str = ""


RpcHandler = Callable[[RpcInvocationData], "Awaitable[str] | str"]


class RpcTransport(Protocol):
    """What RPC needs from the local participant."""

    async def _send_packet(self, packet: models.DataPacket, reliable: bool = True) -> None: ...

    async def send_text(self, text: str, *, destination_identities: list[str] | None = None,
                        topic: str = "", attributes: dict[str, str] | None = None) -> Any: ...

    def _remote_client_protocol(self, identity: str) -> int | None: ...

    def _server_version(self) -> str: ...


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class RpcManager:
    """Both sides of RPC for one local participant."""

    def __init__(self, transport: RpcTransport) -> None:
        self._transport = transport
        self.handlers: dict[str, RpcHandler] = {}
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._responses: dict[str, asyncio.Future[str]] = {}
        self._destinations: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- caller side -------------------------------------------------------------

    async def perform_rpc(self, *, destination_identity: str, method: str, payload: str,
                          response_timeout: float | None = None,
                          max_round_trip_latency: float | None = None) -> str:
        """Call `method` on `destination_identity`; its answer, or RpcError."""
        timeout = DEFAULT_RESPONSE_TIMEOUT if response_timeout is None else response_timeout
        round_trip = (DEFAULT_MAX_ROUND_TRIP if max_round_trip_latency is None
                      else max_round_trip_latency)
        version = self._transport._server_version()
        if version and _version_tuple(version) < (1, 8, 0):
            raise RpcError._built_in(RpcError.ErrorCode.UNSUPPORTED_SERVER)
        remote = self._transport._remote_client_protocol(destination_identity)
        if remote is None:
            raise RpcError._built_in(RpcError.ErrorCode.RECIPIENT_NOT_FOUND)
        use_v2 = remote >= 1
        if not use_v2 and len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
            raise RpcError._built_in(RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
        request_id = str(uuid.uuid4())
        effective = max(timeout - round_trip, MIN_EFFECTIVE_TIMEOUT)
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[None] = loop.create_future()
        response: asyncio.Future[str] = loop.create_future()
        self._acks[request_id] = ack
        self._responses[request_id] = response
        self._destinations[request_id] = destination_identity
        try:
            try:
                if use_v2:
                    await self._transport.send_text(
                        payload, destination_identities=[destination_identity],
                        topic=REQUEST_TOPIC,
                        attributes={ATTR_REQUEST_ID: request_id, ATTR_METHOD: method,
                                    ATTR_TIMEOUT: str(int(effective * 1000)),
                                    ATTR_VERSION: "2"})
                else:
                    packet = models.DataPacket(destination_identities=[destination_identity])
                    packet.rpc_request.CopyFrom(models.RpcRequest(
                        id=request_id, method=method, payload=payload,
                        response_timeout_ms=int(effective * 1000), version=1))
                    await self._transport._send_packet(packet)
            except (ConnectionError, OSError) as exc:
                raise RpcError._built_in(RpcError.ErrorCode.SEND_FAILED, str(exc)) from None
            try:
                await asyncio.wait_for(asyncio.shield(ack), round_trip)
            except TimeoutError:
                raise RpcError._built_in(RpcError.ErrorCode.CONNECTION_TIMEOUT) from None
            try:
                return await asyncio.wait_for(asyncio.shield(response), timeout)
            except TimeoutError:
                raise RpcError._built_in(RpcError.ErrorCode.RESPONSE_TIMEOUT) from None
        finally:
            self._acks.pop(request_id, None)
            self._responses.pop(request_id, None)
            self._destinations.pop(request_id, None)

    def participant_left(self, identity: str) -> None:
        """Fail the calls waiting on `identity` with RECIPIENT_DISCONNECTED."""
        for request_id, destination in list(self._destinations.items()):
            if destination != identity:
                continue
            error = RpcError._built_in(RpcError.ErrorCode.RECIPIENT_DISCONNECTED)
            for fut in (self._acks.get(request_id), self._responses.get(request_id)):
                if fut is not None and not fut.done():
                    fut.set_exception(error)
                    fut.exception()  # mark retrieved: the caller may be past the ack

    def close(self) -> None:
        """Fail every pending call and cancel running handlers (on disconnect)."""
        for identity in set(self._destinations.values()):
            self.participant_left(identity)
        for task in list(self._tasks):
            task.cancel()

    def _resolve(self, request_id: str, payload: str | None, error: RpcError | None) -> None:
        fut = self._responses.get(request_id)
        if fut is None or fut.done():
            log.debug("response for unknown rpc %s", request_id)
            return
        ack = self._acks.get(request_id)
        if ack is not None and not ack.done():
            ack.set_result(None)  # a response implies the ack
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(payload or "")

    # ---- packets -----------------------------------------------------------------

    def on_packet(self, packet: models.DataPacket) -> None:
        """Handle an rpc_request, rpc_ack or rpc_response packet."""
        which = packet.WhichOneof("value")
        if which == "rpc_ack":
            fut = self._acks.get(packet.rpc_ack.request_id)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif which == "rpc_response":
            resp = packet.rpc_response
            kind = resp.WhichOneof("value")
            if kind == "error":
                self._resolve(resp.request_id, None, RpcError._from_proto(resp.error))
            else:
                self._resolve(resp.request_id, resp.payload, None)
        elif which == "rpc_request":
            req = packet.rpc_request
            self._spawn(self._serve(packet.participant_identity, req.id, req.method,
                                    req.version, req.response_timeout_ms / 1000, req.payload,
                                    v2=False))

    def on_request_stream(self, reader: TextStreamReader, caller: str) -> None:
        """A v2 request arrived as a text stream on `lk.rpc_request`."""
        attrs = reader.info.attributes or {}
        try:
            timeout = int(attrs.get(ATTR_TIMEOUT, "15000")) / 1000
            version = int(attrs.get(ATTR_VERSION, "0"))
        except ValueError:
            timeout, version = DEFAULT_RESPONSE_TIMEOUT, 0
        self._spawn(self._serve(caller, attrs.get(ATTR_REQUEST_ID, ""),
                                attrs.get(ATTR_METHOD, ""), version, timeout, reader, v2=True))

    def on_response_stream(self, reader: TextStreamReader, sender: str) -> None:
        """A v2 response arrived as a text stream on `lk.rpc_response`."""
        request_id = (reader.info.attributes or {}).get(ATTR_REQUEST_ID, "")

        async def read() -> None:
            try:
                payload = await reader.read_all()
            except Exception as exc:
                self._resolve(request_id, None, RpcError._built_in(
                    RpcError.ErrorCode.APPLICATION_ERROR, f"response stream failed: {exc}"))
                return
            self._resolve(request_id, payload, None)

        self._spawn(read())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- callee side -------------------------------------------------------------

    async def _serve(self, caller: str, request_id: str, method: str, version: int,
                     timeout: float, body: str | TextStreamReader, v2: bool) -> None:
        await self._send(caller, ack=request_id)
        if version != (2 if v2 else 1):
            await self._send(caller, request_id=request_id,
                             error=RpcError._built_in(RpcError.ErrorCode.UNSUPPORTED_VERSION))
            return
        if isinstance(body, TextStreamReader):
            try:
                payload = await body.read_all()
            except Exception as exc:
                await self._send(caller, request_id=request_id, error=RpcError._built_in(
                    RpcError.ErrorCode.APPLICATION_ERROR, f"request stream failed: {exc}"))
                return
        else:
            payload = body
        try:
            answer = await self._invoke(RpcInvocationData(request_id, caller, payload, timeout,
                                                          method))
        except RpcError as exc:
            await self._send(caller, request_id=request_id, error=exc)
            return
        caller_v2 = (self._transport._remote_client_protocol(caller) or 0) >= 1
        if v2 and caller_v2:
            try:
                await self._transport.send_text(answer, destination_identities=[caller],
                                                topic=RESPONSE_TOPIC,
                                                attributes={ATTR_REQUEST_ID: request_id})
            except Exception as exc:
                await self._send(caller, request_id=request_id, error=RpcError._built_in(
                    RpcError.ErrorCode.SEND_FAILED, str(exc)))
            return
        if len(answer.encode("utf-8")) > MAX_PAYLOAD_BYTES:
            await self._send(caller, request_id=request_id, error=RpcError._built_in(
                RpcError.ErrorCode.RESPONSE_PAYLOAD_TOO_LARGE))
            return
        await self._send(caller, request_id=request_id, payload=answer)

    async def _invoke(self, data: RpcInvocationData) -> str:
        handler = self.handlers.get(data.method)
        if handler is None:
            raise RpcError._built_in(RpcError.ErrorCode.UNSUPPORTED_METHOD)
        try:
            result = handler(data)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, max(data.response_timeout, 0.1))
        except RpcError:
            raise
        except TimeoutError:
            raise RpcError._built_in(RpcError.ErrorCode.RESPONSE_TIMEOUT) from None
        except Exception:
            log.exception("rpc handler for %r raised", data.method)
            raise RpcError._built_in(RpcError.ErrorCode.APPLICATION_ERROR) from None
        return "" if result is None else str(result)

    async def _send(self, caller: str, *, ack: str | None = None, request_id: str = "",
                    payload: str | None = None, error: RpcError | None = None) -> None:
        packet = models.DataPacket(destination_identities=[caller])
        if ack is not None:
            packet.rpc_ack.request_id = ack
        else:
            packet.rpc_response.request_id = request_id
            if error is not None:
                packet.rpc_response.error.CopyFrom(error._to_proto())
            else:
                packet.rpc_response.payload = payload or ""
        try:
            await self._transport._send_packet(packet)
        except (ConnectionError, OSError) as exc:
            log.warning("could not send rpc %s to %s: %s", "ack" if ack else "response",
                        caller, exc)

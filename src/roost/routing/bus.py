"""RedisBus: request/reply and per-connection frame streams between nodes over Redis pub/sub.

Every node subscribes to one channel, `roost:bus:<node id>`. A message is an envelope:
kind (1 byte), sender node id and key (each a length byte and ASCII), then the payload.
Pub/sub delivers in order from one publisher and drops what is sent while a node is not
subscribed, so a lost subscription breaks every open stream (their clients reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any

from redis.asyncio import Redis

from roost.routing.types import (
    BINARY,
    CLOSE,
    TEXT,
    Handler,
    NodeUnreachable,
    RoutingUnavailable,
)

log = logging.getLogger("roost.routing")

CHANNEL = "roost:bus:"
REQUEST, REPLY = "q", "r"
STREAM_KINDS = (BINARY, TEXT, CLOSE)
UNREACHABLE_RETRIES = 3  # a node may be re-subscribing after a Redis restart
UNREACHABLE_PAUSE = 0.3
RESUBSCRIBE_DELAY = 0.5
STREAM_QUEUE = 1024  # frames buffered per stream before it is broken


def pack(kind: str, sender: str, key: str, payload: bytes) -> bytes:
    """One bus envelope."""
    s, k = sender.encode(), key.encode()
    if len(s) > 255 or len(k) > 255:
        raise ValueError("sender or key longer than 255 bytes")
    return kind.encode() + bytes([len(s)]) + s + bytes([len(k)]) + k + payload


def unpack(data: bytes) -> tuple[str, str, str, bytes]:
    """(kind, sender, key, payload) of an envelope; ValueError if it is truncated."""
    if len(data) < 3:
        raise ValueError("bus envelope too short")
    kind = chr(data[0])
    n = data[1]
    sender = data[2:2 + n].decode()
    at = 2 + n
    if len(data) <= at:
        raise ValueError("bus envelope truncated")
    m = data[at]
    key = data[at + 1:at + 1 + m].decode()
    if len(data) < at + 1 + m:
        raise ValueError("bus envelope truncated")
    return kind, sender, key, data[at + 1 + m:]


class RedisStream:
    """The frames one peer node sends for one relayed connection, and the way back."""

    def __init__(self, bus: RedisBus, stream_id: str, peer: str) -> None:
        self.bus = bus
        self.stream_id = stream_id
        self.peer = peer
        self.closed = False
        self._inbox: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(STREAM_QUEUE)

    def push(self, kind: str, payload: bytes) -> None:
        if self.closed:
            return
        try:
            self._inbox.put_nowait((kind, payload))
        except asyncio.QueueFull:
            log.warning("relay stream %s overflowed; breaking it", self.stream_id)
            self.close()

    async def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        if self.closed and self._inbox.empty():
            return None
        return await asyncio.wait_for(self._inbox.get(), timeout)

    async def send(self, kind: str, payload: bytes) -> None:
        if self.closed:
            raise ConnectionError("relay stream closed")
        try:
            await self.bus.publish(self.peer, pack(kind, self.bus.node_id, self.stream_id,
                                                   payload))
        except RoutingUnavailable as exc:
            raise ConnectionError(str(exc)) from exc

    def close(self) -> None:
        if self.bus._streams.get(self.stream_id) is self:
            del self.bus._streams[self.stream_id]
        if self.closed:
            return
        self.closed = True
        while not self._inbox.empty():  # make room for the wake-up
            self._inbox.get_nowait()
        self._inbox.put_nowait(None)


class RedisBus:
    """This node's end of the bus: one subscription, handlers, pending requests, streams."""

    def __init__(self, redis: Redis, node_id: str) -> None:
        self.redis = redis
        self.node_id = node_id
        self.subscribed = asyncio.Event()
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._streams: dict[str, RedisStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        self._stopped = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for task in list(self._tasks):
            task.cancel()
        self._break_all("bus stopped")

    # -- API -----------------------------------------------------------------------
    def serve(self, method: str, handler: Handler) -> None:
        self._handlers[method] = handler

    def open_stream(self, stream_id: str, peer: str) -> RedisStream:
        stream = RedisStream(self, stream_id, peer)
        self._streams[stream_id] = stream
        return stream

    async def publish(self, node: str, envelope: bytes) -> None:
        """Send one envelope to `node`; NodeUnreachable if it has no subscription."""
        if self._stopped:
            raise RoutingUnavailable("the bus is stopped")
        try:
            receivers = await self.redis.publish(CHANNEL + node, envelope)
        except Exception as exc:  # RedisError, OSError, or a client torn down under us
            raise RoutingUnavailable(f"redis unavailable: {exc}") from exc
        if not receivers:
            raise NodeUnreachable(f"node {node} is not listening")

    async def request(self, node: str, method: str, body: dict[str, Any],
                      timeout: float) -> dict[str, Any]:
        rid = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        envelope = pack(REQUEST, self.node_id, rid,
                        json.dumps({"m": method, "b": body}).encode())
        try:
            for attempt in range(UNREACHABLE_RETRIES):
                try:
                    await self.publish(node, envelope)
                    break
                except NodeUnreachable:
                    if attempt == UNREACHABLE_RETRIES - 1:
                        raise
                    await asyncio.sleep(UNREACHABLE_PAUSE)
            try:
                reply = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RoutingUnavailable(
                    f"node {node} did not answer {method} within {timeout:.1f} s") from None
        finally:
            self._pending.pop(rid, None)
        if "error" in reply:
            raise RoutingUnavailable(f"node {node} failed {method}: {reply['error']}")
        return dict(reply.get("body") or {})

    # -- receiving -----------------------------------------------------------------
    async def _listen(self) -> None:
        failed = False
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL + self.node_id)
                self.subscribed.set()
                if failed:
                    log.info("bus subscribed again", extra={"node": self.node_id})
                    failed = False
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._dispatch(msg["data"])
            except Exception as exc:  # whatever broke, subscribe again shortly
                if not failed:
                    log.warning("bus lost its subscription: %s", exc or type(exc).__name__,
                                extra={"node": self.node_id})
                    failed = True
            finally:
                if self.subscribed.is_set():
                    self.subscribed.clear()
                    self._break_all("bus subscription lost")
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE_DELAY)

    def _dispatch(self, data: bytes) -> None:
        try:
            kind, sender, key, payload = unpack(data)
        except (ValueError, UnicodeDecodeError) as exc:
            log.debug("dropping a malformed bus message: %s", exc)
            return
        if kind == REQUEST:
            self._spawn(self._answer(sender, key, payload))
        elif kind == REPLY:
            future = self._pending.get(key)
            if future is not None and not future.done():
                try:
                    future.set_result(json.loads(payload))
                except ValueError:
                    future.set_result({"error": "malformed reply"})
        elif kind in STREAM_KINDS:
            stream = self._streams.get(key)
            if stream is not None and stream.peer == sender:
                stream.push(kind, payload)
            elif kind != CLOSE:  # the other end holds a stream we no longer have: end it
                self._spawn(self._publish_quietly(sender, pack(CLOSE, self.node_id, key, b"")))

    async def _answer(self, sender: str, rid: str, payload: bytes) -> None:
        try:
            request = json.loads(payload)
            handler = self._handlers[request["m"]]
            reply: dict[str, Any] = {"body": await handler(sender, request["b"])}
        except Exception as exc:
            log.exception("bus request from %s failed", sender)
            reply = {"error": str(exc) or type(exc).__name__}
        await self._publish_quietly(sender, pack(REPLY, self.node_id, rid,
                                                 json.dumps(reply).encode()))

    async def _publish_quietly(self, node: str, envelope: bytes) -> None:
        with contextlib.suppress(RoutingUnavailable):
            await self.publish(node, envelope)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _break_all(self, reason: str) -> None:
        for stream in list(self._streams.values()):
            stream.close()
        for future in self._pending.values():
            if not future.done():
                future.set_result({"error": reason})

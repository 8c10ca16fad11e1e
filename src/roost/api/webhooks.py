"""Webhooks: WebhookEvents POSTed to each configured URL, signed, ordered per room, retried.

Room listeners only snapshot the event and append it to a lane, one per (URL, room name),
drained in order by its own task, so a slow room or receiver never holds up another.
Each POST carries the protojson body (camelCase, int64 as strings), `Content-Type:
application/webhook+json` and `Authorization: <JWT>` signed with the webhook key whose
`sha256` claim is base64(SHA-256(body)), which is what `livekit-api`'s WebhookReceiver checks.
A failed attempt is retried with exponential back-off until the event is too old or has used
its attempts; queued events are bounded globally and the oldest is dropped when full.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import aiohttp
from google.protobuf.json_format import MessageToDict
from livekit.protocol import agent, models, webhook

from roost import ids, telemetry
from roost.auth import issue_token
from roost.config import ConfigError, Settings
from roost.room.participant import Participant
from roost.room.room import Room

log = logging.getLogger("roost.webhooks")

CONTENT_TYPE = "application/webhook+json"
TOKEN_TTL = 300.0  # seconds the Authorization JWT is valid, as LiveKit signs it
_RETRYABLE_4XX = (408, 425, 429)


@dataclass
class DeliveryPolicy:
    """How hard to try: back-off, attempts, age and queue bounds."""

    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_attempts: int = 12
    max_age: float = 120.0  # an event older than this (seconds since emitted) is dropped
    max_queue: int = 1000  # queued events over all lanes; the oldest is dropped past it
    request_timeout: float = 10.0
    connect_timeout: float = 3.0


@dataclass
class _Event:
    """One emitted event, shared by the lanes of every URL; the body is built once."""

    seq: int
    name: str
    proto: webhook.WebhookEvent
    created: float  # monotonic
    _body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            data = MessageToDict(self.proto)  # camelCase, int64 as strings, enums by name
            self._body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return self._body


@dataclass
class _Lane:
    """The ordered queue of one (URL, room) pair and the task draining it."""

    url: str
    room: str
    items: deque[_Event] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    current: _Event | None = None  # the event being delivered


class WebhookNotifier:
    """Delivers room lifecycle events to webhook URLs; `on_event` is a RoomManager listener."""

    def __init__(self, urls: list[str], api_key: str, secret: str,
                 policy: DeliveryPolicy | None = None) -> None:
        self.urls = list(urls)
        self.api_key = api_key
        self.secret = secret
        self.policy = policy or DeliveryPolicy()
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._queued = 0
        self._seq = 0
        self._joined: set[str] = set()  # participant sids announced as participant_joined
        self._http: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings,
                      policy: DeliveryPolicy | None = None) -> WebhookNotifier | None:
        """A notifier for `settings.webhook`, or None when no URL is configured."""
        cfg = settings.webhook
        if not cfg.urls:
            return None
        api_key = webhook_key(settings)
        return cls(cfg.urls, api_key, settings.keys[api_key], policy)

    # -- events ----------------------------------------------------------------
    def on_event(self, event: str, room: Room, participant: Participant | None,
                 track: models.TrackInfo | None) -> None:
        """Snapshot a room event into a WebhookEvent and queue it for every URL."""
        if self._closed:
            return
        if event == "participant_joined" and participant is not None:
            self._joined.add(participant.sid)
        elif event == "participant_left" and participant is not None:
            if participant.sid not in self._joined:
                event = "participant_connection_aborted"  # never became ACTIVE
            self._joined.discard(participant.sid)
        proto = webhook.WebhookEvent(event=event, id=ids.new_id(ids.WEBHOOK_EVENT),
                                     created_at=int(time.time()))
        proto.room.CopyFrom(room.to_proto())
        if participant is not None:
            proto.participant.CopyFrom(participant.to_proto())
        if track is not None:
            proto.track.CopyFrom(track)
        self.enqueue(proto, room.name)

    def on_job(self, event: str, room: models.Room | None, job: agent.Job) -> None:
        """agent_job_started / agent_job_ended, with the job (and its room while it exists)."""
        if self._closed:
            return
        proto = webhook.WebhookEvent(event=event, id=ids.new_id(ids.WEBHOOK_EVENT),
                                     created_at=int(time.time()))
        if room is not None:
            proto.room.CopyFrom(room)
        proto.job.CopyFrom(job)
        self.enqueue(proto, job.room.name)

    def enqueue(self, proto: webhook.WebhookEvent, resource: str) -> None:
        """Queue an event on each URL's lane for `resource`; never blocks."""
        self._seq += 1
        item = _Event(self._seq, proto.event, proto, time.monotonic())
        for url in self.urls:
            while self._queued >= self.policy.max_queue and self._drop_oldest():
                pass
            key = (url, resource)
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = _Lane(url, resource)
            lane.items.append(item)
            self._queued += 1
            if lane.task is None:
                lane.task = asyncio.get_running_loop().create_task(self._drain(key, lane))

    def _drop_oldest(self) -> bool:
        lanes = [la for la in self._lanes.values() if la.items]
        if not lanes:
            return False
        lane = min(lanes, key=lambda la: la.items[0].seq)
        dropped = lane.items.popleft()
        self._queued -= 1
        self._failed(lane, dropped, "queue_full", "webhook queue full, dropped oldest event")
        return True

    # -- delivery --------------------------------------------------------------
    async def _drain(self, key: tuple[str, str], lane: _Lane) -> None:
        try:
            while lane.items:
                lane.current = item = lane.items.popleft()
                self._queued -= 1
                try:
                    await self._deliver(lane, item)
                except Exception:  # a bug here must not stop the room's later events
                    log.exception("webhook delivery failed", extra=_extra(lane, item))
                    self._failed(lane, item, "error", "webhook event abandoned")
                lane.current = None
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]
            self._queued -= len(lane.items)
            left = ([lane.current] if lane.current is not None else []) + list(lane.items)
            for item in left:
                self._failed(lane, item, "shutdown", "webhook not delivered before shutdown")
            lane.items.clear()
            lane.current = None

    async def _deliver(self, lane: _Lane, item: _Event) -> None:
        policy = self.policy
        delay = policy.backoff_initial
        attempt = 0
        while True:
            age = time.monotonic() - item.created
            if age > policy.max_age:
                self._failed(lane, item, "expired", "webhook event expired in its queue")
                return
            attempt += 1
            error, retry = await self._post(lane.url, item)
            if error is None:
                telemetry.WEBHOOK_DELIVERIES.labels("success").inc()
                log.debug("webhook delivered", extra=_extra(lane, item, attempt=attempt))
                return
            if not retry:
                self._failed(lane, item, "rejected", f"webhook rejected: {error}")
                return
            if attempt >= policy.max_attempts or age + delay > policy.max_age:
                reason = "attempts" if attempt >= policy.max_attempts else "expired"
                self._failed(lane, item, reason,
                             f"webhook gave up after {attempt} attempts: {error}")
                return
            telemetry.WEBHOOK_RETRIES.inc()
            level = logging.WARNING if attempt == 1 else logging.DEBUG
            log.log(level, "webhook attempt failed, retrying in %.1fs: %s", delay, error,
                    extra=_extra(lane, item, attempt=attempt))
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.backoff_max)

    async def _post(self, url: str, item: _Event) -> tuple[str | None, bool]:
        """One attempt: (None, _) on success, else (error text, worth retrying)."""
        body = item.body
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Authorization": issue_token(self.api_key, self.secret, sha256=digest,
                                         valid_for=TOKEN_TTL),
            "User-Agent": "LiveKit",
        }
        try:
            async with self._session().post(url, data=body, headers=headers) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}", True
        if 200 <= status < 300:
            return None, False
        retry = (status >= 500 and status != 501) or status in _RETRYABLE_4XX
        return f"HTTP {status}", retry

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            timeout = aiohttp.ClientTimeout(total=self.policy.request_timeout,
                                            sock_connect=self.policy.connect_timeout)
            self._http = aiohttp.ClientSession(timeout=timeout)
        return self._http

    def _failed(self, lane: _Lane, item: _Event, reason: str, message: str) -> None:
        telemetry.WEBHOOK_DELIVERIES.labels("failure").inc()
        telemetry.WEBHOOK_DROPPED.labels(reason).inc()
        telemetry.count_error("webhook_delivery")
        log.warning(message, extra=_extra(lane, item, reason=reason))

    # -- lifecycle -------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Events queued or in flight over all lanes."""
        return self._queued + sum(1 for lane in self._lanes.values() if lane.current is not None)

    async def stop(self, deadline: float = 3.0) -> None:
        """Flush what is queued for up to `deadline` seconds, then give up on the rest."""
        self._closed = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if tasks:
            _done, waiting = await asyncio.wait(tasks, timeout=deadline)
            for task in waiting:
                task.cancel()
            for task in waiting:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._http is not None:
            await self._http.close()
            self._http = None


def webhook_key(settings: Settings) -> str:
    """The API key webhooks are signed with; the only key when `webhook.api_key` is unset."""
    cfg = settings.webhook
    if cfg.api_key:
        if cfg.api_key not in settings.keys:
            raise ConfigError(f"webhook.api_key {cfg.api_key!r} is not one of the API keys")
        return cfg.api_key
    if len(settings.keys) == 1:
        return next(iter(settings.keys))
    raise ConfigError("webhook.api_key is required when several API keys are configured")


def _extra(lane: _Lane, item: _Event, **more: object) -> dict[str, object]:
    return {"room": lane.room, "event": item.name, "eventID": item.proto.id, "url": lane.url,
            **more}

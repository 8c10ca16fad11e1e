"""Helpers for scenarios that drive the official LiveKit SDK (`livekit.rtc`) in a child process.

Everything here waits with a deadline: `wait_until` polls a predicate, `EventLog.wait`
waits for a recorded room event, `join` bounds `room.connect`. Scenarios keep every `Room`
they open in a `Rooms` group so that `finally: await rooms.close()` always disconnects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from tests.helpers.server import make_token
from tests.helpers.wait import until

log = logging.getLogger("scenario")

CONNECT_TIMEOUT = 15.0
EVENT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServerInfo:
    """Where the server is and how to sign tokens for it (built from `RoostServer.info`)."""

    url: str
    api_key: str
    api_secret: str

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ServerInfo:
        return cls(url=data["url"], api_key=data["api_key"], api_secret=data["api_secret"])

    def token(self, identity: str, room: str, **grants: Any) -> str:
        return make_token(self.api_key, self.api_secret, identity, room, **grants)


async def wait_until(
    predicate: Callable[[], bool], timeout: float = EVENT_TIMEOUT, what: str = "condition"
) -> None:
    """Poll `predicate` until it is true; TimeoutError naming `what` otherwise."""
    await until(predicate, timeout, what)


class EventLog:
    """Records chosen events of one `rtc.Room` (attach before `connect`) for later assertions."""

    def __init__(self, room: rtc.Room, *events: str, label: str = "") -> None:
        self.label = label
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()
        for name in events:
            room.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            log.debug("[%s] event %s %r", self.label, name, args)
            self.events.append((name, args))
            self._changed.set()

        return record

    def all(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.events if event == name]

    def count(self, name: str) -> int:
        return len(self.all(name))

    async def wait_count(self, name: str, count: int, timeout: float = EVENT_TIMEOUT) -> None:
        """Wait until `count` `name` events were recorded (each new event wakes it)."""
        deadline = time.monotonic() + timeout
        while self.count(name) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"[{self.label}] {self.count(name)} of {count} {name!r} "
                                   f"events within {timeout:.1f} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait(
        self,
        name: str,
        match: Callable[..., bool] = lambda *_: True,
        timeout: float = EVENT_TIMEOUT,
    ) -> tuple[Any, ...]:
        """The arguments of the first recorded `name` event for which `match(*args)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for event, args in self.events:
                if event == name and match(*args):
                    return args
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [event for event, _ in self.events]
                raise TimeoutError(
                    f"[{self.label}] no matching {name!r} event within {timeout:.1f} s; "
                    f"events seen: {seen}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass


class Rooms:
    """The rooms a scenario opened; `close()` disconnects all of them (use in `finally`)."""

    def __init__(self, server: ServerInfo | dict[str, str]) -> None:
        self.server = server if isinstance(server, ServerInfo) else ServerInfo.from_dict(server)
        self.rooms: list[rtc.Room] = []

    def new(self) -> rtc.Room:
        room = rtc.Room()
        self.rooms.append(room)
        return room

    async def join(
        self,
        identity: str,
        room_name: str,
        *,
        room: rtc.Room | None = None,
        options: rtc.RoomOptions | None = None,
        timeout: float = CONNECT_TIMEOUT,
        **grants: Any,
    ) -> rtc.Room:
        """Connect a (new or given, not yet connected) Room as `identity`; bounded by `timeout`."""
        room = room or self.new()
        if room not in self.rooms:
            self.rooms.append(room)
        token = self.server.token(identity, room_name, **grants)
        started = time.monotonic()
        await asyncio.wait_for(
            room.connect(self.server.url, token, options or rtc.RoomOptions()), timeout
        )
        log.info("%s joined %s in %.3f s", identity, room_name, time.monotonic() - started)
        return room

    async def close(self, timeout: float = 10.0) -> None:
        for room in reversed(self.rooms):
            try:
                await asyncio.wait_for(room.disconnect(), timeout)
            except Exception:
                log.exception("disconnect failed for %r", room)


def sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()

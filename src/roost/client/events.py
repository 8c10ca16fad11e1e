"""A small synchronous event emitter with the `on`/`once`/`off`/`emit` API of `livekit.rtc`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

log = logging.getLogger("roost.client")

T = TypeVar("T", bound=str)

EventTypes = Literal[
    "participant_connected", "participant_disconnected", "participant_active",
    "local_track_published", "local_track_unpublished", "local_track_subscribed",
    "track_published", "track_unpublished", "track_subscribed", "track_unsubscribed",
    "track_subscription_failed", "track_muted", "track_unmuted", "active_speakers_changed",
    "room_metadata_changed", "participant_metadata_changed", "participant_name_changed",
    "participant_attributes_changed", "participant_permissions_changed",
    "connection_quality_changed", "data_received", "sip_dtmf_received",
    "transcription_received", "connection_state_changed", "connected", "disconnected",
    "reconnecting", "reconnected", "room_updated", "token_refreshed",
    "local_track_republished",
]
"""The events a `Room` emits (the names `livekit.rtc.Room` uses)."""
Handler = Callable[..., Any]


class EventEmitter(Generic[T]):
    """Calls listeners in registration order; a listener's exception is logged, not raised."""

    def __init__(self) -> None:
        self._events: dict[str, list[Handler]] = {}

    def emit(self, event: T, *args: Any) -> None:
        """Call every listener of `event` with `args`."""
        for callback in list(self._events.get(event, ())):
            try:
                callback(*args)
            except Exception:
                log.exception("listener for %r raised", event)

    def on(self, event: T, callback: Handler | None = None) -> Handler:
        """Register `callback` for `event`; usable as a decorator when `callback` is omitted."""
        if callback is None:

            def decorator(fn: Handler) -> Handler:
                self.on(event, fn)
                return fn

            return decorator
        self._events.setdefault(event, []).append(callback)
        return callback

    def once(self, event: T, callback: Handler | None = None) -> Handler:
        """Register `callback` for the next `event` only."""
        if callback is None:

            def decorator(fn: Handler) -> Handler:
                self.once(event, fn)
                return fn

            return decorator
        target = callback

        def once_callback(*args: Any) -> None:
            self.off(event, once_callback)
            target(*args)

        return self.on(event, once_callback)

    def off(self, event: T, callback: Handler) -> None:
        """Remove `callback` from `event` (no error if it was not registered)."""
        callbacks = self._events.get(event)
        if callbacks and callback in callbacks:
            callbacks.remove(callback)

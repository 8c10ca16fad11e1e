"""Server-offered renegotiation of a subscriber peer connection, one offer at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("roost.signal")

DEBOUNCE = 0.02  # seconds: batch subscription changes made in one burst
ANSWER_TIMEOUT = 10.0


class Negotiator:
    """Coalesces renegotiation requests: at most one offer in flight, re-offer if dirty."""

    def __init__(self, send_offer: Callable[[], Awaitable[None]]) -> None:
        self._send_offer = send_offer
        self._dirty = False
        self._awaiting_answer = False
        self._task: asyncio.Task[None] | None = None
        self._answered = asyncio.Event()
        self.closed = False

    def request(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def answered(self) -> None:
        self._answered.set()

    def offer_sent_elsewhere(self) -> None:
        """An offer went out outside the negotiator (the first one, or an ICE restart)."""
        self._awaiting_answer = True
        self._answered.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while not self.closed:
                if self._awaiting_answer:
                    try:
                        await asyncio.wait_for(self._answered.wait(), ANSWER_TIMEOUT)
                    except TimeoutError:
                        log.info("subscriber answer timed out; offering again")
                    self._awaiting_answer = False
                if not self._dirty:
                    return
                await asyncio.sleep(DEBOUNCE)
                self._dirty = False
                self._answered.clear()
                self._awaiting_answer = True
                await self._send_offer()
        except ConnectionError as exc:
            log.debug("renegotiation skipped: %s", exc)  # the transport went away meanwhile
        except Exception:
            log.exception("renegotiation failed")

    def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()

"""A compose API client for tests and the bench: token request, WebSocket with a recorded event
log (every text with its arrival time, then the close), paced audio sending."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

DEV_COMPOSE_KEY = "simli-dev-key"
CHUNK_SECONDS = 0.04


def http_url(ws_url: str) -> str:
    return ws_url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)


async def request_token(http: aiohttp.ClientSession, base: str, key: str = DEV_COMPOSE_KEY,
                        **body: Any) -> tuple[int, dict[str, Any]]:
    """POST /compose/token; returns (status, JSON body)."""
    body.setdefault("faceId", "ada")
    async with http.post(f"{base}/compose/token", json=body,
                         headers={"x-simli-api-key": key}) as resp:
        return resp.status, await resp.json()


@dataclass
class ComposeSocket:
    """The WebSocket of one session; a background reader records texts and the close."""

    ws: aiohttp.ClientWebSocketResponse
    texts: list[tuple[float, str]] = field(default_factory=list)
    binary: int = 0
    closed_at: float | None = None
    close_code: int | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, base: str, token: str) -> ComposeSocket:
        ws = await http.ws_connect(f"{base}/compose/webrtc/livekit?session_token={token}",
                                   autoclose=True, heartbeat=None)
        sock = cls(ws)
        sock._task = asyncio.create_task(sock._read())
        return sock

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.texts.append((time.monotonic(), msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.binary += 1
            self._changed.set()
        self.closed_at = time.monotonic()
        self.close_code = self.ws.close_code
        self._changed.set()

    def messages(self) -> list[str]:
        return [text for _, text in self.texts]

    def events(self) -> list[str]:
        """The texts that are not the join info."""
        return [text for _, text in self.texts if not text.startswith("{")]

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> tuple[float, str]:
        """The first recorded (time, text) with `predicate(text)`; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            for item in self.texts:
                if predicate(item[1]):
                    return item
            if self.closed_at is not None:
                raise AssertionError(f"socket closed before {what}; got {self.messages()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} within {timeout} s; got {self.messages()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_text(self, text: str, timeout: float = 10.0, after: float = 0.0) -> float:
        """Arrival time of the first `text` received after time `after`."""
        deadline = time.monotonic() + timeout
        while True:
            for t, got in self.texts:
                if got == text and t >= after:
                    return t
            if self.closed_at is not None:
                raise AssertionError(f"socket closed before {text}; got {self.messages()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {text} within {timeout} s; got {self.messages()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def join_info(self, timeout: float = 10.0) -> dict[str, str]:
        _, text = await self.wait_for(lambda t: t.startswith("{"), timeout, "join info")
        assert text.startswith('{"livekit_url"'), text
        info: dict[str, str] = json.loads(text)
        return info

    async def wait_closed(self, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while self.closed_at is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"socket still open after {timeout} s; got {self.messages()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass
        return self.closed_at

    async def send_paced(self, pcm: np.ndarray, chunk: float = CHUNK_SECONDS,
                         rate: int = 16_000) -> float:
        """Send int16 audio in `chunk`-second pieces at real time; returns the first send time."""
        size = int(rate * chunk)
        started = time.monotonic()
        for i, offset in enumerate(range(0, pcm.size, size)):
            due = started + i * chunk
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.ws.send_bytes(pcm[offset:offset + size].tobytes())
        return started

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)

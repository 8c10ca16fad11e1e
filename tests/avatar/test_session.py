"""A compose session with a fake avatar and a fake socket (no server): the order of texts,
DONE waiting for playout, an avatar failure ending the session with ERROR, nothing after it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
from tests.helpers.wait import until

from roost.avatar.animation import Animator
from roost.avatar.faces import FACES
from roost.avatar.limits import ComposeLimits
from roost.avatar.playout import Playout
from roost.avatar.renderer import Renderer
from roost.avatar.session import ComposeSession, JoinInfo
from roost.avatar.tokens import SessionRequest

pytestmark = pytest.mark.timeout(30)


class Channel:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed = False

    async def send_str(self, data: str) -> None:
        if self.closed:
            raise ConnectionError("closed")
        self.sent.append(data)

    async def close(self) -> bool:
        self.closed = True
        return True


class Audio:
    """Plays in real time from the first write."""

    def __init__(self) -> None:
        self.buffered = 0.0
        self.last = asyncio.get_running_loop().time()

    def _drain(self) -> None:
        now = asyncio.get_running_loop().time()
        self.buffered = max(0.0, self.buffered - (now - self.last))
        self.last = now

    async def write(self, pcm: np.ndarray) -> None:
        self._drain()
        self.buffered += pcm.size / 48_000

    def queued(self) -> float:
        self._drain()
        return self.buffered

    def clear(self) -> None:
        self.buffered = 0.0


class Video:
    def write(self, i420: np.ndarray) -> None:
        pass


class FakeAvatar:
    def __init__(self, client: str = "") -> None:
        self.playout = Playout(Renderer(FACES["ada"]), Animator(), Audio(), Video())
        self.on_participant_connected: Callable[[str], None] = lambda identity: None
        self.on_disconnected: Callable[[], None] = lambda: None
        self.on_failed: Callable[[str], None] = lambda reason: None
        self.client = client
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    def remote_identities(self) -> list[str]:
        return [self.client] if self.client else []

    async def join(self, url: str, token: str) -> None:
        self._task = asyncio.create_task(self.playout.run())

    async def aclose(self) -> None:
        self.closed = True
        self.playout.stop()
        if self._task is not None:
            await self._task


def session(avatar: FakeAvatar, **limits: float) -> tuple[ComposeSession, Channel]:
    channel = Channel()
    join = JoinInfo("ws://x", "token", "client-1", "ws://x", "avatar-token", "room-1")
    request = SessionRequest.parse({"faceId": "ada"}, 86_400)
    return ComposeSession("CS_1", request, channel, avatar, join,
                          ComposeLimits(**limits)), channel  # type: ignore[arg-type]


async def test_speech_then_done_plays_out_and_stops_last() -> None:
    avatar = FakeAvatar(client="client-1")
    s, channel = session(avatar, done_grace=0.05)
    await s.start()
    await until(lambda: "START" in channel.sent, 5, "START")
    await s.on_audio(np.full(3200, 8000, dtype=np.int16).tobytes())  # 0.2 s
    await s.on_text("DONE")
    await asyncio.wait_for(s.wait_closed(), 5)
    assert channel.sent[0].startswith('{"livekit_url"')
    assert channel.sent[1:] == ["START", "SPEAK", "SILENT", "STOP"]
    assert channel.closed and avatar.closed


async def test_avatar_failure_ends_the_session_with_error_and_nothing_after() -> None:
    avatar = FakeAvatar()
    s, channel = session(avatar, ack_interval=0.05)
    await s.start()
    await until(lambda: "ACK" in channel.sent, 5, "an ACK")
    avatar.on_failed("playout failed: boom")
    await asyncio.wait_for(s.wait_closed(), 5)
    count = len(channel.sent)
    await asyncio.sleep(0.15)  # the ACK timer was cancelled: nothing more is sent
    assert channel.sent[-1] == "ERROR avatar playout failed: boom"
    assert len(channel.sent) == count and "ACK" in channel.sent


async def test_audio_after_done_is_an_error() -> None:
    s, channel = session(FakeAvatar(client="client-1"), done_grace=1.0)
    await s.start()
    await s.on_text("DONE")
    await s.on_audio(b"\x00\x00")
    await asyncio.wait_for(s.wait_closed(), 5)
    assert channel.sent[-1] == "ERROR audio received after DONE"


class SlowAvatar(FakeAvatar):
    """Joins only when `gate` is set, so audio can arrive before START."""

    def __init__(self, client: str = "") -> None:
        super().__init__(client)
        self.gate = asyncio.Event()

    async def join(self, url: str, token: str) -> None:
        self._task = asyncio.create_task(self.playout.run())
        await self.gate.wait()


async def test_speech_before_the_avatar_joined_is_told_after_start() -> None:
    avatar = SlowAvatar(client="client-1")
    s, channel = session(avatar, done_grace=0.05)
    spoke = asyncio.Event()
    told = avatar.playout.on_speaking
    assert told is not None

    def speaking(now: bool) -> None:
        told(now)
        spoke.set()

    avatar.playout.on_speaking = speaking
    await s.start()
    await s.on_audio(np.full(9600, 8000, dtype=np.int16).tobytes())  # 0.6 s
    await asyncio.wait_for(spoke.wait(), 5)  # speaking began while the avatar was joining
    avatar.gate.set()
    await until(lambda: "SPEAK" in channel.sent, 5, "SPEAK")
    texts = [t for t in channel.sent if not t.startswith("{")]
    assert texts.index("START") < texts.index("SPEAK"), texts
    await s.on_text("DONE")
    await asyncio.wait_for(s.wait_closed(), 5)

"""Data streams: a 50 KB text and a 200 KB byte stream arrive intact."""

from __future__ import annotations

import asyncio
import os
import random
import string
import tempfile
from pathlib import Path

from livekit import rtc
from tests.helpers.sdk import EventLog, Rooms, sha256

ROOM = "streams"


async def _pair(rooms: Rooms) -> tuple[rtc.Room, rtc.Room]:
    alice = rooms.new()
    alice_events = EventLog(alice, "participant_connected", label="alice")
    await rooms.join("alice", ROOM, room=alice)
    bob = await rooms.join("bob", ROOM)
    if "bob" not in alice.remote_participants:
        await alice_events.wait("participant_connected", lambda p: p.identity == "bob")
    return alice, bob


def _text(size: int) -> str:
    rng = random.Random(42)
    alphabet = string.ascii_letters + string.digits + " .,;\n" + "äöüßéñ€✓"
    return "".join(rng.choice(alphabet) for _ in range(size))[:size]


async def text_stream_arrives_intact(srv: dict[str, str]) -> dict[str, int]:
    rooms = Rooms(srv)
    try:
        alice, bob = await _pair(rooms)
        received: asyncio.Future[tuple[str, str, rtc.TextStreamInfo]] = (
            asyncio.get_running_loop().create_future()
        )
        tasks: set[asyncio.Task[None]] = set()

        def on_text(reader: rtc.TextStreamReader, sender: str) -> None:
            async def read() -> None:
                try:
                    received.set_result((await reader.read_all(), sender, reader.info))
                except Exception as exc:
                    received.set_exception(exc)

            task = asyncio.ensure_future(read())
            tasks.add(task)

        bob.register_text_stream_handler("chat", on_text)
        text = _text(50_000)
        sent = await asyncio.wait_for(
            alice.local_participant.send_text(text, topic="chat", attributes={"lang": "mixed"}),
            30,
        )
        got, sender, info = await asyncio.wait_for(received, 30)
        assert sender == "alice"
        assert info.stream_id == sent.stream_id
        assert info.topic == "chat"
        assert info.attributes == {"lang": "mixed"}
        assert len(got) == len(text), (len(got), len(text))
        assert sha256(got) == sha256(text)
        return {"chars": len(got), "bytes": len(got.encode())}
    finally:
        await rooms.close()


async def byte_stream_arrives_intact(srv: dict[str, str]) -> dict[str, int]:
    rooms = Rooms(srv)
    try:
        alice, bob = await _pair(rooms)
        received: asyncio.Queue[tuple[bytes, str, rtc.ByteStreamInfo]] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        def on_bytes(reader: rtc.ByteStreamReader, sender: str) -> None:
            async def read() -> None:
                chunks = [chunk async for chunk in reader]
                await received.put((b"".join(chunks), sender, reader.info))

            tasks.add(asyncio.ensure_future(read()))

        bob.register_byte_stream_handler("files", on_bytes)
        payload = os.urandom(200_000)  # incompressible

        # 1. A file, sent with send_file.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "blob.bin"
            path.write_bytes(payload)
            await asyncio.wait_for(alice.local_participant.send_file(str(path), topic="files"), 30)
        got, sender, info = await asyncio.wait_for(received.get(), 30)
        assert sender == "alice"
        assert info.name == "blob.bin"
        assert len(got) == len(payload), (len(got), len(payload))
        assert sha256(got) == sha256(payload)

        # 2. The same bytes written piecewise through stream_bytes.
        writer = await asyncio.wait_for(
            alice.local_participant.stream_bytes(
                "pieces.bin", total_size=len(payload), topic="files"
            ),
            10,
        )
        for offset in range(0, len(payload), 32_768):
            await asyncio.wait_for(writer.write(payload[offset : offset + 32_768]), 10)
        await asyncio.wait_for(writer.aclose(), 10)
        got, sender, info = await asyncio.wait_for(received.get(), 30)
        assert (sender, info.name) == ("alice", "pieces.bin")
        assert sha256(got) == sha256(payload), f"{len(got)} bytes received"
        return {"bytes": len(got)}
    finally:
        await rooms.close()

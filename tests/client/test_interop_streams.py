"""roost.client ↔ official SDK in one roost room: text/byte streams and metadata, both ways."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import string
from pathlib import Path

import pytest
from tests.client.helpers import Recorder, wait_until, with_official
from tests.helpers.server import RoostServer
from tests.helpers.wait import until_async

from roost import client as rc

pytestmark = pytest.mark.timeout(120)


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _text(size: int) -> str:
    rng = random.Random(7)
    alphabet = string.ascii_letters + " .,;\n" + "äöüßéñ€✓😀"
    return "".join(rng.choice(alphabet) for _ in range(size))


async def test_text_and_byte_streams_both_ways(server: RoostServer, tmp_path: Path) -> None:
    async with with_official(server, "interop-streams", tmp_path) as (room, peer):
        texts: asyncio.Queue[tuple[str, str, rc.TextStreamInfo]] = asyncio.Queue()
        files: asyncio.Queue[tuple[bytes, str, rc.ByteStreamInfo]] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()

        def on_text(reader: rc.TextStreamReader, sender: str) -> None:
            async def read() -> None:
                await texts.put((await reader.read_all(), sender, reader.info))
            tasks.add(asyncio.ensure_future(read()))

        def on_bytes(reader: rc.ByteStreamReader, sender: str) -> None:
            async def read() -> None:
                await files.put((b"".join([c async for c in reader]), sender, reader.info))
            tasks.add(asyncio.ensure_future(read()))

        room.register_text_stream_handler("text", on_text)
        room.register_byte_stream_handler("files", on_bytes)

        # roost → official: a 50,000-character text (multi-byte characters across chunks)
        text = _text(50_000)
        info = await room.local_participant.send_text(text, topic="text",
                                                      attributes={"lang": "mixed"})
        # ... a 200 KB file and the same bytes through stream_bytes in odd-sized pieces
        payload = os.urandom(200_000)
        path = tmp_path / "blob.bin"
        path.write_bytes(payload)
        await room.local_participant.send_file(str(path), topic="files")
        writer = await room.local_participant.stream_bytes("pieces.bin", total_size=len(payload),
                                                           topic="files")
        for offset in range(0, len(payload), 32_768):
            await writer.write(payload[offset : offset + 32_768])
        await writer.aclose()

        async def official_has_all() -> dict | None:
            report = await peer.call("received")
            return report if len(report["texts"]) >= 1 and len(report["files"]) >= 2 else None

        report = await until_async(official_has_all, 30, "the text and both files at the official",
                                   interval=0.1)
        (got_text,) = report["texts"]
        assert got_text["sha256"] == _sha(text) and got_text["chars"] == len(text)
        assert got_text["sender"] == "roost" and got_text["stream_id"] == info.stream_id
        assert got_text["attributes"] == {"lang": "mixed"}
        assert [(f["name"], f["sha256"], f["size"]) for f in report["files"]] == [
            ("blob.bin", _sha(payload), len(payload)),
            ("pieces.bin", _sha(payload), len(payload)),
        ]

        # official → roost
        sent = await peer.call("send_text", text=text, topic="text", attributes={"k": "v"})
        got, sender, tinfo = await asyncio.wait_for(texts.get(), 30)
        assert (sender, tinfo.topic, tinfo.attributes) == ("official", "text", {"k": "v"})
        assert tinfo.stream_id == sent["stream_id"]
        assert _sha(got) == sent["sha256"] == _sha(text)
        for op, args in (("send_file", {}), ("stream_bytes", {"piece": 40_000})):
            sent = await peer.call(op, size=200_000, **args)
            data, sender, binfo = await asyncio.wait_for(files.get(), 30)
            assert sender == "official"
            assert binfo.name == ("official.bin" if op == "send_file" else "pieces.bin")
            assert (len(data), _sha(data)) == (sent["size"], sent["sha256"])


async def test_metadata_name_and_attributes_both_ways(server: RoostServer,
                                                      tmp_path: Path) -> None:
    async with with_official(server, "interop-meta", tmp_path) as (room, peer):
        events = Recorder(room, "participant_metadata_changed", "participant_name_changed",
                          "participant_attributes_changed")
        local = room.local_participant
        await local.set_metadata('{"role": "host"}')
        await local.set_name("Roost Host")
        await local.set_attributes({"mood": "calm", "seat": "3"})
        assert local.metadata == '{"role": "host"}' and local.name == "Roost Host"
        assert local.attributes == {"mood": "calm", "seat": "3"}

        async def official_view() -> dict:
            return await peer.call("view_of", identity="roost")

        view: dict = {}

        async def converged() -> bool:
            nonlocal view
            view = await official_view()
            return view.get("attributes", {}).get("seat") == "3"

        await until_async(converged, 5, "the official's view of roost's attributes", interval=0.1)
        assert view["metadata"] == '{"role": "host"}' and view["name"] == "Roost Host"
        assert view["attributes"] == {"mood": "calm", "seat": "3"}
        await local.set_attributes({"seat": ""})  # an empty value deletes
        assert local.attributes == {"mood": "calm"}

        await peer.call("set", metadata="m2", name="Official", attributes={"a": "1"})
        official = room.remote_participants["official"]
        await wait_until(lambda: official.attributes.get("a") == "1", what="official attributes")
        assert (official.metadata, official.name) == ("m2", "Official")
        (_p, old, new) = await events.wait("participant_metadata_changed",
                                          lambda p, o, n: p.identity == "official")
        assert (old, new) == ("", "m2")
        await events.wait("participant_name_changed", lambda p, o, n: n == "Official")
        (changed, _who) = await events.wait("participant_attributes_changed",
                                           lambda c, p: p.identity == "official" and "a" in c)
        assert changed == {"a": "1"}
        # the local participant's own changes were reported too
        await events.wait("participant_metadata_changed", lambda p, o, n: p is local)

"""The official-SDK side of the interop tests: a peer driven over RPC (runs in a child process).

`peer(srv, room, identity, controller)` joins with `livekit.rtc`, registers a `cmd` RPC
method whose JSON operations make it publish data, streams, RPC calls, metadata and media,
or report what it received; it sets the attribute `ready=1` once it can be driven and
leaves when the controller calls `done`. Test handlers: `echo`, `upper`, `fail` (RpcError
4042 with data) and `slow` (never answers in time).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc
from tests.helpers.sdk import Rooms, wait_until
from tests.helpers.signals import dominant_hz, first_frames, mean_rgb

log = logging.getLogger("official_peer")
SAMPLE_RATE = 48_000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Peer:
    """The state of the official peer: what it received and the media tasks it runs."""

    def __init__(self, room: rtc.Room, controller: str) -> None:
        self.room = room
        self.controller = controller
        self.data: list[dict[str, Any]] = []
        self.texts: list[dict[str, Any]] = []
        self.files: list[dict[str, Any]] = []
        self.changes: list[list[Any]] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.done = asyncio.Event()
        room.on("data_received", self._on_data)
        room.on("participant_metadata_changed",
                lambda p, old, new: self.changes.append(["metadata", p.identity, new]))
        room.on("participant_name_changed",
                lambda p, old, new: self.changes.append(["name", p.identity, new]))
        room.on("participant_attributes_changed",
                lambda changed, p: self.changes.append(["attributes", p.identity, changed]))
        room.on("participant_disconnected",
                lambda p: self.done.set() if p.identity == controller else None)
        room.register_text_stream_handler("text", self._on_text)
        room.register_byte_stream_handler("files", self._on_bytes)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        self.data.append({
            "payload": base64.b64encode(packet.data).decode(),
            "topic": packet.topic,
            "reliable": packet.kind == rtc.DataPacketKind.KIND_RELIABLE,
            "sender": packet.participant.identity if packet.participant else None,
        })

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_text(self, reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            text = await reader.read_all()
            self.texts.append({"sha256": _sha(text.encode()), "chars": len(text),
                               "sender": sender, "topic": reader.info.topic,
                               "attributes": reader.info.attributes,
                               "stream_id": reader.info.stream_id})

        self._spawn(read())

    def _on_bytes(self, reader: rtc.ByteStreamReader, sender: str) -> None:
        async def read() -> None:
            data = b"".join([chunk async for chunk in reader])
            self.files.append({"sha256": _sha(data), "size": len(data), "sender": sender,
                               "name": reader.info.name, "mime_type": reader.info.mime_type})

        self._spawn(read())

    async def command(self, data: rtc.RpcInvocationData) -> str:
        """Run one JSON operation from the controller; returns its JSON result."""
        args = json.loads(data.payload)
        op = args.pop("op")
        result = await getattr(self, f"op_{op}")(**args)
        return json.dumps(result)

    # ---- operations --------------------------------------------------------------

    async def op_done(self) -> dict[str, Any]:
        self.done.set()
        return {}

    async def op_received(self) -> dict[str, Any]:
        return {"data": self.data, "texts": self.texts, "files": self.files,
                "changes": self.changes}

    async def op_publish_data(self, payload: str, reliable: bool, topic: str,
                              destinations: list[str]) -> dict[str, Any]:
        await self.room.local_participant.publish_data(
            base64.b64decode(payload), reliable=reliable, topic=topic,
            destination_identities=destinations)
        return {}

    async def op_send_text(self, text: str, topic: str,
                           attributes: dict[str, str]) -> dict[str, Any]:
        info = await self.room.local_participant.send_text(
            text, topic=topic, attributes=attributes, destination_identities=[self.controller])
        return {"stream_id": info.stream_id, "sha256": _sha(text.encode())}

    async def op_send_file(self, size: int) -> dict[str, Any]:
        payload = os.urandom(size)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "official.bin"
            path.write_bytes(payload)
            await self.room.local_participant.send_file(str(path), topic="files")
        return {"sha256": _sha(payload), "size": size}

    async def op_stream_bytes(self, size: int, piece: int) -> dict[str, Any]:
        payload = os.urandom(size)
        writer = await self.room.local_participant.stream_bytes(
            "pieces.bin", total_size=size, topic="files")
        for offset in range(0, size, piece):
            await writer.write(payload[offset : offset + piece])
        await writer.aclose()
        return {"sha256": _sha(payload), "size": size}

    async def op_rpc(self, method: str, payload: str,
                     response_timeout: float | None = None) -> dict[str, Any]:
        try:
            answer = await self.room.local_participant.perform_rpc(
                destination_identity=self.controller, method=method, payload=payload,
                response_timeout=response_timeout)
        except rtc.RpcError as exc:
            return {"error": exc.code, "message": exc.message, "data": exc.data}
        return {"answer": answer}

    async def op_set(self, metadata: str | None = None, name: str | None = None,
                     attributes: dict[str, str] | None = None) -> dict[str, Any]:
        local = self.room.local_participant
        if metadata is not None:
            await local.set_metadata(metadata)
        if name is not None:
            await local.set_name(name)
        if attributes is not None:
            await local.set_attributes(attributes)
        return {}

    async def op_view_of(self, identity: str) -> dict[str, Any]:
        p = self.room.remote_participants.get(identity)
        if p is None:
            return {"present": False}
        return {"present": True, "metadata": p.metadata, "name": p.name,
                "attributes": dict(p.attributes), "sid": p.sid,
                "tracks": {sid: {"kind": int(pub.kind), "source": int(pub.source),
                                 "subscribed": pub.subscribed, "muted": pub.muted}
                           for sid, pub in p.track_publications.items()}}

    async def op_publish_tone(self, hz: float) -> dict[str, Any]:
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        pub = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))

        async def tone() -> None:
            n, t = SAMPLE_RATE // 100, 0
            while True:
                x = np.arange(t, t + n) / SAMPLE_RATE
                samples = (np.sin(2 * np.pi * hz * x) * 0.5 * 32767).astype(np.int16)
                await source.capture_frame(rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, n))
                t += n

        self._spawn(tone())
        return {"sid": pub.sid}

    async def op_publish_colour(self, width: int, height: int, rgb: list[int]) -> dict[str, Any]:
        source = rtc.VideoSource(width, height)
        track = rtc.LocalVideoTrack.create_video_track("camera", source)
        rgba = np.zeros((height, width, 4), dtype=np.uint8)
        rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = *rgb, 255
        frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, rgba.tobytes())

        async def frames() -> None:
            while True:
                source.capture_frame(frame)
                await asyncio.sleep(1 / 15)

        self._spawn(frames())
        pub = await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA))
        return {"sid": pub.sid}

    async def op_hear(self, seconds: float = 0.5) -> dict[str, Any]:
        track = await self._remote_track(rtc.TrackKind.KIND_AUDIO)
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        heard: list[np.ndarray] = []
        try:
            async for event in stream:
                data = np.frombuffer(event.frame.data, dtype=np.int16)
                if np.sqrt(np.mean(data.astype(np.float64) ** 2)) > 1000:
                    heard.append(data.copy())
                    if sum(len(h) for h in heard) >= SAMPLE_RATE * seconds:
                        break
        finally:
            await stream.aclose()
        return {"pitch_hz": dominant_hz(np.concatenate(heard), SAMPLE_RATE)}

    async def op_see(self, frames: int = 10) -> dict[str, Any]:
        track = await self._remote_track(rtc.TrackKind.KIND_VIDEO)
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
        last = (await first_frames(stream, frames, timeout=20))[-1]
        return {"width": last.width, "height": last.height,
                "rgb": [round(c) for c in mean_rgb(last)]}

    async def _remote_track(self, kind: int) -> rtc.Track:
        def find() -> rtc.Track | None:
            p = self.room.remote_participants.get(self.controller)
            for pub in (p.track_publications.values() if p else ()):
                if pub.kind == kind and pub.track is not None:
                    return pub.track
            return None

        await wait_until(lambda: find() is not None, 20, what="a subscribed controller track")
        track = find()
        assert track is not None
        return track


async def peer(srv: dict[str, str], room_name: str, identity: str, controller: str,
               max_seconds: float = 90.0) -> dict[str, Any]:
    """Join, serve commands until `done`, then report what was received."""
    rooms = Rooms(srv)
    try:
        room = rooms.new()
        state = Peer(room, controller)
        await rooms.join(identity, room_name, room=room, can_update_own_metadata=True)
        local = room.local_participant
        local.register_rpc_method("cmd", state.command)
        local.register_rpc_method("echo", lambda d: d.payload)
        local.register_rpc_method("upper", lambda d: d.payload.upper())

        async def fail(d: rtc.RpcInvocationData) -> str:
            raise rtc.RpcError(4042, "no such order", data=json.dumps({"order": d.payload}))

        async def slow(d: rtc.RpcInvocationData) -> str:
            await asyncio.sleep(30)
            return "late"

        local.register_rpc_method("fail", fail)
        local.register_rpc_method("slow", slow)
        await local.set_attributes({"ready": "1"})
        await asyncio.wait_for(state.done.wait(), max_seconds)
        await asyncio.sleep(0.2)  # let the answer to `done` leave
        return {"data": state.data, "texts": state.texts, "files": state.files}
    finally:
        await rooms.close()

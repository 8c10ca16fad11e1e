"""Text and byte data streams: header, 15,000-byte chunks, trailer (all reliable packets).

Outgoing: `TextStreamWriter`/`ByteStreamWriter`. Incoming: `StreamReceiver` turns packets
into `TextStreamReader`/`ByteStreamReader` objects handed to the handler of their topic.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from livekit.protocol import models

log = logging.getLogger("roost.client.streams")

STREAM_CHUNK_SIZE = 15_000
MAX_STREAM_BYTES = 64 << 20  # an incoming stream larger than this fails with StreamError
MAX_OPEN_STREAMS = 1_000  # unfinished incoming streams kept at once (oldest fail first)
TEXT_MIME = "text/plain"
BYTES_MIME = "application/octet-stream"

SendPacket = Callable[[models.DataPacket], Awaitable[None]]
DataStream = models.DataStream


class StreamError(ConnectionError):
    """A stream failed: aborted by the sender, incomplete, or could not be sent."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass
class BaseStreamInfo:
    """What a stream's header says."""

    stream_id: str
    mime_type: str
    topic: str
    timestamp: int
    size: int | None
    attributes: dict[str, str] | None = field(default_factory=dict)


@dataclass
class TextStreamInfo(BaseStreamInfo):
    """Header of a text stream."""

    attachments: list[str] = field(default_factory=list)


@dataclass
class ByteStreamInfo(BaseStreamInfo):
    """Header of a byte stream (a file, usually)."""

    name: str = ""


def utf8_chunks(data: bytes, size: int = STREAM_CHUNK_SIZE) -> list[bytes]:
    """Split UTF-8 `data` into pieces of at most `size` bytes without cutting a character."""
    out, start = [], 0
    while start < len(data):
        end = min(start + size, len(data))
        if end < len(data):
            while end > start and (data[end] & 0xC0) == 0x80:
                end -= 1
            if end == start:
                end = min(start + size, len(data))
        out.append(data[start:end])
        start = end
    return out


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Reader:
    """Chunks of one incoming stream, in order, ending with None or a StreamError."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | StreamError | None] = asyncio.Queue()
        self._done = False

    def _push(self, item: bytes | StreamError | None) -> None:
        if not self._done:
            self._queue.put_nowait(item)
            self._done = item is None or isinstance(item, StreamError)

    async def _next_bytes(self) -> bytes:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stays ended
            raise StopAsyncIteration
        if isinstance(item, StreamError):
            self._queue.put_nowait(item)
            raise item
        return item


class TextStreamReader(_Reader):
    """An incoming text stream: iterate for chunks or `read_all()` for the whole text."""

    def __init__(self, info: TextStreamInfo) -> None:
        super().__init__()
        self._info = info
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def info(self) -> TextStreamInfo:
        return self._info

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        try:
            return self._decoder.decode(await self._next_bytes())
        except StopAsyncIteration:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                return tail
            raise

    async def read_all(self) -> str:
        """The whole text (waits for the trailer)."""
        return "".join([chunk async for chunk in self])


class ByteStreamReader(_Reader):
    """An incoming byte stream: iterate for chunks of bytes."""

    def __init__(self, info: ByteStreamInfo) -> None:
        super().__init__()
        self._info = info

    @property
    def info(self) -> ByteStreamInfo:
        return self._info

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        return await self._next_bytes()

    async def read_all(self) -> bytes:
        """The whole payload (waits for the trailer)."""
        return b"".join([chunk async for chunk in self])


TextStreamHandler = Callable[[TextStreamReader, str], None]
ByteStreamHandler = Callable[[ByteStreamReader, str], None]


class StreamReceiver:
    """Routes stream packets to readers and new streams to the handler of their topic."""

    def __init__(self, max_bytes: int = MAX_STREAM_BYTES) -> None:
        self.text_handlers: dict[str, TextStreamHandler] = {}
        self.byte_handlers: dict[str, ByteStreamHandler] = {}
        self.max_bytes = max_bytes
        self._open: dict[str, tuple[_Reader, BaseStreamInfo, int]] = {}

    def on_packet(self, packet: models.DataPacket) -> None:
        """Feed one stream_header / stream_chunk / stream_trailer packet."""
        which = packet.WhichOneof("value")
        if which == "stream_header":
            self._on_header(packet.stream_header, packet.participant_identity)
        elif which == "stream_chunk":
            chunk = packet.stream_chunk
            entry = self._open.get(chunk.stream_id)
            if entry is None:
                return
            reader, info, received = entry
            received += len(chunk.content)
            if received > self.max_bytes:
                self._open.pop(chunk.stream_id, None)
                reader._push(StreamError(f"stream exceeds {self.max_bytes} bytes"))
                return
            self._open[chunk.stream_id] = (reader, info, received)
            reader._push(bytes(chunk.content))
        elif which == "stream_trailer":
            trailer = packet.stream_trailer
            entry = self._open.pop(trailer.stream_id, None)
            if entry is None:
                return
            reader, info, _ = entry
            if info.attributes is not None:
                info.attributes.update(trailer.attributes)
            reader._push(StreamError(trailer.reason) if trailer.reason else None)

    def _on_header(self, header: DataStream.Header, sender: str) -> None:
        size = header.total_length if header.HasField("total_length") else None
        attributes = dict(header.attributes)
        reader: _Reader
        call: Callable[[], object]
        if header.WhichOneof("content_header") == "byte_header":
            handler_b = self.byte_handlers.get(header.topic)
            if handler_b is None:
                log.info("ignoring byte stream with topic %r: no handler", header.topic)
                return
            binfo = ByteStreamInfo(header.stream_id, header.mime_type, header.topic,
                                   header.timestamp, size, attributes,
                                   name=header.byte_header.name)
            byte_reader = reader = ByteStreamReader(binfo)
            info: BaseStreamInfo = binfo
            call = lambda: handler_b(byte_reader, sender)  # noqa: E731
        else:
            handler_t = self.text_handlers.get(header.topic)
            if handler_t is None:
                log.info("ignoring text stream with topic %r: no handler", header.topic)
                return
            tinfo = TextStreamInfo(header.stream_id, header.mime_type, header.topic,
                                   header.timestamp, size, attributes,
                                   attachments=list(header.text_header.attached_stream_ids))
            text_reader = reader = TextStreamReader(tinfo)
            info = tinfo
            call = lambda: handler_t(text_reader, sender)  # noqa: E731
        if header.HasField("inline_content"):
            content = bytes(header.inline_content)
            if header.compression == DataStream.DEFLATE_RAW:
                content = zlib.decompress(content, -15)
            reader._push(content)
            reader._push(None)
        else:
            if len(self._open) >= MAX_OPEN_STREAMS:
                oldest = next(iter(self._open))
                self._open.pop(oldest)[0]._push(StreamError("too many unfinished streams"))
            self._open[header.stream_id] = (reader, info, 0)
        call()

    def abort_all(self, reason: str) -> None:
        """Fail every unfinished stream (on disconnect)."""
        for reader, _, _ in self._open.values():
            reader._push(StreamError(reason))
        self._open.clear()


class _Writer:
    """Common part of the writers: header on open, chunks, trailer on close."""

    def __init__(self, send: SendPacket, header: DataStream.Header,
                 destination_identities: list[str] | None) -> None:
        self._send_packet = send
        self._header = header
        self._destinations = list(destination_identities or [])
        self._index = 0
        self._closed = False
        self._lock = asyncio.Lock()

    def _packet(self) -> models.DataPacket:
        packet = models.DataPacket()
        packet.destination_identities.extend(self._destinations)
        return packet

    async def _send_header(self) -> None:
        packet = self._packet()
        packet.stream_header.CopyFrom(self._header)
        await self._send(packet)

    async def _send(self, packet: models.DataPacket) -> None:
        try:
            await self._send_packet(packet)
        except ConnectionError as exc:
            raise StreamError(f"could not send: {exc}") from exc

    async def _write_bytes(self, data: bytes, pieces: list[bytes]) -> None:
        async with self._lock:
            if self._closed:
                raise RuntimeError("Cannot write after stream is closed")
            for piece in pieces:
                packet = self._packet()
                chunk = packet.stream_chunk
                chunk.stream_id = self._header.stream_id
                chunk.chunk_index = self._index
                chunk.content = piece
                self._index += 1
                await self._send(packet)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None
                     ) -> None:
        """Send the trailer (a non-empty `reason` tells the receiver the stream failed)."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("Stream already closed")
            self._closed = True
            packet = self._packet()
            trailer = packet.stream_trailer
            trailer.stream_id = self._header.stream_id
            trailer.reason = reason
            if attributes:
                trailer.attributes.update(attributes)
            await self._send(packet)


def make_header(*, topic: str, mime_type: str, attributes: dict[str, str] | None,
                stream_id: str | None, total_length: int | None) -> DataStream.Header:
    """A stream header with the common fields set."""
    header = DataStream.Header(stream_id=stream_id or str(uuid.uuid4()), timestamp=_now_ms(),
                               topic=topic, mime_type=mime_type)
    if total_length is not None:
        header.total_length = total_length
    if attributes:
        header.attributes.update(attributes)
    return header


class TextStreamWriter(_Writer):
    """An outgoing text stream; `write` text, then `aclose`."""

    def __init__(self, send: SendPacket, header: DataStream.Header,
                 destination_identities: list[str] | None) -> None:
        super().__init__(send, header, destination_identities)
        self._info = TextStreamInfo(header.stream_id, header.mime_type, header.topic,
                                    header.timestamp,
                                    header.total_length if header.HasField("total_length")
                                    else None, dict(header.attributes),
                                    attachments=list(header.text_header.attached_stream_ids))

    @property
    def info(self) -> TextStreamInfo:
        return self._info

    async def write(self, text: str) -> None:
        """Send `text` as one or more chunks (never splitting a UTF-8 character)."""
        data = text.encode("utf-8")
        await self._write_bytes(data, utf8_chunks(data))


class ByteStreamWriter(_Writer):
    """An outgoing byte stream; `write` bytes, then `aclose`."""

    def __init__(self, send: SendPacket, header: DataStream.Header,
                 destination_identities: list[str] | None) -> None:
        super().__init__(send, header, destination_identities)
        self._info = ByteStreamInfo(header.stream_id, header.mime_type, header.topic,
                                    header.timestamp,
                                    header.total_length if header.HasField("total_length")
                                    else None, dict(header.attributes),
                                    name=header.byte_header.name)

    @property
    def info(self) -> ByteStreamInfo:
        return self._info

    async def write(self, data: bytes) -> None:
        """Send `data` in chunks of at most 15,000 bytes."""
        pieces = [data[i : i + STREAM_CHUNK_SIZE] for i in range(0, len(data), STREAM_CHUNK_SIZE)]
        await self._write_bytes(data, pieces)

"""Sending text and byte streams (header, 15,000-byte chunks, trailer) from the local
participant: `stream_text`, `send_text`, `stream_bytes`, `send_bytes`, `send_file`."""

from __future__ import annotations

import abc
import mimetypes
import os

from livekit.protocol import models

from .streams import (
    BYTES_MIME,
    TEXT_MIME,
    ByteStreamInfo,
    ByteStreamWriter,
    TextStreamInfo,
    TextStreamWriter,
    make_header,
    utf8_chunks,
)


class StreamSender(abc.ABC):
    """The stream-sending half of `LocalParticipant` (it provides `_send_packet`)."""

    @abc.abstractmethod
    async def _send_packet(self, packet: models.DataPacket, reliable: bool = True) -> None:
        """Send one DataPacket (LocalParticipant provides it)."""

    async def stream_text(self, *, destination_identities: list[str] | None = None,
                          topic: str = "", attributes: dict[str, str] | None = None,
                          stream_id: str | None = None, reply_to_id: str | None = None,
                          total_size: int | None = None, sender_identity: str | None = None
                          ) -> TextStreamWriter:
        """Open a text stream; `write` to it, then `aclose`."""
        header = make_header(topic=topic, mime_type=TEXT_MIME, attributes=attributes,
                             stream_id=stream_id, total_length=total_size)
        header.text_header.operation_type = models.DataStream.CREATE
        if reply_to_id:
            header.text_header.reply_to_stream_id = reply_to_id
        writer = TextStreamWriter(self._send_packet, header, destination_identities)
        await writer._send_header()
        return writer

    async def send_text(self, text: str, *, destination_identities: list[str] | None = None,
                        topic: str = "", attributes: dict[str, str] | None = None,
                        reply_to_id: str | None = None, compress: bool = True
                        ) -> TextStreamInfo:
        """Send `text` as a whole text stream."""
        writer = await self.stream_text(
            destination_identities=destination_identities, topic=topic, attributes=attributes,
            reply_to_id=reply_to_id, total_size=len(text.encode("utf-8")))
        data = text.encode("utf-8")
        await writer._write_bytes(data, utf8_chunks(data))
        await writer.aclose()
        return writer.info

    async def stream_bytes(self, name: str, *, total_size: int | None = None,
                           mime_type: str = BYTES_MIME, attributes: dict[str, str] | None = None,
                           stream_id: str | None = None,
                           destination_identities: list[str] | None = None, topic: str = ""
                           ) -> ByteStreamWriter:
        """Open a byte stream; `write` to it, then `aclose`."""
        header = make_header(topic=topic, mime_type=mime_type, attributes=attributes,
                             stream_id=stream_id, total_length=total_size)
        header.byte_header.name = name
        writer = ByteStreamWriter(self._send_packet, header, destination_identities)
        await writer._send_header()
        return writer

    async def send_bytes(self, data: bytes, *, topic: str = "", name: str | None = None,
                         mime_type: str | None = None,
                         destination_identities: list[str] | None = None,
                         attributes: dict[str, str] | None = None, stream_id: str | None = None,
                         compress: bool = True) -> ByteStreamInfo:
        """Send an in-memory buffer as a whole byte stream."""
        writer = await self.stream_bytes(
            name or "unknown", total_size=len(data), mime_type=mime_type or BYTES_MIME,
            attributes=attributes, stream_id=stream_id,
            destination_identities=destination_identities, topic=topic)
        await writer.write(data)
        await writer.aclose()
        return writer.info

    async def send_file(self, file_path: str, *, topic: str = "",
                        destination_identities: list[str] | None = None,
                        attributes: dict[str, str] | None = None, stream_id: str | None = None,
                        compress: bool = True) -> ByteStreamInfo:
        """Send a file as a byte stream named after it (read 15,000 bytes at a time)."""
        mime_type = mimetypes.guess_type(file_path)[0] or BYTES_MIME
        size = os.path.getsize(file_path)  # noqa: ASYNC240
        writer = await self.stream_bytes(
            os.path.basename(file_path), total_size=size, mime_type=mime_type,
            attributes=attributes, stream_id=stream_id,
            destination_identities=destination_identities, topic=topic)
        with open(file_path, "rb") as fh:  # noqa: ASYNC230 - small reads between awaits
            while chunk := fh.read(15_000):
                await writer.write(chunk)
        await writer.aclose()
        return writer.info

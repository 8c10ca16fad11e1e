"""An echo bot: plays back every audio track it hears (after --delay seconds), answers data
packets with the same bytes, serves the RPC method `echo` and echoes `chat` text streams.

    python examples/echo_bot.py --room demo [--delay 0.5] [--seconds 0 = forever]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from _common import parser, token

from roost import client as rc

log = logging.getLogger("echo_bot")
RATE = 48_000


async def echo_audio(room: rc.Room, track: rc.Track, who: str, delay: float) -> None:
    """Publish what `track` carries, `delay` seconds later, as this bot's microphone."""
    source = rc.AudioSource(RATE, 1, queue_size_ms=int(delay * 1000) + 500)
    echo = rc.LocalAudioTrack.create_audio_track(f"echo-{who}", source)
    publication = await room.local_participant.publish_track(
        echo, rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_MICROPHONE))
    log.info("echoing %s's audio as %s", who, publication.sid)
    stream = rc.AudioStream(track, sample_rate=RATE, num_channels=1)
    if delay > 0:
        await source.capture_frame(rc.AudioFrame.create(RATE, 1, int(RATE * delay)))
    try:
        async for event in stream:
            await source.capture_frame(event.frame)
    finally:
        await stream.aclose()
        if publication.sid in room.local_participant.track_publications:
            await room.local_participant.unpublish_track(publication.sid)


async def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--delay", type=float, default=0.5)
    p.add_argument("--seconds", type=float, default=0.0, help="leave after this long (0: never)")
    args = p.parse_args()
    room = rc.Room()
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @room.on("track_subscribed")
    def on_track(track: rc.Track, publication: rc.RemoteTrackPublication,
                 participant: rc.RemoteParticipant) -> None:
        if track.kind == rc.TrackKind.KIND_AUDIO:
            spawn(echo_audio(room, track, participant.identity, args.delay))

    @room.on("data_received")
    def on_data(packet: rc.DataPacket) -> None:
        if packet.participant is not None:
            spawn(room.local_participant.publish_data(
                packet.data, topic=packet.topic or "", reliable=True,
                destination_identities=[packet.participant.identity]))

    def on_chat(reader: rc.TextStreamReader, sender: str) -> None:
        async def answer() -> None:
            text = await reader.read_all()
            await room.local_participant.send_text(text, topic="chat",
                                                   destination_identities=[sender])
        spawn(answer())

    room.register_text_stream_handler("chat", on_chat)
    await room.connect(args.url, token(args, "echo-bot"))
    room.local_participant.register_rpc_method("echo", lambda data: data.payload)
    log.info("echo bot in room %s", room.name)
    try:
        if args.seconds > 0:
            await asyncio.sleep(args.seconds)
        else:
            await asyncio.Event().wait()
    finally:
        for task in list(tasks):
            task.cancel()
        await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main())

"""Record a participant's microphone (or the first audio track) to a 16-bit WAV file.

    python examples/record_wav.py out.wav --room demo [--from alice] [--seconds 10]
"""

from __future__ import annotations

import asyncio
import logging
import wave

from _common import parser, token

from roost import client as rc

log = logging.getLogger("record_wav")


async def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("out")
    p.add_argument("--from", dest="source", default="", help="identity to record (default: any)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=48_000)
    p.add_argument("--wait", type=float, default=30.0, help="how long to wait for a track")
    args = p.parse_args()

    room = rc.Room()
    subscribed: asyncio.Future[rc.Track] = asyncio.get_running_loop().create_future()

    def on_track(track: rc.Track, publication: rc.RemoteTrackPublication,
                 participant: rc.RemoteParticipant) -> None:
        wanted = not args.source or participant.identity == args.source
        if wanted and track.kind == rc.TrackKind.KIND_AUDIO and not subscribed.done():
            log.info("recording %s from %s", publication.sid, participant.identity)
            subscribed.set_result(track)

    room.on("track_subscribed", on_track)
    await room.connect(args.url, token(args, "wav-recorder"))
    try:
        for participant in room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.track is not None:
                    on_track(publication.track, publication, participant)
        track = await asyncio.wait_for(subscribed, args.wait)
        stream = rc.AudioStream(track, sample_rate=args.rate, num_channels=1)
        wanted = int(args.seconds * args.rate)
        written = 0
        with wave.open(args.out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(args.rate)
            async for event in stream:
                frame = event.frame
                take = min(frame.samples_per_channel, wanted - written)
                wav.writeframes(bytes(frame.data.cast("B"))[: take * 2])
                written += take
                if written >= wanted:
                    break
        await stream.aclose()
        log.info("wrote %.1f s to %s", written / args.rate, args.out)
    finally:
        await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main())

"""Publish a WAV file (16-bit PCM) as a microphone track, in real time, then leave.

    python examples/publish_wav.py speech.wav --room demo --identity player [--loop]
"""

from __future__ import annotations

import asyncio
import logging
import wave

from _common import parser, token

from roost import client as rc

log = logging.getLogger("publish_wav")


async def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("wav")
    p.add_argument("--loop", action="store_true", help="play the file until interrupted")
    args = p.parse_args()
    with wave.open(args.wav, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise SystemExit("only 16-bit PCM WAV files are supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = wav.readframes(wav.getnframes())

    room = rc.Room()
    await room.connect(args.url, token(args, "wav-player"))
    source = rc.AudioSource(rate, channels)
    track = rc.LocalAudioTrack.create_audio_track("wav", source)
    publication = await room.local_participant.publish_track(
        track, rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_MICROPHONE))
    log.info("publishing %s (%d Hz, %d ch) as %s", args.wav, rate, channels, publication.sid)
    chunk = rate // 100  # 10 ms frames
    step = chunk * channels * 2
    try:
        while True:
            for offset in range(0, len(pcm), step):
                data = pcm[offset : offset + step]
                samples = len(data) // (2 * channels)
                if samples:
                    await source.capture_frame(rc.AudioFrame(data, rate, channels, samples))
            if not args.loop:
                break
        await source.wait_for_playout()
        await asyncio.sleep(0.5)  # let the last packets leave
    finally:
        await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main())

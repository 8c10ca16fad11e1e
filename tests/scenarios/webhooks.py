"""One participant's whole life in a room, for the webhook and metrics tests to observe."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from livekit import api, rtc
from tests.helpers.sdk import Rooms
from tests.helpers.wait import until_async


async def _feed(source: rtc.AudioSource) -> None:
    """10 ms frames of quiet noise so RTP flows for the published track."""
    frame = rtc.AudioFrame.create(48000, 1, 480)
    samples = frame.data
    for i in range(len(samples)):
        samples[i] = (i * 37) % 200 - 100
    while True:
        await source.capture_frame(frame)


async def _scrape_until(srv: dict[str, str], needles: list[str], timeout: float = 10.0) -> str:
    """GET /metrics until its text contains every one of `needles`; returns the last text."""
    url = srv["url"].replace("ws://", "http://", 1) + "/metrics"
    text = ""
    async with aiohttp.ClientSession() as http:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            async with http.get(url) as resp:
                text = await resp.text()
            if all(needle in text for needle in needles):
                break
            await asyncio.sleep(0.1)
    return text


async def _until_listed(srv: dict[str, str], room_name: str, tracks: int) -> None:
    """Wait until the server lists `tracks` published tracks of Alice's (RoomService)."""
    async with api.LiveKitAPI(srv["url"], srv["api_key"], srv["api_secret"]) as lk:
        async def listed() -> bool:
            info = await lk.room.get_participant(
                api.RoomParticipantIdentity(room=room_name, identity="alice"))
            return len(info.tracks) == tracks

        await until_async(listed, 10, f"{tracks} of alice's tracks listed", interval=0.1)


async def publish_then_leave(srv: dict[str, str], room_name: str,
                             scrape_for: list[str] | None = None) -> dict[str, Any]:
    """Alice joins, publishes a microphone, sends one data packet, unpublishes and leaves.

    With `scrape_for`, /metrics is read (until it contains all those lines) while Alice is in.
    """
    rooms = Rooms(srv)
    result: dict[str, Any] = {}
    try:
        alice = await rooms.join("alice", room_name)
        result["participant"] = alice.local_participant.sid
        result["room"] = await asyncio.wait_for(alice.sid, 5)
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await asyncio.wait_for(
            alice.local_participant.publish_track(track, options), 15
        )
        result["track"] = publication.sid
        feeding = asyncio.ensure_future(_feed(source))
        try:
            await alice.local_participant.publish_data(b"hello", reliable=True)
            if scrape_for:
                result["metrics"] = await _scrape_until(srv, scrape_for)
            else:  # the track is published (its media arrived) before it is unpublished
                await _until_listed(srv, room_name, 1)
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
        await asyncio.wait_for(alice.local_participant.unpublish_track(publication.sid), 10)
        await _until_listed(srv, room_name, 0)  # unpublished before alice leaves
        await asyncio.wait_for(alice.disconnect(), 10)
        return result
    finally:
        await rooms.close()

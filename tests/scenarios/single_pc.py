"""Single peer connection (v1): more subscribed tracks than the client offered sections for."""

from __future__ import annotations

from typing import Any

from livekit import rtc
from tests.scenarios.media_flow import publishers_reach_one_listener

TONES = {"p1": 440.0, "p2": 550.0, "p3": 660.0, "p4": 770.0}


async def _received_audio(room: rtc.Room) -> dict[str, Any]:
    """The section (mid) of each audio stream the SDK receives, per peer connection: on v1
    everything is on the one (publisher) connection."""
    stats = await room.get_rtc_stats()

    def mids(group: Any) -> list[str]:
        return sorted(s.inbound_rtp.inbound.mid for s in group
                      if s.WhichOneof("stats") == "inbound_rtp"
                      and s.inbound_rtp.stream.kind == "audio")

    return {"audio_mids": mids(stats.publisher_stats),
            "second_pc_audio_mids": mids(stats.subscriber_stats)}


async def four_publishers_reach_one_subscriber(srv: dict[str, str]) -> dict[str, Any]:
    """Four audio publishers; the subscriber gets all four tracks and hears each tone.

    The result has the pitch heard from each publisher and the sections they arrived on."""
    return await publishers_reach_one_listener(
        srv, "four", "sub", TONES, subscribe_timeout=20, heard_timeout=15,
        observe=_received_audio)

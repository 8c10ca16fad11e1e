"""Official-SDK scenarios about network paths: relay-only ICE through roost's TURN."""

from __future__ import annotations

from typing import Any

from livekit import rtc
from livekit.rtc._proto import room_pb2, stats_pb2
from tests.helpers.sdk import EventLog, Rooms
from tests.scenarios.media import TONE_HZ, TRACK_EVENTS, _background, _tone, heard_pitch

SAMPLE_RATE = 48_000
RELAY_ONLY = rtc.RoomOptions(rtc_config=rtc.RtcConfiguration(
    ice_transport_type=room_pb2.IceTransportType.TRANSPORT_RELAY))


async def nominated_pairs(room: rtc.Room) -> list[tuple[Any, Any]]:
    """(local, remote) IceCandidateStats of every nominated pair of the room's PCs, read
    once from the SDK's stats."""
    stats = await room.get_rtc_stats()
    out = []
    for group in (stats.publisher_stats, stats.subscriber_stats):
        candidates = {}
        for s in group:
            kind = s.WhichOneof("stats")
            if kind in ("local_candidate", "remote_candidate"):
                entry = getattr(s, kind)
                candidates[entry.rtc.id] = entry.candidate
        for s in group:
            if s.WhichOneof("stats") == "candidate_pair":
                pair = s.candidate_pair.candidate_pair
                if pair.nominated and pair.local_candidate_id in candidates \
                        and pair.remote_candidate_id in candidates:
                    out.append((candidates[pair.local_candidate_id],
                                candidates[pair.remote_candidate_id]))
    return out


def local_kind(candidate: Any) -> tuple[str, str]:
    """(candidate type, relay protocol for relay candidates, else transport)."""
    kind = stats_pb2.IceCandidateType.Name(candidate.candidate_type).lower()
    if kind == "relay":
        name = stats_pb2.IceServerTransportProtocol.Name(candidate.relay_protocol)
        return kind, name.removeprefix("TRANSPORT_").lower()
    return kind, candidate.protocol


async def relay_only_tone_is_heard(srv: dict[str, str], room_name: str) -> dict[str, Any]:
    """Alice and Bob both allow relay candidates only: Bob hears Alice's 440 Hz anyway."""
    return await tone_is_heard(srv, room_name, relay_only=True)


async def tone_is_heard(srv: dict[str, str], room_name: str,
                        relay_only: bool = False) -> dict[str, Any]:
    """Bob hears Alice's 440 Hz; each side's nominated local candidates and remote addresses."""
    options = RELAY_ONLY if relay_only else None
    rooms = Rooms(srv)
    try:
        alice = await rooms.join("alice", room_name, options=options)
        bob = rooms.new()
        bob_events = EventLog(bob, *TRACK_EVENTS, label="bob")
        await rooms.join("bob", room_name, room=bob, options=options)
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        await alice.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        async with _background(_tone(source)):
            remote, _, _ = await bob_events.wait("track_subscribed", timeout=20)
            pitch = await heard_pitch(remote)
        assert abs(pitch - TONE_HZ) < 15, f"heard {pitch:.0f} Hz"
        pairs = {"alice": await nominated_pairs(alice), "bob": await nominated_pairs(bob)}
        both = pairs["alice"] + pairs["bob"]
        return {"pitch_hz": pitch,
                **{who: [local_kind(local) for local, _ in found] for who, found in pairs.items()},
                "remote_addresses": sorted({remote.address for _, remote in both}),
                "remote_ports": sorted({remote.port for _, remote in both})}
    finally:
        await rooms.close()

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


async def selected_local_types(room: rtc.Room) -> list[tuple[str, str]]:
    """(candidate type, relay protocol or transport) of each nominated pair's local side."""
    stats = await room.get_rtc_stats()
    out = []
    for group in (stats.publisher_stats, stats.subscriber_stats):
        local = {s.local_candidate.rtc.id: s.local_candidate.candidate for s in group
                 if s.WhichOneof("stats") == "local_candidate"}
        for s in group:
            if s.WhichOneof("stats") != "candidate_pair":
                continue
            pair = s.candidate_pair.candidate_pair
            if pair.nominated and pair.local_candidate_id in local:
                candidate = local[pair.local_candidate_id]
                kind = stats_pb2.IceCandidateType.Name(candidate.candidate_type).lower()
                if kind == "relay":
                    name = stats_pb2.IceServerTransportProtocol.Name(candidate.relay_protocol)
                    out.append((kind, name.removeprefix("TRANSPORT_").lower()))
                else:
                    out.append((kind, candidate.protocol))
    return out


async def selected_remote_addresses(room: rtc.Room, ports: bool = False) -> list[Any]:
    """The server addresses (or ports) the nominated pairs use."""
    stats = await room.get_rtc_stats()
    out = []
    for group in (stats.publisher_stats, stats.subscriber_stats):
        remote = {s.remote_candidate.rtc.id: s.remote_candidate.candidate for s in group
                  if s.WhichOneof("stats") == "remote_candidate"}
        for s in group:
            if s.WhichOneof("stats") == "candidate_pair":
                pair = s.candidate_pair.candidate_pair
                if pair.nominated and pair.remote_candidate_id in remote:
                    candidate = remote[pair.remote_candidate_id]
                    out.append(candidate.port if ports else candidate.address)
    return out


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
        return {"pitch_hz": pitch, "alice": await selected_local_types(alice),
                "bob": await selected_local_types(bob),
                "remote_addresses": sorted({*await selected_remote_addresses(alice),
                                            *await selected_remote_addresses(bob)}),
                "remote_ports": sorted({*await selected_remote_addresses(alice, ports=True),
                                        *await selected_remote_addresses(bob, ports=True)})}
    finally:
        await rooms.close()

"""Every limit roost enforces, in one place, with LiveKit's defaults."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass
class Limits:
    """Size and count limits; defaults follow livekit-server's `limit.*` settings."""

    max_metadata_size: int = 512 * KIB
    max_attributes_size: int = 64 * KIB
    max_name_length: int = 256
    max_room_name_length: int = 256
    max_participant_identity_length: int = 256
    signal_message_size: int = 2 * MIB
    api_body_size: int = 10 * MIB
    max_join_request_size: int = 1 * MIB
    max_pending_tracks: int = 20
    data_packet_size: int = 64 * KIB * 4  # SCTP messages the server accepts from a client
    signal_send_queue: int = 1024  # SignalResponses queued per session before it is closed
    data_send_queue_bytes: int = 16 * MIB  # reliable bytes buffered per receiver
    sdp_size: int = 256 * KIB

    def attributes_size(self, attributes: dict[str, str]) -> int:
        """Byte size of an attribute map as LiveKit counts it (keys plus values)."""
        return sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())

    def check_metadata(self, metadata: str) -> bool:
        return len(metadata.encode()) <= self.max_metadata_size

    def check_name(self, name: str) -> bool:
        return len(name) <= self.max_name_length

    def check_attributes(self, attributes: dict[str, str]) -> bool:
        return self.attributes_size(attributes) <= self.max_attributes_size

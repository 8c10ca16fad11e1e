"""Permission guards: one call at the top of every RoomService method, as livekit-server does."""

from __future__ import annotations

from roost.api.errors import permission_denied
from roost.auth import Claims


def ensure_create(claims: Claims | None) -> None:
    """CreateRoom / DeleteRoom need `roomCreate`."""
    if claims is None or not claims.video.room_create:
        raise permission_denied()


def ensure_list(claims: Claims | None) -> None:
    """ListRooms needs `roomList`."""
    if claims is None or not claims.video.room_list:
        raise permission_denied()


def ensure_admin(claims: Claims | None, room: str) -> None:
    """Participant and room operations need `roomAdmin` for exactly this room."""
    if claims is None or not claims.video.room_admin or claims.video.room != room:
        raise permission_denied()


def ensure_destination(claims: Claims | None, room: str, destination: str) -> None:
    """Forward/Move need `roomAdmin` for the source room and `destinationRoom` for the target."""
    ensure_admin(claims, room)
    assert claims is not None
    if claims.video.destination_room != destination:
        raise permission_denied()

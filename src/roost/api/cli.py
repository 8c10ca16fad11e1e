"""`roost room ...` commands: RoomService calls over HTTP (stub)."""

from __future__ import annotations

import argparse
from typing import Any


def add_room_commands(subparsers: Any) -> None:
    """Add the `room` command group to the `roost` parser."""
    room = subparsers.add_parser("room", help="manage rooms through the RoomService API")
    room.set_defaults(func=_todo)


def _todo(args: argparse.Namespace) -> int:
    print("roost room: not implemented yet")
    return 1

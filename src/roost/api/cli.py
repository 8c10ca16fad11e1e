"""`roost room list|create|delete|participants`: RoomService calls over Twirp from the shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, TypeVar

import aiohttp
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import models
from livekit.protocol import room as room_pb

from roost.auth import VideoGrant, issue_token
from roost.config import DEV_KEYS

DEFAULT_URL = "http://127.0.0.1:7880"
TIMEOUT = 10.0

M = TypeVar("M", bound=Message)


class APIError(Exception):
    """A call failed; the message is what the user sees."""


class RoomClient:
    """A minimal Twirp client for livekit.RoomService (protobuf bodies)."""

    def __init__(self, url: str, api_key: str, api_secret: str) -> None:
        if url.startswith("ws"):
            url = "http" + url[2:]
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.api_secret = api_secret

    def token(self, grant: VideoGrant) -> str:
        return issue_token(self.api_key, self.api_secret, video=grant, valid_for=600)

    async def call(self, method: str, request: Message, response: type[M],
                   grant: VideoGrant) -> M:
        headers = {"Authorization": f"Bearer {self.token(grant)}",
                   "Content-Type": "application/protobuf"}
        url = f"{self.url}/twirp/livekit.RoomService/{method}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as s, \
                    s.post(url, data=request.SerializeToString(), headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise APIError(_describe_error(resp.status, body))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise APIError(f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc
        try:
            return response.FromString(body)
        except DecodeError as exc:
            raise APIError(f"{method}: undecodable response from server") from exc


def _describe_error(status: int, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return f"HTTP {status}: {text}"
    if isinstance(data, dict) and "code" in data:
        return f"{data['code']}: {data.get('msg', '')} (HTTP {status})"
    return f"HTTP {status}: {text}"


# -- argparse wiring -------------------------------------------------------------------------
def add_room_commands(subparsers: Any) -> None:
    """Add the `room` command group to the `roost` parser."""
    room = subparsers.add_parser("room", help="manage rooms through the RoomService API")
    commands = room.add_subparsers(dest="room_cmd", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help)
        p.add_argument("--url", help=f"server URL (env LIVEKIT_URL, default {DEFAULT_URL})")
        p.add_argument("--api-key", help="API key (env LIVEKIT_API_KEY, default devkey)")
        p.add_argument("--api-secret", help="API secret (env LIVEKIT_API_SECRET, default: "
                       "the dev secret for the dev key)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(func=run_room_command)
        return p

    ls = command("list", "list rooms")
    ls.add_argument("names", nargs="*", help="only these rooms")
    create = command("create", "create a room (returns it if it exists)")
    create.add_argument("name")
    create.add_argument("--empty-timeout", type=int, default=0, help="seconds")
    create.add_argument("--departure-timeout", type=int, default=0, help="seconds")
    create.add_argument("--max-participants", type=int, default=0)
    create.add_argument("--metadata", default="")
    delete = command("delete", "delete a room, disconnecting everyone in it")
    delete.add_argument("name")
    participants = command("participants", "list the participants of a room")
    participants.add_argument("name")


def client_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> RoomClient:
    """Flags first, then LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET, then dev keys."""
    env = dict(os.environ) if env is None else env
    url = args.url or env.get("LIVEKIT_URL") or DEFAULT_URL
    key = args.api_key or env.get("LIVEKIT_API_KEY") or "devkey"
    secret = args.api_secret or env.get("LIVEKIT_API_SECRET") or DEV_KEYS.get(key)
    if not secret:
        raise APIError(f"no secret for API key {key!r}: pass --api-secret "
                       "or set LIVEKIT_API_SECRET")
    return RoomClient(url, key, secret)


def run_room_command(args: argparse.Namespace) -> int:
    """Entry point for every `roost room …` command; returns the exit status."""
    try:
        client = client_from_args(args)
        out = asyncio.run(_dispatch(client, args))
    except APIError as exc:
        print(f"roost room {args.room_cmd}: {exc}", file=sys.stderr)
        return 1
    if out:
        print(out)
    return 0


async def _dispatch(client: RoomClient, args: argparse.Namespace) -> str:
    cmd = args.room_cmd
    if cmd == "list":
        rooms = await client.call("ListRooms", room_pb.ListRoomsRequest(names=args.names),
                                  room_pb.ListRoomsResponse, VideoGrant(room_list=True))
        return _json(list(rooms.rooms)) if args.json else rooms_table(list(rooms.rooms))
    if cmd == "create":
        req = room_pb.CreateRoomRequest(
            name=args.name, empty_timeout=args.empty_timeout,
            departure_timeout=args.departure_timeout,
            max_participants=args.max_participants, metadata=args.metadata)
        room = await client.call("CreateRoom", req, models.Room, VideoGrant(room_create=True))
        return _json(room) if args.json else rooms_table([room])
    if cmd == "delete":
        await client.call("DeleteRoom", room_pb.DeleteRoomRequest(room=args.name),
                          room_pb.DeleteRoomResponse, VideoGrant(room_create=True))
        return json.dumps({"deleted": args.name}) if args.json else f"deleted room {args.name}"
    if cmd == "participants":
        resp = await client.call(
            "ListParticipants", room_pb.ListParticipantsRequest(room=args.name),
            room_pb.ListParticipantsResponse, VideoGrant(room_admin=True, room=args.name))
        people = list(resp.participants)
        return _json(people) if args.json else participants_table(people)
    raise APIError(f"unknown command {cmd!r}")


# -- output ------------------------------------------------------------------------------------
def _json(value: Message | list[Any]) -> str:
    """One message as a JSON object, a list as an array (proto field names)."""
    def as_dict(m: Message) -> dict[str, Any]:
        return json_format.MessageToDict(m, preserving_proto_field_name=True)

    if isinstance(value, list):
        return json.dumps([as_dict(m) for m in value], indent=2)
    return json.dumps(as_dict(value), indent=2)


def _enum_name(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def _short(text: str, width: int = 40) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def rooms_table(rooms: list[models.Room]) -> str:
    if not rooms:
        return "no rooms"
    rows = [[r.name, r.sid, str(r.num_participants), str(r.num_publishers),
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.creation_time)),
             _short(r.metadata)] for r in rooms]
    return table(["NAME", "SID", "PARTICIPANTS", "PUBLISHERS", "CREATED", "METADATA"], rows)


def participants_table(participants: list[models.ParticipantInfo]) -> str:
    if not participants:
        return "no participants"
    info = models.ParticipantInfo
    rows = [[p.identity, p.sid, _short(p.name, 24), _enum_name(info.State, p.state),
             _enum_name(info.Kind, p.kind),
             str(len(p.tracks)), _short(p.metadata, 30)] for p in participants]
    return table(["IDENTITY", "SID", "NAME", "STATE", "KIND", "TRACKS", "METADATA"], rows)

"""Shared command-line handling for the examples: server URL and an access token."""

from __future__ import annotations

import argparse
import logging
import os

from roost.auth import VideoGrant, issue_token


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with --url, --room, --identity, --token, --api-key, --api-secret."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", default=os.environ.get("LIVEKIT_URL", "ws://127.0.0.1:7880"))
    p.add_argument("--room", default="demo")
    p.add_argument("--identity", default="")
    p.add_argument("--token", default=os.environ.get("LIVEKIT_TOKEN", ""),
                   help="an access token (otherwise one is signed with the API key)")
    p.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY", "devkey"))
    p.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET", "secret"))
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def token(args: argparse.Namespace, default_identity: str) -> str:
    """The given token, or one for --identity in --room signed with the API key."""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    if args.token:
        return str(args.token)
    grant = VideoGrant(room_join=True, room=args.room, can_update_own_metadata=True)
    return issue_token(args.api_key, args.api_secret, identity=args.identity or default_identity,
                       video=grant)

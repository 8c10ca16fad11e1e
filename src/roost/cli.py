"""`roost serve | token create | room …`: the command line, shaped like livekit-server and lk."""

from __future__ import annotations

import argparse
import asyncio
import sys

from roost import __version__
from roost.config import DEV_KEYS, ConfigError, Settings, from_env, load_file, parse_keys
from roost.ids import RoomName


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if args.config:
        load_file(settings, args.config)
    from_env(settings)
    if args.keys:
        settings.keys.update(parse_keys(args.keys))
    if args.dev:
        settings.development = True
        if not settings.keys:
            settings.keys.update(DEV_KEYS)
        if not args.bind and settings.bind_addresses == ["0.0.0.0"]:
            settings.bind_addresses = ["127.0.0.1"]
        settings.log_level = "debug" if args.log_level is None else settings.log_level
    if args.bind:
        settings.bind_addresses = list(dict.fromkeys(args.bind))
    if args.port:
        settings.port = args.port
    if args.node_ip:
        settings.rtc.node_ip = args.node_ip
    if getattr(args, "udp_port", None) is not None:
        settings.rtc.udp_port = args.udp_port
    if getattr(args, "tcp_port", None) is not None:
        settings.rtc.tcp_port = args.tcp_port
    if args.log_level:
        settings.log_level = args.log_level
    if getattr(args, "single_pc", None) is not None:
        settings.rtc.single_peer_connection = args.single_pc
    if getattr(args, "redis_host", None):
        settings.redis.address = args.redis_host
    if getattr(args, "webhook_url", None):
        settings.webhook.urls = [*settings.webhook.urls, *args.webhook_url]
    settings.validate()
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 2
    from roost import logs
    from roost.edge.server import RoostServer

    logs.setup(settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        await RoostServer(settings).serve_forever()

    asyncio.run(main())
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from roost.auth import VideoGrant, issue_token

    keys = parse_keys(args.keys) if args.keys else {}
    api_key = args.api_key or next(iter(keys), None) or "devkey"
    secret = args.api_secret or keys.get(api_key) or DEV_KEYS.get(api_key)
    if not secret:
        print("roost: no secret for that API key (use --api-secret)", file=sys.stderr)
        return 2
    grant = VideoGrant(room=RoomName(args.room or ""), room_join=bool(args.room))
    for g in args.grant or []:
        name, _, value = g.partition("=")
        by_name = {k.lower(): v for k, v in VideoGrant._JSON.items()}
        attr = by_name.get(name.replace("_", "").lower())
        if attr is None:
            print(f"roost: unknown grant {name!r}", file=sys.stderr)
            return 2
        if attr == "can_publish_sources":
            grant.can_publish_sources = [s for s in value.split(",") if s]
        elif attr in ("room", "destination_room"):
            setattr(grant, attr, value)
        else:
            setattr(grant, attr, value.lower() not in ("0", "false", "no"))
    attributes = {}
    for a in args.attributes or []:
        k, _, v = a.partition("=")
        attributes[k] = v
    print(issue_token(api_key, secret, identity=args.identity or "", video=grant,
                      name=args.name or "", metadata=args.metadata or "",
                      attributes=attributes, kind=args.kind or 0,
                      valid_for=_duration(args.valid_for)))
    return 0


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roost", description=__doc__)
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--dev", action="store_true",
                       help="development mode: keys 'devkey: secret', bind 127.0.0.1, debug logs")
    serve.add_argument("--bind", action="append", help="address to listen on (repeatable)")
    serve.add_argument("--port", type=int, help="HTTP/WebSocket port (default 7880)")
    serve.add_argument("--keys", help="API keys as 'key: secret' pairs (or env LIVEKIT_KEYS)")
    serve.add_argument("--config", help="livekit.yaml-style config file")
    serve.add_argument("--node-ip", help="IP address advertised in ICE candidates")
    serve.add_argument("--udp-port", type=int,
                       help="one UDP port shared by every peer connection (rtc.udp_port)")
    serve.add_argument("--tcp-port", type=int,
                       help="ICE over TCP on this port (rtc.tcp_port)")
    serve.add_argument("--redis-host", help="Redis address for multi-node mode")
    serve.add_argument("--webhook-url", action="append", help="webhook URL (repeatable)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--single-pc", action=argparse.BooleanOptionalAction, default=None,
                       help="serve /rtc/v1, one peer connection per participant (default on)")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="access tokens").add_subparsers(dest="token_cmd",
                                                                           required=True)
    create = token.add_parser("create", help="print a signed access token")
    create.add_argument("--room")
    create.add_argument("--identity")
    create.add_argument("--name")
    create.add_argument("--metadata")
    create.add_argument("--kind", choices=["standard", "agent", "ingress", "egress", "sip"])
    create.add_argument("--attributes", action="append", metavar="K=V")
    create.add_argument("--grant", action="append", metavar="NAME=VALUE",
                        help="video grant, e.g. canPublish=false, roomAdmin=true")
    create.add_argument("--valid-for", default="6h", help="lifetime, e.g. 30m, 6h (default 6h)")
    create.add_argument("--api-key")
    create.add_argument("--api-secret")
    create.add_argument("--keys", help="'key: secret' pairs to pick the secret from")
    create.set_defaults(func=cmd_token)

    from roost.api.cli import add_room_commands

    add_room_commands(sub)

    from roost.check import add_check_command

    add_check_command(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))

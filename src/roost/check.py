"""`roost check URL`: a connectivity self-test run from a client machine against a roost (or
livekit) server: HTTP, `/rtc` signalling, then one ICE connectivity check per media path
(ICE/UDP, ICE/TCP, TURN/UDP, TURN/TCP, TURN/TLS), printed as a PASS/FAIL/SKIP table.

`run_checks` is the core (tests call it directly); `add_check_command` wires it into the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import ssl
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from roost.check_ice import (
    IceCredentials,
    ProbeResult,
    TurnUrl,
    tcp_check,
    tls_context,
    turn_check,
    udp_check,
)
from roost.check_signal import ServerIce, SignalClient, SignalError, http_base, probe_http

Status = Literal["PASS", "FAIL", "SKIP"]
MEDIA_CHECKS = ("ICE/UDP", "ICE/TCP", "TURN/UDP", "TURN/TCP", "TURN/TLS")
DEFAULT_ROOM = "roost-check"


@dataclass
class CheckRow:
    """One line of the report: a check against one target."""

    check: str
    status: Status
    reason: str
    rtt_ms: float | None = None
    target: str = ""


@dataclass
class CheckReport:
    """All rows of one run; `exit_code` is what `roost check` exits with."""

    url: str
    rows: list[CheckRow] = field(default_factory=list)

    def add(self, check: str, status: Status, reason: str, rtt_ms: float | None = None,
            target: str = "") -> CheckRow:
        row = CheckRow(check, status, reason,
                       None if rtt_ms is None else round(rtt_ms, 1), target)
        self.rows.append(row)
        return row

    def add_probe(self, check: str, target: str, result: ProbeResult) -> CheckRow:
        return self.add(check, "PASS" if result.passed else "FAIL", result.reason,
                        result.rtt_ms, target)

    def rows_of(self, check: str) -> list[CheckRow]:
        return [row for row in self.rows if row.check == check]

    @property
    def signalling_ok(self) -> bool:
        return any(row.status == "PASS" for row in self.rows_of("signalling"))

    @property
    def media_ok(self) -> bool:
        return any(row.status == "PASS" for row in self.rows if row.check in MEDIA_CHECKS)

    @property
    def exit_code(self) -> int:
        return 0 if self.signalling_ok and self.media_ok else 1

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "ok": self.exit_code == 0,
                           "rows": [asdict(row) for row in self.rows]}, indent=2)

    def table(self) -> str:
        header = ("CHECK", "TARGET", "RESULT", "RTT", "REASON")
        lines = [(row.check, row.target, row.status,
                  "" if row.rtt_ms is None else f"{row.rtt_ms:.1f} ms", row.reason)
                 for row in self.rows]
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]

        def render(cells: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells[:4], widths, strict=True)) \
                + "  " + cells[4]

        verdict = "OK" if self.exit_code == 0 else (
            "FAILED: signalling" if not self.signalling_ok else "FAILED: no media path works")
        return "\n".join([f"roost check {self.url}", render(header),
                          *(render(line) for line in lines), verdict])


async def run_checks(url: str, token: str, *, timeout: float = 5.0, ca_file: str | None = None,
                     insecure: bool = False) -> CheckReport:
    """Run every check against `url` with `token`; network failures become FAIL rows."""
    report = CheckReport(url)
    try:
        base = http_base(url)
    except ValueError as exc:
        report.add("HTTP", "FAIL", str(exc))
        report.add("signalling", "SKIP", "no usable URL")
        return report
    tls = tls_context(ca_file, insecure)  # for wss:// and turns:
    client = SignalClient(base, token, tls)
    try:
        try:
            report.add("HTTP", "PASS", "GET / answered",
                       await probe_http(base, client.session, timeout), target=base)
        except SignalError as exc:
            report.add("HTTP", "FAIL", str(exc), target=base)
        ice = await _signal(report, client, base, timeout)
        if ice is not None:
            await _media(report, client, ice, timeout, tls)
        else:
            for check in MEDIA_CHECKS:
                report.add(check, "SKIP", "signalling failed")
    finally:
        await client.close(timeout)
    return report


async def _signal(report: CheckReport, client: SignalClient, base: str,
                  timeout: float) -> ServerIce | None:
    """The signalling row: join, then read the server's ICE (None when that failed)."""
    started = time.monotonic()
    target = base.replace("http", "ws", 1) + "/rtc"
    try:
        join = await client.join(timeout)
        rtt = (time.monotonic() - started) * 1000
        ice = await client.server_ice(timeout)
    except SignalError as exc:
        report.add("signalling", "FAIL", str(exc), target=target)
        return None
    server = join.server_info
    who = f"{server.version or '?'} (protocol {server.protocol})" if server.version else "?"
    report.add("signalling", "PASS",
               f"joined {join.room.name!r} as {join.participant.identity!r}; server {who}; "
               f"{len(ice.candidates)} ICE candidate(s)", rtt, target)
    return ice


async def _media(report: CheckReport, client: SignalClient, ice: ServerIce, timeout: float,
                 tls: ssl.SSLContext) -> None:
    """ICE/UDP, ICE/TCP and TURN rows, all probes concurrently, rows in a stable order."""
    creds = IceCredentials(ice.ufrag, ice.pwd, controlling=ice.ice_lite)
    assert client.join_response is not None
    udp, tcp = ice.udp(), ice.tcp_passive()
    turns: list[TurnUrl] = []
    bad_urls: list[str] = []
    for server in client.join_response.ice_servers:
        for raw in server.urls:
            try:
                parsed = TurnUrl.parse(raw, server.username, server.credential)
            except ValueError as exc:
                bad_urls.append(str(exc))
                continue
            if parsed is not None:
                turns.append(parsed)

    planned: list[tuple[str, str, asyncio.Future[ProbeResult]]] = []
    for candidate in udp:
        planned.append(("ICE/UDP", f"{candidate.host}:{candidate.port} {candidate.type}",
                        asyncio.ensure_future(udp_check(candidate, creds, timeout))))
    for candidate in tcp:
        planned.append(("ICE/TCP", f"{candidate.host}:{candidate.port} tcp passive",
                        asyncio.ensure_future(tcp_check(candidate, creds, timeout))))
    for turn in turns:
        planned.append((turn.kind, turn.url,
                        asyncio.ensure_future(turn_check(turn, udp, creds, timeout, tls))))
    await asyncio.gather(*(future for _, _, future in planned))

    for check in MEDIA_CHECKS:
        mine = [(target, future.result()) for name, target, future in planned if name == check]
        for target, result in mine:
            report.add_probe(check, target, result)
        if mine:
            continue
        if check == "ICE/UDP":
            report.add(check, "SKIP", "server offers no UDP candidate")
        elif check == "ICE/TCP":
            report.add(check, "SKIP", "server offers no TCP candidate (rtc.tcp_port not set)")
        elif not turns:
            reason = "server offers no TURN" + (f" ({'; '.join(bad_urls)})" if bad_urls else "")
            report.add(check, "SKIP", reason)
        else:
            report.add(check, "SKIP", f"server offers no {check.split('/')[1]} TURN URL")
        if check.startswith("TURN") and turns and not udp:
            report.rows[-1].reason += " (and no UDP candidate to relay to)"


# -- command line -------------------------------------------------------------------------
def add_check_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `roost check` on the top-level subparsers."""
    check = sub.add_parser("check", help="connectivity self-test against a server",
                           description=__doc__.split("\n\n")[0] if __doc__ else None)
    check.add_argument("url", help="server URL, e.g. ws://host:7880 or wss://host")
    check.add_argument("--api-key", help="API key to sign a token with (default devkey)")
    check.add_argument("--api-secret", help="its secret (default: the dev secret)")
    check.add_argument("--token", help="use this access token instead of signing one")
    check.add_argument("--room", default=DEFAULT_ROOM, help=f"room to join ({DEFAULT_ROOM})")
    check.add_argument("--identity", help="identity to join as (default roost-check-<random>)")
    check.add_argument("--timeout", type=float, default=5.0,
                       help="seconds allowed for each step (default 5)")
    check.add_argument("--ca-file", help="trust this CA for wss:// and turns:")
    check.add_argument("--insecure", action="store_true",
                       help="do not verify TLS certificates")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=cmd_check)


def _token(args: argparse.Namespace) -> str | None:
    from roost.auth import VideoGrant, issue_token
    from roost.config import DEV_KEYS

    api_key = args.api_key or "devkey"
    secret = args.api_secret or DEV_KEYS.get(api_key)
    if not secret:
        return None
    identity = args.identity or f"roost-check-{secrets.token_hex(3)}"
    grant = VideoGrant(room=args.room, room_join=True, hidden=True, can_publish=False,
                       can_publish_data=False)
    return issue_token(api_key, secret, identity=identity, video=grant, name="roost check",
                       valid_for=600)


def cmd_check(args: argparse.Namespace) -> int:
    """`roost check`: 0 when signalling and at least one media path pass, 1 if not, 2 usage."""
    if args.token and (args.api_key or args.api_secret):
        print("roost: give either --token or --api-key/--api-secret", file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print("roost: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        http_base(args.url)
    except ValueError as exc:
        print(f"roost: {exc}", file=sys.stderr)
        return 2
    if args.ca_file and not os.path.isfile(args.ca_file):
        print(f"roost: no such CA file: {args.ca_file}", file=sys.stderr)
        return 2
    token = args.token or _token(args)
    if token is None:
        print("roost: no secret for that API key (use --api-secret)", file=sys.stderr)
        return 2
    report = asyncio.run(run_checks(args.url, token, timeout=args.timeout,
                                    ca_file=args.ca_file, insecure=args.insecure))
    print(report.to_json() if args.json else report.table())
    return report.exit_code

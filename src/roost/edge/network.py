"""Where media listens and what it announces: bind addresses, node_ip, the external address.

`media_plan(settings)` turns `bind_addresses`, `rtc.node_ip` and the discovered external
address into the concrete addresses ICE binds and the extra ones it only announces (a
server behind 1:1 NAT: a cloud VM, a Docker bridge with published ports).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from aioice import stun
from livekit.protocol import rtc

from roost.config import Settings
from roost.media.ice import expand_addresses
from roost.media.icemux import IceMux

log = logging.getLogger("roost.network")

STUN_TIMEOUT = 2.0  # seconds per STUN server when discovering the external address
STUN_ATTEMPTS = 3


@dataclass
class MediaPlan:
    """The addresses media binds and the ones it announces besides them."""

    bind: list[str] = field(default_factory=list)
    announce: list[str] = field(default_factory=list)


def local_addresses() -> set[str]:
    """Every address of this host's interfaces, loopback included."""
    return set(expand_addresses(["0.0.0.0", "::"]))


def media_plan(settings: Settings, external_ip: str = "") -> MediaPlan:
    """Concrete bind addresses (wildcards expanded) and node_ip when it is not one of ours."""
    wanted = list(settings.bind_addresses or ["0.0.0.0"])
    bind = expand_addresses(wanted)
    announce: list[str] = []
    node_ip = settings.rtc.node_ip or external_ip
    if node_ip:
        node_ip = str(ipaddress.ip_address(node_ip))
        if node_ip in local_addresses():
            if node_ip not in bind:
                bind.insert(0, node_ip)
        else:
            announce.append(node_ip)  # 1:1 NAT: packets to it arrive on a bound address
    if not bind:
        bind = ["127.0.0.1"]
    return MediaPlan(bind=bind, announce=announce)


def _stun_address(server: str) -> tuple[str, int]:
    text = server.removeprefix("stun:").split("?", 1)[0]
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, "3478"
    return host.strip("[]"), int(port)


async def discover_external_ip(servers: list[str], timeout: float = STUN_TIMEOUT) -> str:
    """Ask the STUN servers what address this host's packets come from; "" when none says."""
    loop = asyncio.get_running_loop()
    for server in servers:
        try:
            host, port = _stun_address(server)
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (OSError, ValueError) as exc:
            log.warning("use_external_ip: cannot resolve STUN server %s: %s", server, exc)
            continue
        family, _, _, _, addr = infos[0]
        answer = await _binding(loop, family, (str(addr[0]), int(addr[1])), timeout)
        if answer:
            log.info("use_external_ip: %s says this node is %s", server, answer)
            return answer
        log.warning("use_external_ip: no answer from STUN server %s", server)
    return ""


async def _binding(loop: asyncio.AbstractEventLoop, family: int,
                   addr: tuple[str, int], timeout: float) -> str:
    answer: asyncio.Future[str] = loop.create_future()
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)

    class Asker(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, src: tuple[str, int]) -> None:
            with contextlib.suppress(ValueError, KeyError):
                message = stun.parse_message(data)
                if message.transaction_id == request.transaction_id and not answer.done():
                    mapped = message.attributes.get("XOR-MAPPED-ADDRESS") or \
                        message.attributes.get("MAPPED-ADDRESS")
                    if mapped:
                        answer.set_result(str(mapped[0]))

    transport, _ = await loop.create_datagram_endpoint(Asker, family=family)
    try:
        for _ in range(STUN_ATTEMPTS):
            transport.sendto(bytes(request), addr)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(answer), timeout / STUN_ATTEMPTS)
        return ""
    finally:
        transport.close()


async def start_ice_mux(settings: Settings) -> IceMux:
    """Bind the shared ICE sockets (if configured) and learn what to announce."""
    external = ""
    if settings.rtc.use_external_ip and not settings.rtc.node_ip:
        external = await discover_external_ip(settings.rtc.stun_servers)
        if not external:
            log.warning("use_external_ip: no STUN server answered; announcing the bound "
                        "addresses only")
    plan = media_plan(settings, external)
    mux = IceMux(addresses=plan.bind, udp_port=settings.rtc.udp_port,
                 tcp_port=settings.rtc.tcp_port, advertised=plan.announce)
    await mux.start()
    return mux


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class IceServerList:
    """The `ice_servers` of a JoinResponse: STUN/TURN from config plus roost's own TURN."""

    def __init__(self, settings: Settings, mux: IceMux, credentials: Any = None) -> None:
        self.settings = settings
        self.credentials = credentials  # roost.turn.TurnCredentials when TURN is enabled
        public = mux.advertised[0] if mux.advertised else next(
            (a for a in mux.addresses if not a.startswith("127.") and a != "::1"),
            mux.addresses[0] if mux.addresses else "127.0.0.1")
        self.turn_host = settings.turn.domain or public
        self.turn_plain_host = public if not settings.turn.domain else settings.turn.domain

    def static(self) -> list[rtc.ICEServer]:
        out: list[rtc.ICEServer] = []
        stun_urls = [s if s.startswith("stun:") else f"stun:{s}"
                     for s in self.settings.rtc.stun_servers]
        if stun_urls:
            out.append(rtc.ICEServer(urls=stun_urls))
        for entry in self.settings.rtc.turn_servers:
            host, port = str(entry.get("host", "")), int(entry.get("port", 3478) or 3478)
            if not host:
                continue
            protocol = str(entry.get("protocol", "udp")).lower()
            if protocol == "tls":
                url = f"turns:{_url_host(host)}:{port}?transport=tcp"
            else:
                url = f"turn:{_url_host(host)}:{port}?transport={protocol}"
            out.append(rtc.ICEServer(urls=[url], username=str(entry.get("username", "")),
                                     credential=str(entry.get("credential", ""))))
        return out

    def for_participant(self, participant_sid: str) -> list[rtc.ICEServer]:
        """What one participant is told: its own short-lived TURN credential included."""
        out = self.static()
        turn = self.settings.turn
        if turn.enabled and self.credentials is not None:
            urls = []
            if turn.udp_port:
                urls.append(f"turn:{_url_host(self.turn_plain_host)}:{turn.udp_port}"
                            "?transport=udp")
            if turn.tcp_port:
                urls.append(f"turn:{_url_host(self.turn_plain_host)}:{turn.tcp_port}"
                            "?transport=tcp")
            if turn.tls_port:
                port = 443 if turn.external_tls else turn.tls_port
                urls.append(f"turns:{_url_host(self.turn_host)}:{port}?transport=tcp")
            if urls:
                username, password = self.credentials.issue(participant_sid)
                out.insert(0, rtc.ICEServer(urls=urls, username=username,
                                            credential=password))
        return out

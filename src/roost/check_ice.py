"""The media-path probes of `roost check`: one ICE connectivity check (a STUN Binding request
signed with the server's ice-pwd) sent straight over UDP, over TCP with RFC 4571 framing, or
through a TURN relay allocated with aioice's TURN client.

Every probe returns a `ProbeResult` (passed, reason, RTT); none raises for network failures.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from aioice import stun
from aioice.candidate import Candidate, candidate_priority
from aioice.turn import TurnTransport, create_turn_endpoint

Address = tuple[str, int]


@dataclass(frozen=True)
class IceCredentials:
    """What a Binding request to the server needs: its ufrag/pwd, ours, and our role."""

    remote_ufrag: str
    remote_pwd: str
    local_ufrag: str = field(default_factory=lambda: secrets.token_hex(4))
    controlling: bool = False  # the server offered, so it controls unless it is ICE-lite
    tie_breaker: int = field(default_factory=lambda: secrets.randbits(63))


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: `rtt_ms` is set when it passed."""

    passed: bool
    reason: str
    rtt_ms: float | None = None


@dataclass(frozen=True)
class TurnUrl:
    """One `turn:` / `turns:` URL of an ICEServer, with the credentials it came with."""

    url: str
    host: str
    port: int
    transport: str  # "udp" | "tcp"
    tls: bool
    username: str
    credential: str

    @property
    def kind(self) -> str:
        """The check name: TURN/UDP, TURN/TCP or TURN/TLS."""
        return "TURN/TLS" if self.tls else f"TURN/{self.transport.upper()}"

    @classmethod
    def parse(cls, url: str, username: str = "", credential: str = "") -> TurnUrl | None:
        """Parse `turn:host[:port][?transport=udp|tcp]`; None for stun: and other schemes."""
        scheme, sep, rest = url.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ("turn", "turns"):
            return None
        hostport, _, query = rest.lstrip("/").partition("?")
        transport = parse_qs(query).get("transport", ["tcp" if scheme == "turns" else "udp"])[0]
        if transport.lower() not in ("udp", "tcp"):
            raise ValueError(f"{url}: unknown transport {transport!r}")
        if hostport.startswith("["):  # [IPv6]:port
            host, _, tail = hostport[1:].partition("]")
            port_text = tail.removeprefix(":")
        else:
            host, _, port_text = hostport.partition(":")
        if not host:
            raise ValueError(f"{url}: no host")
        try:
            port = int(port_text) if port_text else (5349 if scheme == "turns" else 3478)
        except ValueError:
            raise ValueError(f"{url}: bad port {port_text!r}") from None
        return cls(url, host, port, transport.lower(), scheme == "turns", username, credential)


def binding_request(creds: IceCredentials) -> stun.Message:
    """An ICE connectivity check (RFC 8445 §7.2.2) as the server expects it from us."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{creds.remote_ufrag}:{creds.local_ufrag}"
    request.attributes["PRIORITY"] = candidate_priority(1, "prflx")
    role = "ICE-CONTROLLING" if creds.controlling else "ICE-CONTROLLED"
    request.attributes[role] = creds.tie_breaker
    request.add_message_integrity(creds.remote_pwd.encode("utf8"))
    return request


class StunExchange:
    """Matches STUN responses to their transactions, whatever carries the bytes."""

    def __init__(self, send: Callable[[bytes, Address], None]) -> None:
        self._send = send
        self._transactions: dict[bytes, stun.Transaction] = {}
        self.failure: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def send_stun(self, message: stun.Message, addr: Address) -> None:
        self._send(bytes(message), addr)

    def feed(self, data: bytes, addr: Address) -> None:
        """One datagram (or de-framed TCP message) from the network."""
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        transaction = self._transactions.get(message.transaction_id)
        if transaction is not None and message.message_class in (
                stun.Class.RESPONSE, stun.Class.ERROR):
            transaction.response_received(message, addr)

    def fail(self, reason: str) -> None:
        """The transport broke (ICMP unreachable, TCP reset, TURN send refused)."""
        if not self.failure.done():
            self.failure.set_result(reason)

    async def check(self, creds: IceCredentials, addr: Address, timeout: float) -> ProbeResult:
        """Send one Binding request to `addr`, wait for the signed success response."""
        request = binding_request(creds)
        transaction = stun.Transaction(request, addr, self)
        self._transactions[request.transaction_id] = transaction
        started = time.monotonic()
        run = asyncio.ensure_future(transaction.run())
        waiting: set[asyncio.Future[object]] = {run, self.failure}  # type: ignore[arg-type]
        try:
            done, _ = await asyncio.wait(waiting, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if run in done:
                response, _ = run.result()
            elif self.failure in done:
                return ProbeResult(False, self.failure.result())
            else:
                return ProbeResult(False, f"no Binding response within {timeout:g} s")
        except stun.TransactionFailed as exc:
            return ProbeResult(False, f"Binding refused: {_stun_error(exc.response)}")
        except stun.TransactionTimeout:
            return ProbeResult(False, "no Binding response (retransmissions exhausted)")
        finally:
            run.cancel()
            del self._transactions[request.transaction_id]
        rtt = (time.monotonic() - started) * 1000
        if not response.check_message_integrity(creds.remote_pwd.encode("utf8")):
            return ProbeResult(False, "Binding response not signed with the server's ice-pwd")
        mapped = response.attributes.get("XOR-MAPPED-ADDRESS")
        seen = f" (server saw us as {mapped[0]}:{mapped[1]})" if mapped else ""
        return ProbeResult(True, f"Binding success{seen}", rtt)


def _stun_error(message: stun.Message) -> str:
    code = message.attributes.get("ERROR-CODE")
    return f"{code[0]} {code[1]}" if code else "error response without ERROR-CODE"


def _network_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening there)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); try --ca-file or --insecure"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, PermissionError):
        return f"this machine's firewall refused to send ({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- ICE over UDP -----------------------------------------------------------------------
class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.exchange: StunExchange | None = None

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.exchange is not None:
            self.exchange.feed(data, addr)

    def error_received(self, exc: Exception) -> None:
        if self.exchange is not None:
            self.exchange.fail(f"UDP error: {_network_error(exc)}")


async def udp_check(candidate: Candidate, creds: IceCredentials, timeout: float) -> ProbeResult:
    """ICE/UDP: a Binding request from a fresh UDP socket to the server's candidate."""
    loop = asyncio.get_running_loop()
    addr = (candidate.host, candidate.port)
    try:
        transport, protocol = await loop.create_datagram_endpoint(_UdpProtocol,
                                                                  remote_addr=addr)
    except OSError as exc:
        return ProbeResult(False, f"cannot open a UDP socket to it: {_network_error(exc)}")
    try:
        protocol.exchange = StunExchange(lambda data, _addr: transport.sendto(data))
        return await protocol.exchange.check(creds, addr, timeout)
    finally:
        transport.close()


# -- ICE over TCP (RFC 6544 passive candidates, RFC 4571 framing) ------------------------
async def tcp_check(candidate: Candidate, creds: IceCredentials, timeout: float) -> ProbeResult:
    """ICE/TCP: connect to a passive candidate, send the framed Binding request."""
    addr = (candidate.host, candidate.port)
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), timeout)
    except (OSError, TimeoutError) as exc:
        return ProbeResult(False, f"TCP connect failed: {_network_error(exc)}")

    def send(data: bytes, _addr: Address) -> None:
        writer.write(struct.pack("!H", len(data)) + data)

    exchange = StunExchange(send)

    async def read_frames() -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                exchange.feed(await reader.readexactly(length), addr)
        except asyncio.IncompleteReadError:
            exchange.fail("the server closed the TCP connection")
        except OSError as exc:
            exchange.fail(f"TCP error: {_network_error(exc)}")

    reading = asyncio.create_task(read_frames())
    try:
        remaining = max(0.1, timeout - (time.monotonic() - started))
        return await exchange.check(creds, addr, remaining)
    finally:
        reading.cancel()
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (OSError, TimeoutError):
            pass


# -- through a TURN relay ----------------------------------------------------------------
class _RelayReceiver(asyncio.DatagramProtocol):
    """What the TURN transport delivers relayed datagrams to."""

    def __init__(self) -> None:
        self.exchange: StunExchange | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.exchange is not None:
            self.exchange.feed(data, addr)

    def error_received(self, exc: Exception) -> None:
        if self.exchange is not None:
            reason = (f"relay refused to reach the peer: {_stun_error(exc.response)}"
                      if isinstance(exc, stun.TransactionFailed) else
                      f"relay send failed: {_network_error(exc)}")
            self.exchange.fail(reason)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def tls_context(ca_file: str | None, insecure: bool) -> ssl.SSLContext:
    """The client TLS context for wss:// and turns: (a custom CA, or no verification)."""
    context = ssl.create_default_context(cafile=ca_file)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def turn_check(turn: TurnUrl, targets: list[Candidate], creds: IceCredentials,
                     timeout: float, tls: ssl.SSLContext | None) -> ProbeResult:
    """Allocate a relay on `turn`, then send the Binding request through it to each UDP
    candidate of the server in turn (the channel binding installs the permission)."""
    started = time.monotonic()
    try:
        transport, receiver = await asyncio.wait_for(create_turn_endpoint(
            _RelayReceiver, (turn.host, turn.port), turn.username or None,
            turn.credential or None, ssl=tls if turn.tls else None,
            transport="tcp" if turn.tls else turn.transport), timeout)
    except stun.TransactionFailed as exc:
        return ProbeResult(False, f"allocation refused: {_stun_error(exc.response)}")
    except stun.TransactionTimeout:
        return ProbeResult(False, "no answer to the Allocate request")
    except (OSError, TimeoutError, ConnectionError) as exc:
        return ProbeResult(False, f"cannot allocate a relay: {_network_error(exc)}")
    try:
        relayed = transport.get_extra_info("sockname")
        failures = []
        for candidate in targets:
            receiver.exchange = StunExchange(transport.sendto)
            remaining = max(0.1, timeout - (time.monotonic() - started))
            result = await receiver.exchange.check(creds, (candidate.host, candidate.port),
                                                   remaining)
            if result.passed:
                via = f"relay {relayed[0]}:{relayed[1]} → " if relayed else ""
                return ProbeResult(True, f"{via}{candidate.host}:{candidate.port}: "
                                   f"{result.reason}", result.rtt_ms)
            failures.append(f"{candidate.host}:{candidate.port}: {result.reason}")
        return ProbeResult(False, "; ".join(failures) or "no server UDP candidate to relay to")
    finally:
        await _close_relay(transport, receiver)


async def _close_relay(transport: TurnTransport, receiver: _RelayReceiver) -> None:
    """Delete the allocation (bounded: a vanished TURN server must not hang us)."""
    transport.close()
    try:
        await asyncio.wait_for(asyncio.shield(receiver.closed), 2.0)
    except TimeoutError:
        pass

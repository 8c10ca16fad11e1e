"""One settings object: defaults, a livekit.yaml-style file, environment, then flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from livekit.protocol import room as room_pb

from roost.limits import Limits

DEV_KEYS = {"devkey": "secret"}
MIN_SECRET_LENGTH = 32


class ConfigError(ValueError):
    """A setting is missing or invalid; the message says which and why."""


@dataclass
class RTCConfig:
    """Media transport settings (`rtc.*` in livekit.yaml)."""

    node_ip: str = ""  # the address advertised in candidates instead of the bind address
    # rtc.udp_port: every peer connection of the process shares one UDP socket per address
    # (demultiplexed by ICE ufrag, then by remote address). 0 = off.
    udp_port: int = 0
    # rtc.tcp_port: passive ICE-TCP host candidates on one listening port (RFC 6544). 0 = off.
    tcp_port: int = 0
    port_range_start: int = 0  # 0 = ephemeral UDP ports (used when udp_port is 0)
    port_range_end: int = 0
    use_external_ip: bool = False  # discover node_ip through stun_servers at start-up
    use_ice_lite: bool = False
    # rtc.congestion_control.allow_pause: video a subscriber's bandwidth cannot carry even
    # at the lowest layer is paused (StreamStateUpdate). Off, as in livekit-server: such
    # video stays on its lowest layer unless the client asks with subscriber_allow_pause.
    allow_pause: bool = False
    # rtc.congestion_control.enabled: transport-wide congestion control (on by default, as
    # in livekit-server): towards subscribers transport-cc is offered, every packet stamped,
    # TWCC feedback drives the estimate, the layer choice and the probes; publishers'
    # video negotiates transport-cc and gets roost's TWCC feedback. Off: REMB only.
    congestion_control: bool = True
    # rtc.congestion_control.publisher_max_bitrate (roost's; livekit.yaml has none): the REMB
    # every publisher is sent each second, in bits/s. A ceiling on the publisher's own
    # estimate: with congestion control its video also negotiates transport-cc and the
    # estimate follows roost's TWCC feedback below it (libwebrtc takes REMB as a cap then).
    publisher_max_bitrate: int = 10_000_000
    # /rtc/v1 (and /rtc?join_request=): one peer connection per participant. Off: 404, so
    # clients fall back to /rtc with two peer connections.
    single_peer_connection: bool = True
    stun_servers: list[str] = field(default_factory=list)  # "host:port", for use_external_ip
    # rtc.turn_servers: external TURN servers handed to clients, as livekit.yaml writes them
    # (host, port, protocol udp|tcp|tls, username, credential).
    turn_servers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TurnConfig:
    """The embedded TURN server (`turn.*` in livekit.yaml, plus roost's `tcp_port`)."""

    enabled: bool = False
    domain: str = ""  # the host name clients are given in turn:/turns: URLs
    udp_port: int = 3478  # TURN over UDP (0 = off)
    tcp_port: int = 0  # TURN over plain TCP (roost's; 0 = off)
    tls_port: int = 0  # TURN over TLS (livekit's default when enabled is 5349)
    cert_file: str = ""
    key_file: str = ""
    # external_tls: a load balancer terminates TLS in front of roost and forwards plain TCP
    # to tls_port; clients are still told turns:domain:443.
    external_tls: bool = False
    relay_range_start: int = 30000  # 0 and 0: the kernel picks each relay port
    relay_range_end: int = 40000
    # limits (roost's): allocations per user (credential) and in all, relayed bytes/s per
    # allocation, and the longest lifetime a client may ask for.
    max_allocations_per_user: int = 10
    max_allocations: int = 1000
    allocation_bandwidth: int = 5_000_000  # bytes per second, 0 = unlimited
    max_lifetime: int = 3600
    credential_ttl: int = 86400  # seconds a participant's TURN credential stays valid


@dataclass
class RoomConfig:
    """Room defaults (`room.*` in livekit.yaml)."""

    auto_create: bool = True
    empty_timeout: int = 300
    departure_timeout: int = 20
    max_participants: int = 0
    enable_remote_unmute: bool = False
    # named RoomConfigurations (`roomPreset` in a token, `room_preset` in CreateRoom), each
    # in protobuf JSON field names, e.g. {agents: [{agent_name: x}], max_participants: 4}
    room_configurations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def presets(self) -> dict[str, room_pb.RoomConfiguration]:
        """`room_configurations` as RoomConfiguration messages (checked by validate)."""
        out = {}
        for name, value in self.room_configurations.items():
            conf = room_pb.RoomConfiguration()
            json_format.ParseDict(value or {}, conf, ignore_unknown_fields=True)
            out[str(name)] = conf
        return out


@dataclass
class AgentsConfig:
    """Agent dispatch (`agents.*`, roost's; livekit-server has no such section)."""

    enabled: bool = True  # serve /agent and dispatch jobs
    availability_timeout: float = 10.0  # seconds a worker has to answer an offer
    # beyond livekit: a job whose worker's connection is lost is offered to another worker
    # once its agent has left the room (a worker that reconnects keeps its jobs)
    reassign_orphaned_jobs: bool = True
    # beyond livekit: a job whose agent has not joined this many seconds after assignment is
    # ended and its worker told (0 = wait forever, as livekit does)
    job_join_timeout: float = 30.0
    # agent_job_started / agent_job_ended webhooks (in the protocol; livekit never sends them)
    job_webhooks: bool = True


@dataclass
class WebhookConfig:
    """Webhook targets (`webhook.*`)."""

    api_key: str = ""
    urls: list[str] = field(default_factory=list)


@dataclass
class RedisConfig:
    """Redis connection (`redis.*`); empty address means single-node, in memory."""

    address: str = ""
    username: str = ""
    password: str = ""
    db: int = 0
    sentinel_master_name: str = ""
    sentinel_addresses: list[str] = field(default_factory=list)


@dataclass
class Settings:
    """Everything `roost serve` needs to run."""

    port: int = 7880
    bind_addresses: list[str] = field(default_factory=lambda: ["0.0.0.0"])
    keys: dict[str, str] = field(default_factory=dict)
    development: bool = False
    log_level: str = "info"
    ping_interval: int = 5
    ping_timeout: int = 15
    join_timeout: float = 60.0  # seconds for a participant to become ACTIVE
    drain_timeout: float = 10.0
    region: str = ""
    compose_api_key: str = ""  # x-simli-api-key for /compose/*; --dev accepts "simli-dev-key"
    rtc: RTCConfig = field(default_factory=RTCConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    room: RoomConfig = field(default_factory=RoomConfig)
    limit: Limits = field(default_factory=Limits)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)

    def validate(self) -> None:
        """Refuse settings that would start an insecure or broken server."""
        if not self.keys:
            raise ConfigError(
                "no API keys configured: pass --keys 'key: secret', set LIVEKIT_KEYS, "
                "or use --dev"
            )
        if not self.development:
            for key, secret in self.keys.items():
                if len(secret) < MIN_SECRET_LENGTH:
                    raise ConfigError(
                        f"secret for key {key!r} is {len(secret)} characters; at least "
                        f"{MIN_SECRET_LENGTH} are required outside --dev mode"
                    )
        if not 0 < self.port < 65536:
            raise ConfigError(f"port {self.port} is out of range")
        rtc, turn = self.rtc, self.turn
        for name, port in (("rtc.udp_port", rtc.udp_port), ("rtc.tcp_port", rtc.tcp_port),
                           ("turn.udp_port", turn.udp_port), ("turn.tcp_port", turn.tcp_port),
                           ("turn.tls_port", turn.tls_port)):
            if not 0 <= int(port) < 65536:
                raise ConfigError(f"{name} {port} is out of range")
        if rtc.use_external_ip and not rtc.stun_servers and not rtc.node_ip:
            raise ConfigError("rtc.use_external_ip needs rtc.stun_servers (host:port) to ask")
        try:
            self.room.presets()
        except (json_format.ParseError, TypeError, AttributeError) as exc:
            raise ConfigError(f"room.room_configurations: {exc}") from exc
        if turn.enabled:
            if turn.tls_port and not turn.external_tls and not (turn.cert_file and turn.key_file):
                raise ConfigError("turn.tls_port needs turn.cert_file and turn.key_file "
                                  "(or turn.external_tls when a load balancer terminates TLS)")
            relay = (turn.relay_range_start, turn.relay_range_end)
            if relay != (0, 0) and not 0 < relay[0] <= relay[1] < 65536:
                raise ConfigError("turn.relay_range_start/end must be a port range (0/0: any)")
        hook = self.webhook
        if hook.urls and hook.api_key not in self.keys and (hook.api_key or len(self.keys) > 1):
            raise ConfigError("webhook.api_key must name one of the API keys (it may be left "
                              "out only when there is a single key)")

    @property
    def media_addresses(self) -> list[str]:
        """Addresses ICE binds when no shared mux is running (node_ip first, wildcards kept)."""
        out: list[str] = []
        if self.rtc.node_ip:
            out.append(self.rtc.node_ip)
        for addr in self.bind_addresses:
            if addr not in out:
                out.append(addr)  # wildcards are expanded by media.ice.expand_addresses
        if not out:
            out.append("127.0.0.1")
        return out


def parse_keys(text: str) -> dict[str, str]:
    """Parse `"key: secret"` pairs separated by newlines or commas."""
    keys: dict[str, str] = {}
    for part in text.replace(",", "\n").splitlines():
        part = part.strip()
        if not part:
            continue
        if ":" not in part:
            raise ConfigError(f"key pair {part!r} must look like 'key: secret'")
        k, v = part.split(":", 1)
        if not k.strip() or not v.strip():
            raise ConfigError(f"key pair {part!r} has an empty key or secret")
        keys[k.strip()] = v.strip()
    return keys


def _apply(obj: Any, values: dict[str, Any], where: str) -> None:
    names = {f.name for f in fields(obj)}
    for key, value in values.items():
        if key not in names:
            continue  # livekit.yaml has many keys roost does not use
        current = getattr(obj, key)
        if hasattr(current, "__dataclass_fields__") and isinstance(value, dict):
            _apply(current, value, f"{where}.{key}")
        else:
            setattr(obj, key, value)


def load_file(settings: Settings, path: str | Path) -> None:
    """Merge a livekit.yaml-style file into `settings`."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    keys = data.pop("keys", None)
    if isinstance(keys, dict):
        settings.keys.update({str(k): str(v) for k, v in keys.items()})
    rtc = data.get("rtc")
    if isinstance(rtc, dict):
        rtc = dict(rtc)
        congestion = rtc.pop("congestion_control", None)
        if isinstance(congestion, dict):  # livekit.yaml's rtc.congestion_control section
            if "allow_pause" in congestion:
                rtc["allow_pause"] = bool(congestion["allow_pause"])
            if "enabled" in congestion:
                rtc["congestion_control"] = bool(congestion["enabled"])
            if "publisher_max_bitrate" in congestion:
                value = congestion["publisher_max_bitrate"]
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise ConfigError("rtc.congestion_control.publisher_max_bitrate must be "
                                      f"a positive number of bits/s, not {value!r}")
                rtc["publisher_max_bitrate"] = value
        elif congestion is not None:
            rtc["congestion_control"] = congestion
        udp = rtc.get("udp_port")
        if isinstance(udp, dict):  # livekit.yaml also allows udp_port: {start, end}
            rtc.pop("udp_port")
            if udp.get("start") and udp.get("end") and udp["start"] != udp["end"]:
                rtc.setdefault("port_range_start", int(udp["start"]))
                rtc.setdefault("port_range_end", int(udp["end"]))
            else:
                rtc["udp_port"] = int(udp.get("start") or udp.get("end") or 0)
        data["rtc"] = rtc
    _apply(settings, data, "config")


def from_env(settings: Settings, env: dict[str, str] | None = None) -> None:
    """Apply LIVEKIT_KEYS / LIVEKIT_CONFIG style environment variables."""
    env = dict(os.environ) if env is None else env
    if env.get("LIVEKIT_CONFIG"):
        data = yaml.safe_load(env["LIVEKIT_CONFIG"]) or {}
        if isinstance(data, dict):
            _apply(settings, data, "LIVEKIT_CONFIG")
    if env.get("LIVEKIT_KEYS"):
        settings.keys.update(parse_keys(env["LIVEKIT_KEYS"]))
    if env.get("REDIS_HOST"):
        settings.redis.address = env["REDIS_HOST"]
    if env.get("REDIS_PASSWORD"):
        settings.redis.password = env["REDIS_PASSWORD"]

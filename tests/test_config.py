"""Settings from a livekit.yaml-style file: the keys roost maps."""

from pathlib import Path

import pytest

from roost.config import ConfigError, Settings, load_file


def test_livekit_yaml_keys_reach_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "livekit.yaml"
    path.write_text(
        "port: 7990\n"
        "keys:\n  k1: a-secret-that-is-long-enough-for-production-use\n"
        "rtc:\n  node_ip: 127.0.0.2\n  udp_port: 7882\n"
        "  congestion_control:\n    allow_pause: true\n"
        "room:\n  auto_create: false\n  empty_timeout: 12\n"
    )
    settings = Settings()
    load_file(settings, path)
    settings.validate()
    assert settings.port == 7990
    assert settings.keys == {"k1": "a-secret-that-is-long-enough-for-production-use"}
    assert settings.rtc.node_ip == "127.0.0.2"
    assert settings.rtc.udp_port == 7882  # one shared socket, not a range of one port
    assert (settings.rtc.port_range_start, settings.rtc.port_range_end) == (0, 0)
    assert settings.rtc.allow_pause is True
    assert settings.room.auto_create is False and settings.room.empty_timeout == 12


def test_bandwidth_pauses_are_off_by_default_as_in_livekit() -> None:
    assert Settings().rtc.allow_pause is False


def test_short_secrets_are_refused_outside_dev_mode() -> None:
    settings = Settings(keys={"k": "short"})
    with pytest.raises(ConfigError, match="at least 32"):
        settings.validate()
    settings.development = True
    settings.validate()


def test_turn_block_and_tcp_port_reach_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "livekit.yaml"
    path.write_text(
        "keys:\n  k1: a-secret-that-is-long-enough-for-production-use\n"
        "rtc:\n  tcp_port: 7881\n  udp_port: {start: 50000, end: 50100}\n"
        "turn:\n  enabled: true\n  domain: turn.example.test\n  udp_port: 3478\n"
        "  tls_port: 5349\n  external_tls: true\n  relay_range_start: 31000\n"
        "  relay_range_end: 31010\n"
    )
    settings = Settings()
    load_file(settings, path)
    settings.validate()
    assert settings.rtc.tcp_port == 7881 and settings.rtc.udp_port == 0
    assert (settings.rtc.port_range_start, settings.rtc.port_range_end) == (50000, 50100)
    turn = settings.turn
    assert turn.enabled and turn.domain == "turn.example.test" and turn.tls_port == 5349
    assert (turn.relay_range_start, turn.relay_range_end) == (31000, 31010)


def test_turn_tls_without_a_certificate_is_refused() -> None:
    settings = Settings(keys={"k": "x" * 40})
    settings.turn.enabled = True
    settings.turn.tls_port = 5349
    with pytest.raises(ConfigError, match="cert_file"):
        settings.validate()


def test_the_publisher_remb_ceiling_comes_from_congestion_control(tmp_path: Path) -> None:
    assert Settings().rtc.publisher_max_bitrate == 10_000_000
    path = tmp_path / "livekit.yaml"
    path.write_text("rtc:\n  congestion_control:\n    enabled: true\n"
                    "    publisher_max_bitrate: 2500000\n")
    settings = Settings()
    load_file(settings, path)
    assert settings.rtc.congestion_control is True
    assert settings.rtc.publisher_max_bitrate == 2_500_000
    assert Settings().rtc.congestion_control is True  # on by default, as in livekit-server
    path.write_text("rtc:\n  congestion_control:\n    enabled: false\n")
    settings = Settings()
    load_file(settings, path)
    assert settings.rtc.congestion_control is False
    path.write_text("rtc:\n  congestion_control:\n    publisher_max_bitrate: fast\n")
    with pytest.raises(ConfigError, match="publisher_max_bitrate"):
        load_file(Settings(), path)

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
    assert (settings.rtc.port_range_start, settings.rtc.port_range_end) == (7882, 7882)
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

"""Settings come from SWAPLINE_* variables; a bad value is refused with its name."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from service.config import ConfigError, SentinelURL, Settings, sentinel_url, unknown, warnings


def test_defaults_need_nothing() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.redis_url) == ("127.0.0.1", 8000, None)
    assert settings.data_dir == Path("data") and settings.rules_dir == Path("rules")


def test_values_are_read_and_typed(tiny_geoip: Path) -> None:
    settings = Settings.from_env({
        "SWAPLINE_PORT": "9000", "SWAPLINE_WORKERS": "4", "SWAPLINE_REDIS_URL": "redis://r:6379/0",
        "SWAPLINE_REDIS_CLUSTER": "yes", "SWAPLINE_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32",
        "SWAPLINE_RELOAD_RULES": "off", "SWAPLINE_GEOIP_DB": str(tiny_geoip),
        "SWAPLINE_HOST": "swapline.internal", "SWAPLINE_LOG_LEVEL": "WARNING",
        "SWAPLINE_PUBLIC_URL": "https://swapline.example.com/", "SWAPLINE_STORE_DEADLINE_MS": "750",
    })
    assert settings.store_deadline_ms == 750
    assert (settings.port, settings.workers, settings.redis_cluster, settings.reload_rules) == (9000, 4, True, False)
    assert settings.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
    assert settings.geoip_db == tiny_geoip
    assert (settings.host, settings.log_level, settings.public_url) == (
        "swapline.internal", "warning", "https://swapline.example.com")
    assert Settings.from_env({"SWAPLINE_REDIS_URL": "unix:///run/valkey.sock"}).redis_url == "unix:///run/valkey.sock"


@pytest.mark.parametrize(("name", "value"), [
    ("SWAPLINE_PORT", "eighty"), ("SWAPLINE_PORT", "70000"), ("SWAPLINE_PORT", "0"), ("SWAPLINE_WORKERS", "-1"),
    ("SWAPLINE_WORKERS", "0"), ("SWAPLINE_VISIT_DAYS", "-3"), ("SWAPLINE_REDIS_CLUSTER", "maybe"),
    ("SWAPLINE_TRUSTED_PROXIES", "10.0.0.0/33"), ("SWAPLINE_LEASE_RETENTION_DAYS", "-1"),
    ("SWAPLINE_LOG_LEVEL", "loud"), ("SWAPLINE_REDIS_URL", "nonsense"), ("SWAPLINE_REDIS_URL", "http://r:6379"),
    ("SWAPLINE_GEOIP_DB", "/no/such/City.mmdb"), ("SWAPLINE_HOST", "not..a..host"),
    ("SWAPLINE_PUBLIC_URL", "swapline.example.com"), ("SWAPLINE_REDIS_URL", "redis+sentinel://s1:26379"),
    ("SWAPLINE_REDIS_URL", "redis+sentinel://s1:0/mymaster"), ("SWAPLINE_REDIS_URL", "redis+sentinel://s1,/mymaster"),
    ("SWAPLINE_REDIS_URL", "redis+sentinel://s1/mymaster/first"), ("SWAPLINE_REDIS_URL", "redis+sentinel://s1/a/1/2"),
    ("SWAPLINE_REDIS_URL", "redis+sentinel://s1/mymaster?db=1"), ("SWAPLINE_REDIS_URL", "redis://127.0.0.1:abc/0"),
    ("SWAPLINE_REDIS_URL", "redis://127.0.0.1:6379/abc"), ("SWAPLINE_GEOIP_DB", "/etc/passwd"),
    ("SWAPLINE_LEASE_RETENTION_DAYS", "0"), ("SWAPLINE_SECRET", "short"), ("SWAPLINE_SECRET", "ab" * 16),
    ("SWAPLINE_STORE_DEADLINE_MS", "0"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_a_secret_of_a_few_characters_over_and_over_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"SWAPLINE_SECRET": "ab" * 16})
    assert str(refused.value) == ("SWAPLINE_SECRET has only 2 different characters, and can be guessed: make one "
                                  "with `openssl rand -hex 32`")
    assert Settings.from_env({"SWAPLINE_SECRET": "0123456789abcdef"}).secret == "0123456789abcdef"


def test_a_sentinel_url_names_the_sentinels_the_primary_and_the_passwords() -> None:
    url = "redis+sentinel://:p%40ss@s1,s2:26380,[2001:db8::7]:5000/mymaster/2?sentinel_password=sentinel-secret"
    assert Settings.from_env({"SWAPLINE_REDIS_URL": url}).redis_url == url
    assert sentinel_url(url) == SentinelURL((("s1", 26379), ("s2", 26380), ("2001:db8::7", 5000)), "mymaster", 2,
                                            None, "p@ss", "sentinel-secret")
    assert sentinel_url("redis+sentinel://app:pw@10.0.0.5/store") == SentinelURL((("10.0.0.5", 26379),), "store", 0,
                                                                                 "app", "pw", None)


def test_a_bad_sentinel_url_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"SWAPLINE_REDIS_URL": "redis+sentinel://:hunter2@s1:99999/mymaster"})
    assert "s1:99999" in str(refused.value) and "hunter2" not in str(refused.value)


def test_sentinel_and_cluster_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="SWAPLINE_REDIS_CLUSTER"):
        Settings.from_env({"SWAPLINE_REDIS_URL": "redis+sentinel://s1/mymaster", "SWAPLINE_REDIS_CLUSTER": "1"})


def test_misspelt_variables_are_named_with_the_setting_meant() -> None:
    """A misspelt name would be ignored without a word: SWAPLINE_REDIS=… would leave the
    service on a private embedded store."""
    assert unknown({"SWAPLINE_WORKER": "4", "SWAPLINE_REDIS": "redis://r/0", "SWAPLINE_SECRETS": "s",
                    "SWAPLINE_PORT": "9000", "SWAPLINE_ZZZZZZ": "1", "HOME": "/root"}) == [
        "SWAPLINE_REDIS is not a Swapline setting and is ignored: did you mean SWAPLINE_REDIS_URL?",
        "SWAPLINE_SECRETS is not a Swapline setting and is ignored: did you mean SWAPLINE_SECRET?",
        "SWAPLINE_WORKER is not a Swapline setting and is ignored: did you mean SWAPLINE_WORKERS?",
        "SWAPLINE_ZZZZZZ is not a Swapline setting and is ignored",
    ]


def test_trusting_every_address_is_warned_of() -> None:
    trusting = Settings.from_env({"SWAPLINE_TRUSTED_PROXIES": "10.0.0.0/24, 0.0.0.0/0, ::/0"})
    assert [warning.partition(": ")[0] for warning in warnings(trusting, {})] == [
        "SWAPLINE_TRUSTED_PROXIES has 0.0.0.0/0", "SWAPLINE_TRUSTED_PROXIES has ::/0"]
    assert warnings(Settings.from_env({"SWAPLINE_TRUSTED_PROXIES": "10.0.0.0/24"}), {}) == []

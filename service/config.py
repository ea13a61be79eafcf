"""Settings: every knob is a `SWAPLINE_*` environment variable with an embedded default.

The README lists them in one table; `Settings.from_env` is the only place that reads them.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import maxminddb

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Where the operators' pages answer unless SWAPLINE_OPERATOR_NETWORKS says otherwise: this
# host and the private networks (RFC 1918, IPv6 unique local), never the internet.
OWN_NETWORKS = tuple(ipaddress.ip_network(cidr) for cidr in (
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


class ConfigError(ValueError):
    """A `SWAPLINE_*` variable has a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    rules_dir: Path = Path("rules")
    data_dir: Path = Path("data")
    redis_url: str | None = None
    redis_cluster: bool = False
    geoip_db: Path | None = None
    trusted_proxies: tuple[Network, ...] = ()
    operator_networks: tuple[Network, ...] = OWN_NETWORKS  # the home page and /metrics (service.front.operators)
    secret: str | None = None
    reload_rules: bool = True
    log_level: str = "info"
    log_json: bool = True  # one JSON object a line, for log collectors; 0 for plain text
    lease_retention_days: int = 30  # lease history and pool statistics kept for late calls and audits
    attribution_days: int = 30  # a visitor's own records kept after their first exposure (service.tracking.retention)
    report_days: int = 400  # daily counters and call records kept for the reports
    visit_days: int = 7  # a visit's record and journey kept after the visit's start, for late calls
    log_days: int = 90  # the call and conversion log (service.tracking.journal)
    webhook_timeout: int = 10  # seconds a webhook endpoint has to answer
    webhook_retry_ms: int = 1000  # the first wait before a failed delivery is retried; then doubled
    export_every: int = 3600  # seconds between uploads of offline conversions (integrations.exports)
    alert_every: int = 60  # seconds between checks of the sites' alerts
    # The ad platforms' APIs: other addresses only for a test's local receiver.
    metrica_api: str = "https://api-metrika.yandex.net"
    google_ads_api: str = "https://googleads.googleapis.com/v26"
    google_oauth: str = "https://oauth2.googleapis.com/token"
    network_share: int = 20  # per cent of a pool's numbers one client network may hold at once
    public_url: str | None = None  # how telephony reaches us, for Twilio's signed URL
    decision_rate: int = 600  # decisions per client network and minute, all workers together; 0: no limit
    beacon_rate: int = 600  # beacons per client network and minute, all workers together; 0: no limit
    signin_attempts: int = 10  # wrong report tokens, or call credentials, per client network, site and 15 minutes
    limit_prefixes: tuple[int, int] = (32, 64)  # what a client network is: IPv4 and IPv6 prefix lengths
    token_days: int = 3  # how long a decision token speaks for its page view (beacons)
    store_deadline_ms: int = 200  # how long a round trip to the store may take before a request goes without it
    conversions_per_view: int = 5  # forms, tel: clicks and goals, each, one page view's token may add
    max_pages: int = 1000  # distinct pages per site, experiment and day in the reports; the rest is "(other)"
    max_goals: int = 100  # distinct goal names per site, experiment and day; the rest is "goal:(other)"
    max_connections: int = 1000  # open connections per worker; more get 503
    request_timeout: int = 10  # seconds a client has to send a whole request (line, headers, body)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str | None:
            value = environ.get(f"SWAPLINE_{name}", "").strip()
            return value or None

        defaults = cls()
        redis_url = _store_url(get("REDIS_URL"))
        redis_cluster = _bool("REDIS_CLUSTER", get("REDIS_CLUSTER"), False)
        if redis_url and redis_url.startswith(f"{SENTINEL}:"):
            sentinel_url(redis_url)  # refused now, not at the first page view
            if redis_cluster:
                raise ConfigError("SWAPLINE_REDIS_CLUSTER=1 and a redis+sentinel:// SWAPLINE_REDIS_URL: "
                                  "a cluster fails over by itself, without Sentinel; set one of them")
        return cls(
            host=_host(get("HOST"), defaults.host),
            port=_port(get("PORT"), defaults.port),
            workers=_positive("WORKERS", get("WORKERS"), defaults.workers),
            rules_dir=Path(get("RULES_DIR") or defaults.rules_dir),
            data_dir=Path(get("DATA_DIR") or defaults.data_dir),
            redis_url=redis_url,
            redis_cluster=redis_cluster,
            geoip_db=_geoip(get("GEOIP_DB")),
            trusted_proxies=_networks(get("TRUSTED_PROXIES")),
            operator_networks=_networks(get("OPERATOR_NETWORKS"), "OPERATOR_NETWORKS") or defaults.operator_networks,
            secret=_secret(get("SECRET")),
            reload_rules=_bool("RELOAD_RULES", get("RELOAD_RULES"), defaults.reload_rules),
            log_level=_level(get("LOG_LEVEL"), defaults.log_level),
            log_json=_bool("LOG_JSON", get("LOG_JSON"), defaults.log_json),
            lease_retention_days=_positive("LEASE_RETENTION_DAYS", get("LEASE_RETENTION_DAYS"),
                                           defaults.lease_retention_days),
            attribution_days=_positive("ATTRIBUTION_DAYS", get("ATTRIBUTION_DAYS"), defaults.attribution_days),
            report_days=_positive("REPORT_DAYS", get("REPORT_DAYS"), defaults.report_days),
            visit_days=_positive("VISIT_DAYS", get("VISIT_DAYS"), defaults.visit_days),
            log_days=_positive("LOG_DAYS", get("LOG_DAYS"), defaults.log_days),
            webhook_timeout=_positive("WEBHOOK_TIMEOUT", get("WEBHOOK_TIMEOUT"), defaults.webhook_timeout),
            webhook_retry_ms=_positive("WEBHOOK_RETRY_MS", get("WEBHOOK_RETRY_MS"), defaults.webhook_retry_ms),
            export_every=_positive("EXPORT_EVERY", get("EXPORT_EVERY"), defaults.export_every),
            alert_every=_positive("ALERT_EVERY", get("ALERT_EVERY"), defaults.alert_every),
            metrica_api=_url("METRICA_API", get("METRICA_API"), ("http", "https")) or defaults.metrica_api,
            google_ads_api=_url("GOOGLE_ADS_API", get("GOOGLE_ADS_API"), ("http", "https")) or defaults.google_ads_api,
            google_oauth=_url("GOOGLE_OAUTH", get("GOOGLE_OAUTH"), ("http", "https")) or defaults.google_oauth,
            network_share=_percent("NETWORK_SHARE", get("NETWORK_SHARE"), defaults.network_share),
            public_url=(_url("PUBLIC_URL", get("PUBLIC_URL"), ("http", "https")) or "").rstrip("/") or None,
            decision_rate=_int("DECISION_RATE", get("DECISION_RATE"), defaults.decision_rate),
            beacon_rate=_int("BEACON_RATE", get("BEACON_RATE"), defaults.beacon_rate),
            signin_attempts=_int("SIGNIN_ATTEMPTS", get("SIGNIN_ATTEMPTS"), defaults.signin_attempts),
            limit_prefixes=(_prefix("LIMIT_PREFIX_V4", get("LIMIT_PREFIX_V4"), defaults.limit_prefixes[0], 32),
                            _prefix("LIMIT_PREFIX_V6", get("LIMIT_PREFIX_V6"), defaults.limit_prefixes[1], 128)),
            token_days=_positive("TOKEN_DAYS", get("TOKEN_DAYS"), defaults.token_days),
            store_deadline_ms=_positive("STORE_DEADLINE_MS", get("STORE_DEADLINE_MS"), defaults.store_deadline_ms),
            conversions_per_view=_positive("CONVERSIONS_PER_VIEW", get("CONVERSIONS_PER_VIEW"),
                                           defaults.conversions_per_view),
            max_pages=_positive("MAX_PAGES", get("MAX_PAGES"), defaults.max_pages),
            max_goals=_positive("MAX_GOALS", get("MAX_GOALS"), defaults.max_goals),
            max_connections=_positive("MAX_CONNECTIONS", get("MAX_CONNECTIONS"), defaults.max_connections),
            request_timeout=_positive("REQUEST_TIMEOUT", get("REQUEST_TIMEOUT"), defaults.request_timeout),
        )


class _Asked(Mapping[str, str]):
    """An empty environment that notes every variable asked of it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def warnings(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """What `swapline serve` warns of as it starts: settings it takes, but unwisely."""
    return unknown(environ) + [
        f"SWAPLINE_TRUSTED_PROXIES has {network}: anyone may then name their address in X-Forwarded-For, choose "
        "their city and so their number pool, and dodge the abuse limits; list only your proxies' addresses"
        for network in settings.trusted_proxies if network.prefixlen == 0]


def unknown(environ: Mapping[str, str] = os.environ) -> list[str]:
    """A warning for each `SWAPLINE_*` variable no setting reads (a misspelt name, most likely,
    whose value would be silently ignored), with the known name nearest to it."""
    read = _Asked()
    Settings.from_env(read)  # the names it reads: this list cannot fall behind it
    warnings = []
    for name in sorted(set(environ) - read.asked):
        if name.startswith("SWAPLINE_"):
            # Told apart by what follows the prefix, which every name shares.
            near = difflib.get_close_matches(name[9:], sorted(known[9:] for known in read.asked), n=1)
            warnings.append(f"{name} is not a Swapline setting and is ignored" +
                            (f": did you mean SWAPLINE_{near[0]}?" if near else ""))
    return warnings


def _int(name: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"SWAPLINE_{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"SWAPLINE_{name} must not be negative, got {raw!r}")
    return value


def _positive(name: str, raw: str | None, default: int) -> int:
    value = _int(name, raw, default)
    if value < 1:
        raise ConfigError(f"SWAPLINE_{name} must be at least 1, got {raw!r}")
    return value


def _percent(name: str, raw: str | None, default: int) -> int:
    value = _positive(name, raw, default)
    if value > 100:
        raise ConfigError(f"SWAPLINE_{name} is a per cent, from 1 to 100, got {raw!r}")
    return value


def _secret(raw: str | None) -> str | None:
    """The signing secret: long enough, and varied enough, that nobody guesses it and forges
    decision tokens."""
    if raw is not None and len(raw) < SECRET_LENGTH:
        raise ConfigError(f"SWAPLINE_SECRET must be at least {SECRET_LENGTH} characters, got {len(raw)}: "
                          "make one with `openssl rand -hex 32`")
    if raw is not None and repetitive(raw):
        raise ConfigError(f"SWAPLINE_SECRET has only {len(set(raw))} different characters, and can be guessed: "
                          "make one with `openssl rand -hex 32`")
    return raw


def repetitive(secret: str) -> bool:
    """A secret of a few characters over and over (1111111111111111): `openssl rand -hex 16`
    makes one of fewer than `FEWEST_KINDS` about once in 10^16."""
    return len(set(secret)) < FEWEST_KINDS


def _port(raw: str | None, default: int) -> int:
    value = _int("PORT", raw, default)
    if not 1 <= value <= 65535:
        raise ConfigError(f"SWAPLINE_PORT must be a TCP port from 1 to 65535, got {raw!r}")
    return value


def _prefix(name: str, raw: str | None, default: int, bits: int) -> int:
    value = _int(name, raw, default)
    if not 8 <= value <= bits:
        raise ConfigError(f"SWAPLINE_{name} must be a prefix length from 8 to {bits}, got {raw!r}")
    return value


def _host(raw: str | None, default: str) -> str:
    if raw is None:
        return default
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        if not _HOSTNAME.fullmatch(raw):
            raise ConfigError(f"SWAPLINE_HOST must be an IP address or a host name, got {raw!r}") from None
    return raw


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
LEVELS = ("debug", "info", "warning", "error", "critical")
SECRET_LENGTH = 16  # characters of SWAPLINE_SECRET, at least
FEWEST_KINDS = 5  # different characters in a secret, at least


def _level(raw: str | None, default: str) -> str:
    if raw is None:
        return default
    if raw.lower() not in LEVELS:
        raise ConfigError(f"SWAPLINE_LOG_LEVEL must be one of {', '.join(LEVELS)}, got {raw!r}")
    return raw.lower()


def _url(name: str, raw: str | None, schemes: tuple[str, ...]) -> str | None:
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or (parts.scheme == "unix" and parts.path)):
        raise ConfigError(f"SWAPLINE_{name} must be a {' or '.join(f'{s}://' for s in schemes)} URL, got {raw!r}")
    return raw


def _store_url(raw: str | None) -> str | None:
    """`SWAPLINE_REDIS_URL`, its port and database number checked now, not at the first connection."""
    url = _url("REDIS_URL", raw, ("redis", "rediss", "unix", SENTINEL))
    if url is None or url.startswith(("unix:", f"{SENTINEL}:")):  # a socket's path; sentinel_url checks its own
        return url
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port as it is read
    except ValueError:
        raise ConfigError("SWAPLINE_REDIS_URL: the port must be a number from 1 to 65535") from None
    if not re.fullmatch(r"/?\d*", parts.path):
        raise ConfigError(f"SWAPLINE_REDIS_URL: the path is the database number (redis://host:6379/0), "
                          f"not {parts.path!r}")
    return url


SENTINEL = "redis+sentinel"
SENTINEL_PORT = 26379


class SentinelURL(NamedTuple):
    """Where Sentinel names the primary: `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]
    /service[/db][?sentinel_password=…]`. The user and password are the store's; Sentinels
    that ask for a password of their own get `sentinel_password`."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def sentinel_url(raw: str) -> SentinelURL:
    """The parts of a `redis+sentinel://` URL; a `ConfigError` that says what is wrong, without
    repeating the URL (it may hold a password)."""
    def wrong(problem: str) -> ConfigError:
        return ConfigError(f"SWAPLINE_REDIS_URL: {problem}, in a URL such as "
                           f"{SENTINEL}://:password@sentinel-1:{SENTINEL_PORT},sentinel-2:{SENTINEL_PORT}/mymaster/0")

    parts = urlsplit(raw)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    sentinels = []
    for host in hosts.split(","):
        try:
            address = urlsplit(f"//{host.strip()}")
            port = SENTINEL_PORT if address.port is None else address.port
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            raise wrong(f"{host!r} is not a host with a port from 1 to 65535")
        if not address.hostname:
            raise wrong("every Sentinel needs a host name or address")
        sentinels.append((address.hostname, port))
    path = [unquote(part) for part in parts.path.strip("/").split("/")]
    if not path[0] or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise wrong("the path names the primary Sentinel watches, then optionally a database number")
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"sentinel_password"}:
        raise wrong(f"the only query parameter known is sentinel_password, not {sorted(set(query))!r}")
    return SentinelURL(tuple(sentinels), path[0], int(path[1]) if len(path) == 2 else 0,
                       unquote(username) or None, unquote(password) or None,
                       query["sentinel_password"][-1] if "sentinel_password" in query else None)


def _geoip(raw: str | None) -> Path | None:
    """`SWAPLINE_GEOIP_DB`: a MaxMind database that opens."""
    if raw is None:
        return None
    if not Path(raw).is_file():
        raise ConfigError(f"SWAPLINE_GEOIP_DB: no such file {raw!r}")
    try:
        maxminddb.open_database(raw).close()
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
        raise ConfigError(f"SWAPLINE_GEOIP_DB: {raw!r} is not a MaxMind database such as GeoLite2-City.mmdb "
                          f"({exc})") from None
    return Path(raw)


def _bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"SWAPLINE_{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def _networks(raw: str | None, name: str = "TRUSTED_PROXIES") -> tuple[Network, ...]:
    if raw is None:
        return ()
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"SWAPLINE_{name}: {exc}") from None

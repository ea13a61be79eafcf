"""A site's settings beyond its rules: calls, webhooks, exports, alerts and visits."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from service.ips import ip_address

# The `CallSettings` that each name a vendor's credential.
VENDOR_CREDENTIALS = ("twilio_auth_token", "mango_api_key", "mango_api_salt", "zadarma_secret", "uis_token",
                      "telphin_token")


@dataclass(frozen=True, slots=True)
class CallSettings:
    secret: bytes | None = None  # HMAC key of POST /v1/calls; None: refuse them
    qualify_after: int = 30  # seconds of talk that make a target call
    unique_within: int = 7 * 86400  # seconds: a caller seen within this is not new
    time_zone: ZoneInfo | None = None  # of the times a PBX writes without a zone
    # Each vendor's credentials (service.integrations.telephony); None: its endpoint refuses the site's calls.
    twilio_auth_token: str | None = None
    mango_api_key: str | None = None
    mango_api_salt: str | None = None
    zadarma_secret: str | None = None  # Zadarma's, or classic Novofon's, API secret
    uis_token: str | None = None  # UIS / CoMagic sign nothing: their URL carries this
    telphin_token: str | None = None  # Telphin neither

    @property
    def posted(self) -> bool:
        """Whether anything can post the site's calls: a PBX with the secret, or a vendor."""
        return self.secret is not None or any(getattr(self, name) for name in VENDOR_CREDENTIALS)


@dataclass(frozen=True, slots=True)
class Webhook:
    """An endpoint of the site's own that gets each conversion (service.integrations.webhooks)."""

    url: str
    secret: str
    kinds: frozenset[str] | None = None  # None: every conversion (alerts only where named)
    format: str = "json"  # or "telegram": a Telegram bot's sendMessage to `chat`
    chat: str | None = None
    id: str | None = None  # names its queue, which a new url then keeps

    def takes(self, kind: str) -> bool:
        return kind in self.kinds if self.kinds is not None else kind != "alert"

    @property
    def group(self) -> str:
        """Its queue, a consumer group on the conversion log: named by its id, else by its url
        (as before ids were given: a deployment keeps its queues)."""
        return f"hook:id:{self.id}" if self.id is not None else url_group(self.url)


def url_group(url: str) -> str:
    """The queue of an endpoint without an id."""
    return "hook:" + hashlib.sha256(url.encode()).hexdigest()[:16]


# Cloud metadata answers on link-local addresses (and AWS's over IPv6 on its own): a webhook
# pointed there would post signed JSON to it and show what it answered. Private and loopback
# addresses are allowed: self-hosted CRMs (Bitrix24 on-premise) live on private networks.
CLOUD_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254")})


def refused_address(address: str) -> bool:
    """Whether a webhook may never post to the IP `address` (with or without an IPv6 zone)."""
    ip = ip_address(address.partition("%")[0])
    return ip.is_link_local or ip in CLOUD_METADATA


@dataclass(frozen=True, slots=True)
class Metrica:
    counter: int
    token: str  # an OAuth token with the right to edit the counter


@dataclass(frozen=True, slots=True)
class GoogleAds:
    customer: str  # digits, no dashes
    actions: Mapping[str, str]  # conversion kind -> conversion action id
    client_id: str
    client_secret: str
    refresh_token: str
    developer_token: str | None = None  # sent if given (Google stopped requiring it in 2026)
    login_customer: str | None = None  # a manager account's id, when it makes the upload


@dataclass(frozen=True, slots=True)
class Exports:
    """Offline conversions for the ad platforms (service.integrations.exports)."""

    kinds: frozenset[str] = frozenset({"qualified_call", "form"})
    value: float = 0
    currency: str = "RUB"
    metrica: Metrica | None = None
    google_ads: GoogleAds | None = None


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """When the site's alerts speak (service.integrations.alerts)."""

    no_calls_for: int = 0  # seconds of working hours without a call; 0: never
    opens: int = 9 * 60  # minutes after midnight, in calls.time_zone
    closes: int = 21 * 60
    days: frozenset[int] = frozenset(range(5))  # Monday is 0


@dataclass(frozen=True, slots=True)
class VisitSettings:
    timeout: int = 1800  # seconds without a page view that end a visit
    lookback: int = 90 * 86400  # seconds a visitor keeps their last non-direct source
    last_non_direct: bool = True  # a direct visit keeps that source (else it is direct)

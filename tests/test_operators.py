"""The operators' own pages answer their networks only; health checks answer anyone, briefly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from service.app import create_app
from service.config import ConfigError, Settings
from tests.conftest import BROWSER_HEADERS, make_settings

OUTSIDE = "203.0.113.9"  # a visitor on the internet


@pytest.fixture
def behind_proxy(valkey_url: str, rules_dir: Path, store: redis.Redis, tmp_path: Path) -> Iterator[TestClient]:
    """The app behind a trusted proxy at 10.0.0.1, which names each request's client."""
    proxy = Settings.from_env({"SWAPLINE_TRUSTED_PROXIES": "10.0.0.1"}).trusted_proxies
    settings = make_settings(valkey_url, rules_dir, data_dir=tmp_path / "data", trusted_proxies=proxy)
    with TestClient(create_app(settings), client=("10.0.0.1", 40000), headers=BROWSER_HEADERS) as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/metrics"])
def test_the_home_page_and_metrics_refuse_a_visitor_on_the_internet(behind_proxy: TestClient, path: str) -> None:
    answer = behind_proxy.get(path, headers={"x-forwarded-for": OUTSIDE})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "operators_only"
    assert "SWAPLINE_OPERATOR_NETWORKS" in answer.json()["error"]["message"]
    assert "demo" not in answer.text  # no site, pool or version named

    inside = behind_proxy.get(path, headers={"x-forwarded-for": "10.20.30.40"})
    assert inside.status_code == 200
    assert "demo" in inside.text


@pytest.mark.parametrize("peer", ["127.0.0.1", "10.0.0.1", "192.168.1.5", "172.20.0.1", "::1", "fd00::5",
                                  "::ffff:10.1.2.3"])
def test_the_host_and_private_networks_are_the_operators(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                         peer: str) -> None:
    """Prometheus, a container's host (Docker's bridge) and a colleague in the office, by default."""
    with TestClient(create_app(make_settings(valkey_url, rules_dir, trusted_proxies=())), client=(peer, 40000)) as app:
        assert app.get("/metrics").status_code == 200
        assert app.get("/").status_code == 200


@pytest.mark.parametrize("peer", ["8.8.8.8", "2001:db8::1", "::ffff:203.0.113.9", "100.64.0.1", "169.254.169.254",
                                  "testclient"])
def test_any_other_address_is_not(valkey_url: str, rules_dir: Path, store: redis.Redis, peer: str) -> None:
    with TestClient(create_app(make_settings(valkey_url, rules_dir, trusted_proxies=())), client=(peer, 40000)) as app:
        assert app.get("/metrics").status_code == 403


@pytest.mark.parametrize("header", ["x-forwarded-for", "x-real-ip"])
def test_a_proxy_not_named_trusted_passes_on_no_visitor_as_the_operator(valkey_url: str, rules_dir: Path,
                                                                        store: redis.Redis, header: str) -> None:
    """nginx on the same host, SWAPLINE_TRUSTED_PROXIES unset: every request comes from
    127.0.0.1, but the proxy says whose it is."""
    with TestClient(create_app(make_settings(valkey_url, rules_dir, trusted_proxies=())),
                    client=("127.0.0.1", 40000)) as app:
        assert app.get("/", headers={header: OUTSIDE}).status_code == 403
        assert app.get("/", headers={header: "127.0.0.1"}).status_code == 200  # the operator's own browser
        assert app.get("/", headers={header: "not an address"}).status_code == 403
        assert app.get("/", headers={header: "127.0.0.1," * 6000 + OUTSIDE}).status_code == 403  # 60 KB of hops
    with TestClient(create_app(make_settings(valkey_url, rules_dir)), client=("127.0.0.1", 40000)) as app:
        # Trusted, the proxy names a client past a hop the visitor wrote: the visitor's word is not read.
        assert app.get("/", headers={"x-forwarded-for": f"127.0.0.1, {OUTSIDE}"}).status_code == 403


def test_health_checks_answer_anyone_without_their_details(behind_proxy: TestClient, tmp_path: Path) -> None:
    """A cloud balancer's health checks come from the internet (Google's 35.191.0.0/16): they
    get the status, the operators the details."""
    ready = behind_proxy.get("/readyz", headers={"x-forwarded-for": OUTSIDE})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert "rules_version" in behind_proxy.get("/readyz", headers={"x-forwarded-for": "10.9.9.9"}).json()
    assert behind_proxy.get("/healthz", headers={"x-forwarded-for": OUTSIDE}).json() == {"status": "ok"}

    (tmp_path / "data" / "valkey").mkdir(parents=True)
    (tmp_path / "data" / "valkey" / "DOWN").write_text("valkey-server exited with code 1: disk full at /srv/db")
    down = behind_proxy.get("/healthz", headers={"x-forwarded-for": OUTSIDE})
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "store_down"
    assert "/srv/db" not in down.text
    assert "/srv/db" in behind_proxy.get("/healthz", headers={"x-forwarded-for": "10.9.9.9"}).text


def test_operator_networks_are_a_setting(valkey_url: str, rules_dir: Path, store: redis.Redis) -> None:
    anyone = Settings.from_env({"SWAPLINE_OPERATOR_NETWORKS": "0.0.0.0/0, ::/0"}).operator_networks
    with TestClient(create_app(make_settings(valkey_url, rules_dir, trusted_proxies=(), operator_networks=anyone)),
                    client=(OUTSIDE, 40000)) as app:
        assert app.get("/metrics").status_code == 200
    office = Settings.from_env({"SWAPLINE_OPERATOR_NETWORKS": "198.51.100.0/24"}).operator_networks
    with TestClient(create_app(make_settings(valkey_url, rules_dir, trusted_proxies=(), operator_networks=office)),
                    client=("127.0.0.1", 40000)) as app:
        assert app.get("/metrics").status_code == 403  # named networks replace the default ones
    with pytest.raises(ConfigError, match="SWAPLINE_OPERATOR_NETWORKS"):
        Settings.from_env({"SWAPLINE_OPERATOR_NETWORKS": "10.0.0.0/33"})


def test_the_home_page_leads_to_the_demo_page_only_where_the_demo_site_runs(
        valkey_url: str, rules_dir: Path, store: redis.Redis) -> None:
    """An agency's install, its clients' files in place of the demo's: no link to a page whose
    snippet asks for a site that is not there."""
    with TestClient(create_app(make_settings(valkey_url, rules_dir)), client=("127.0.0.1", 40000)) as app:
        assert 'href="/demo/"' in app.get("/").text
    shop = (rules_dir / "demo.yaml").read_text().replace("site: demo", "site: shop", 1)
    (rules_dir / "demo.yaml").unlink()
    (rules_dir / "shop.yaml").write_text(shop)
    with TestClient(create_app(make_settings(valkey_url, rules_dir)), client=("127.0.0.1", 40000)) as app:
        home = app.get("/").text
    assert 'href="/dashboard/shop"' in home and 'href="/demo/"' not in home


def test_the_home_page_shows_what_in_the_rules_serves_but_likely_not_as_meant(
        valkey_url: str, rules_dir: Path, store: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new client's file names a token in a variable the service's environment lacks: it loads,
    and its dashboard refuses every token. The operator reads why on the home page, not only in
    the log."""
    monkeypatch.delenv("OKNA_REPORT_TOKEN", raising=False)
    (rules_dir / "okna.yaml").write_text('site: okna\norigins: [https://okna.example]\n'
                                         'reports: {token: "${OKNA_REPORT_TOKEN}"}\n')
    with TestClient(create_app(make_settings(valkey_url, rules_dir)), client=("127.0.0.1", 40000)) as app:
        home = app.get("/").text
    assert "rules warnings" in home and "${OKNA_REPORT_TOKEN} is not set in the environment" in home

"""The store over TLS (`rediss://`), as managed Redis/Valkey services offer it: Debian's
redis-server with a certificate of a private CA (trustme's), asking for the client's own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
import trustme

from tests.conftest import BROWSER_HEADERS, free_port, one_site, start, stop, wait_for_server, whole_decision
from tests.test_reports import SHOP, TOKEN

PASSWORD = "tls-store-password"


@pytest.fixture
def tls_store(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """redis-server on a TLS port only, mutual TLS; its port and the folder of the PEM files."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    for name in ("server", "client"):
        issued = ca.issue_cert("127.0.0.1", f"swapline-{name}")
        issued.private_key_pem.write_to_path(tmp_path / f"{name}.key")
        issued.cert_chain_pems[0].write_to_path(tmp_path / f"{name}.pem")
    port = free_port()
    with open(tmp_path / "redis.log", "wb") as log:
        server = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--tls-cert-file", str(tmp_path / "server.pem"), "--tls-key-file", str(tmp_path / "server.key"),
             "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "yes",
             "--requirepass", PASSWORD, "--dir", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, ssl=True,
                         ssl_ca_certs=str(tmp_path / "ca.pem"), ssl_certfile=str(tmp_path / "client.pem"),
                         ssl_keyfile=str(tmp_path / "client.key"))
    try:
        wait_for_server("redis-server answers over TLS", client, server, tmp_path / "redis.log")
        yield port, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_the_service_keeps_its_state_in_a_store_it_reaches_over_tls(tmp_path: Path,
                                                                   tls_store: tuple[int, Path]) -> None:
    port, pems = tls_store
    url = (f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={pems / 'ca.pem'}"
           f"&ssl_certfile={pems / 'client.pem'}&ssl_keyfile={pems / 'client.key'}")
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=url, SWAPLINE_RULES_DIR=str(one_site(tmp_path, "shop", SHOP)),
                          SWAPLINE_SECRET="tls-test-secret-0001")
    try:
        with httpx.Client(base_url=base, headers=BROWSER_HEADERS, timeout=10) as http:
            # A batch has the store's 0.2 s; on a busy machine one may miss it, and its page view
            # rightly gets the degraded answer.
            decisions = [whole_decision(http, site="shop", url="/", vid=f"tls-visitor-{n:06d}") for n in range(3)]
            assert len({decision["phone"]["number"] for decision in decisions}) == 3  # three leases
            for n, decision in enumerate(decisions):
                body = orjson.dumps({"type": "form", "id": f"tls-form-{n}", "token": decision["token"]})
                assert http.post("/v1/events", content=body).status_code == 202
            report = http.get("/v1/reports/shop", headers=TOKEN).json()
            assert sum(row["totals"]["form"] for table in report["experiments"] for row in table["variants"]) == 3
            assert http.get("/metrics").text.count("\nswapline_spool_depth 0") == 1  # nothing waits in the spool
    finally:
        stop(service)


def test_a_store_whose_certificate_no_trusted_ca_signed_is_never_used(tmp_path: Path,
                                                                      tls_store: tuple[int, Path]) -> None:
    """The service's own CA file names another authority: nothing is sent to that server, the
    service says it is not ready, and pages get their degraded answer."""
    port, pems = tls_store
    other = trustme.CA()
    other.cert_pem.write_to_path(tmp_path / "other-ca.pem")
    url = (f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={tmp_path / 'other-ca.pem'}"
           f"&ssl_certfile={pems / 'client.pem'}&ssl_keyfile={pems / 'client.key'}")
    service, base = start(tmp_path, ready="/healthz", SWAPLINE_REDIS_URL=url,
                          SWAPLINE_RULES_DIR=str(one_site(tmp_path, "shop", SHOP)),
                          SWAPLINE_SECRET="tls-test-secret-0001")
    try:
        with httpx.Client(base_url=base, headers=BROWSER_HEADERS, timeout=10) as http:
            refused = http.get("/readyz")
            assert refused.status_code == 503 and "CERTIFICATE_VERIFY_FAILED" in refused.json()["error"]["message"]
            assert http.get("/v1/decide", params={"site": "shop", "url": "/"}).json()["degraded"] is True
    finally:
        stop(service)

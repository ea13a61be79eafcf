"""Read tokens (`reports.read_tokens`): an agency's client, a colleague or a BI job reads all a
report token reads, and erases nothing; each can be changed alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from service.rules.rulefiles import load
from tests.conftest import Clock, site_client
from tests.test_reports import SHOP
from tests.test_rules_check import DEMO_TEXT, problems_in, write

REPORT = "shop-report-token-0001"
CLIENT, BI = "shop-client-read-token-01", "shop-bi-job-read-token-01"
READERS = SHOP.replace("reports: {token: shop-report-token-0001}",
                       f"reports: {{token: {REPORT}, read_tokens: [{CLIENT}, {BI}]}}")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_read_token_opens_what_the_report_token_reads_and_erases_nothing(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "shop", READERS) as shop:
        vid = "read-token-visitor-01"
        assert shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": vid}).status_code == 200
        for path in ("/v1/reports/shop", "/v1/reports/shop?by=source", "/v1/calls/shop", "/v1/conversions/shop",
                     "/v1/pools/shop", "/v1/exports/shop", "/v1/webhooks/shop", "/v1/reports/shop.csv",
                     "/dashboard/shop/numbers", f"/v1/visitors/shop/{vid}", "/v1/numbers/shop/+74951200001"):
            for token in (CLIENT, BI, REPORT):
                assert shop.get(path, headers=bearer(token)).status_code == 200, (path, token)
        erase = shop.delete(f"/v1/visitors/shop/{vid}", headers=bearer(CLIENT))
        assert erase.status_code == 403 and erase.json()["error"]["code"] == "read_only_token"
        assert "report token" in erase.json()["error"]["message"]
        caller = shop.post("/v1/callers/shop/forget", json={"number": "+79161234567"}, headers=bearer(CLIENT))
        assert caller.status_code == 403 and caller.json()["error"]["code"] == "read_only_token"
        erased = shop.delete(f"/v1/visitors/shop/{vid}", headers=bearer(REPORT))  # it was all still there
        assert erased.status_code == 200 and erased.json()["erased"]["visits"] > 0
        wrong = shop.get("/v1/reports/shop", headers=bearer("shop-client-read-token-02"))
        assert wrong.status_code == 401


def test_a_token_taken_out_of_the_rules_ends_only_the_sessions_it_opened(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "shop", READERS) as shop:
        sessions = {}
        for token in (CLIENT, BI, REPORT):
            signed_in = shop.post("/dashboard/shop/login", data={"token": token}, follow_redirects=False)
            assert signed_in.status_code == 303, token
            sessions[token] = {"cookie": f"swapline_session={signed_in.cookies['swapline_session']}"}
            shop.cookies.clear()
        for headers in sessions.values():
            assert 'name="token"' not in shop.get("/dashboard/shop/calls", headers=headers).text
        (rules_dir / "shop.yaml").write_text(READERS.replace(f", {BI}]", "]"))  # the BI job's token is changed
        shop.app.state.runtime.rules = load(rules_dir)  # type: ignore[attr-defined]  # what a reload does
        still = {token: 'name="token"' not in shop.get("/dashboard/shop/calls", headers=headers).text
                 for token, headers in sessions.items()}
        assert still == {CLIENT: True, BI: False, REPORT: True}
        assert shop.get("/v1/calls/shop", headers=bearer(BI)).status_code == 401


@pytest.mark.parametrize(("tokens", "message"), [
    (f"[{REPORT}]", "reports.read_tokens[0] is the report token itself, which erases visitors too: give a reader "
                    "a token of their own"),
    ("[demo-report-token-change-me]", "reports.read_tokens[0] is also that of site 'demo'"),
    ("[shop-calls-secret-00001]", "calls.secret is also this site's read token: whoever is given it reads"),
    ("[short]", "reports.read_tokens[0]"),
])
def test_the_rules_refuse_a_read_token_that_opens_more_than_its_site_or_is_guessable(
        tmp_path: Path, tokens: str, message: str) -> None:
    write(tmp_path, DEMO_TEXT)
    write(tmp_path, SHOP.replace("reports: {token: shop-report-token-0001}",
                                 f"reports: {{token: {REPORT}, read_tokens: {tokens}}}"), "shop.yaml")
    (problem,) = problems_in(tmp_path)
    assert message in problem.message and problem.file.endswith("shop.yaml")

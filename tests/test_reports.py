"""End to end: decisions, beacons and calls through the real service; the report credits each
conversion to the right page and variant, and keeps bots and overflowed visitors apart."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.analytics import reports, stats
from service.analytics.stats import sequential
from service.app import create_app
from service.cli import _print_report
from service.rules.rulefiles import load
from tests.conftest import BROWSER_HEADERS, START, Clock, make_settings, site_client

SECRET = b"shop-calls-secret-00001"
TOKEN = {"authorization": "Bearer shop-report-token-0001"}
NUMBERS = [f"+7 495 150-00-{i:02d}" for i in range(20)]
SHOP = f"""
site: shop
origins: [https://shop.example]
calls: {{secret: {SECRET.decode()}, qualify_after: 30s, unique_within: 1d}}
reports: {{token: shop-report-token-0001}}
pools:
  - id: city
    hold: 15m
    overflow: "+7 495 159-99-99"
    numbers: [{", ".join(f'"{n}"' for n in NUMBERS)}]
experiments:
  - id: hero
    page: [/, /sale]
    variants:
      - {{id: control, weight: 50}}
      - {{id: b, weight: 50, swap: [{{selector: h1, text: b}}]}}
"""


# The shop with a second experiment on a page of its own: a visitor can hold a variant of each.
TWO_EXPERIMENTS = SHOP + """  - id: sorting
    page: /catalog
    variants:
      - {id: control, weight: 50}
      - {id: cheap-first, weight: 50, swap: [{selector: .sort, text: cheap first}]}
"""
ORIGIN = "https://shop.example"
AD = f"{ORIGIN}/?utm_source=yandex&utm_medium=cpc&utm_campaign=winter&utm_term={quote('купить чайник')}&yclid=4242"


@pytest.fixture
def shop(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "shop", SHOP) as client:
        yield client


@pytest.fixture
def shop_with_catalog_experiment(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                 clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "shop", TWO_EXPERIMENTS) as client:
        yield client


class Visit:
    """One visitor browsing the shop as the snippet does: each page sends back the last decision
    token (which carries the visit) and the page before as the referrer."""

    def __init__(self, client: TestClient, vid: str) -> None:
        self.client, self.vid, self.token, self.previous = client, vid, "", ""

    def open(self, path_or_url: str, ref: str | None = None) -> Any:
        url = path_or_url if path_or_url.startswith("https:") else ORIGIN + path_or_url
        params = {"site": "shop", "url": url, "vid": self.vid, "visit": self.token,
                  "ref": self.previous if ref is None else ref}
        response = self.client.get("/v1/decide", params=params)
        assert response.status_code == 200, response.text
        answer = response.json()
        self.token, self.previous = answer["token"], url
        return answer


def variant_rows(client: TestClient) -> dict[tuple[str, str, str], Any]:
    """The experiment report's rows by (experiment, cohort page, variant)."""
    report = client.get("/v1/reports/shop", headers=TOKEN).json()
    return {(table["experiment"], table["page"], row["variant"]): row
            for table in report["experiments"] for row in table["variants"]}


def nothing_converted(row: Any) -> bool:
    return not any(row["converted"].values()) and not any(row["totals"].values())


def beacon(client: TestClient, token: str, kind: str, event_id: str, **extra: str) -> Any:
    body = orjson.dumps({"type": kind, "id": event_id, "token": token, **extra})
    response = client.post("/v1/events", content=body, headers={"content-type": "text/plain"})
    assert response.status_code == 202, response.text
    return response.json()


def call(client: TestClient, call_id: str, number: str, start: float, talk: int, status: str = "completed") -> Any:
    raw = orjson.dumps({"call_id": call_id, "called": number, "caller": f"+7916{call_id[-7:]}",
                        "start": start, "talk_seconds": talk, "status": status})
    signature = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    return client.post("/v1/calls?site=shop", content=raw, headers={"x-swapline-signature": signature}).json()


def test_the_report_credits_every_conversion_to_its_page_and_variant(shop: TestClient, clock: Clock) -> None:
    truth: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for n in range(200):
        clock.now = START + n * 60  # a visitor a minute: about 15 numbers held at once
        page = "/" if n % 5 < 3 else "/sale"
        body = shop.get("/v1/decide", params={"site": "shop", "url": page, "vid": f"shop-visitor-{n:08d}"}).json()
        cohort = truth[page, body["experiments"]["hero"]]
        cohort["exposed"] += 1
        converted = set()
        if n % 3 == 0:
            beacon(shop, body["token"], "form", f"form-{n}")
            beacon(shop, body["token"], "form", f"form-{n}")  # a retried beacon
            cohort["form_events"] += 1
            converted.add("form")
        if n % 4 == 0:
            beacon(shop, body["token"], "tel_click", f"tel-{n}")
            beacon(shop, body["token"], "tel_click", f"tel-{n}-again")  # a second tap
            cohort["tel_click_events"] += 2
            converted.add("tel_click")
        if n % 7 == 0:
            beacon(shop, body["token"], "goal", f"goal-{n}", name="newsletter")
            converted.update({"goal", "goal:newsletter"})
        if n % 6 == 0:
            talk = 45 if n % 12 == 0 else 10
            answer = call(shop, f"call-{n:010d}", body["phone"]["number"], clock.now + 30, talk)
            assert answer["credited"] and answer["visitor"] == f"shop-visitor-{n:08d}"
            converted.add("call")
            if talk >= 30:
                converted.add("qualified_call")
        elif n % 6 == 3:  # nobody answered: a missed call, not a call
            answer = call(shop, f"missed-{n:08d}", body["phone"]["number"], clock.now + 30, 0, status="no-answer")
            assert answer["credited"] and answer["qualified"] is False
            converted.add("missed_call")
        for kind in converted | ({"any"} if converted else set()):
            cohort[kind] += 1

    report = shop.get("/v1/reports/shop", headers=TOKEN).json()
    tables = {(table["page"], row["variant"]): row for table in report["experiments"] for row in table["variants"]}
    assert set(tables) == set(truth)
    for key, expected in truth.items():
        row = tables[key]
        assert row["exposed"] == expected["exposed"] and row["overflowed"] == 0, key
        for kind in ("form", "tel_click", "goal", "call", "qualified_call", "missed_call", "any"):
            assert row["converted"][kind] == expected[kind], (key, kind)
        assert row["totals"]["form"] == expected["form_events"] and row["totals"]["tel_click"] == expected[
            "tel_click_events"]
        assert row["rate"] == pytest.approx(expected["any"] / expected["exposed"])
    pages = {page["page"]: page for page in report["pages"]}
    assert pages["/"]["visitors"] == 120 and pages["/sale"]["visitors"] == 80
    assert pages["/"]["converted"]["form"] == sum(truth["/", v]["form"] for v in ("control", "b"))


def test_conversions_off_the_experiments_pages_count_for_the_visitors_variant(shop: TestClient, clock: Clock) -> None:
    """The experiment runs on / only; the form is sent from /contacts and the call made from the
    number shown there. Both count for the variant the visitor saw on /, in the cohort of /."""
    landing = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": "off-page-visitor-0001"}).json()
    clock.advance(60)
    contacts = shop.get("/v1/decide", params={"site": "shop", "url": "/contacts",
                                              "vid": "off-page-visitor-0001"}).json()
    assert contacts["experiments"] == {}  # nothing runs on /contacts: the page's own token names no variant
    beacon(shop, contacts["token"], "form", "off-page-form")
    answer = call(shop, "off-page-call-0001", contacts["phone"]["number"], clock.now + 30, 60)
    assert answer["credited"]
    report = shop.get("/v1/reports/shop", headers=TOKEN).json()
    rows = {(table["page"], row["variant"]): row for table in report["experiments"] for row in table["variants"]}
    row = rows["/", landing["experiments"]["hero"]]
    assert row["converted"]["form"] == 1 and row["converted"]["call"] == 1 and row["converted"]["qualified_call"] == 1


def test_an_ended_experiment_shows_its_winner_to_everyone_and_keeps_its_figures(
        shop: TestClient, clock: Clock, rules_dir: Path) -> None:
    for n in range(20):
        body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"ended-visitor-{n:08d}"}).json()
        if n % 2:
            beacon(shop, body["token"], "form", f"ended-form-{n}")
    before = variant_rows(shop)
    ended = SHOP.replace("    page: [/, /sale]\n", "    page: [/, /sale]\n    winner: b\n", 1)
    (rules_dir / "shop.yaml").write_text(ended)
    shop.app.state.runtime.rules = load(rules_dir)  # type: ignore[attr-defined]  # what a reload does
    after = [shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"later-visitor-{n:08d}"}).json()
             for n in range(20)]
    assert all([(swap["selector"], swap["text"]) for swap in body["swaps"]] == [("h1", "b")]
               and body["experiments"] == {} for body in after)
    report = shop.get("/v1/reports/shop", headers=TOKEN).json()
    assert [table["winner"] for table in report["experiments"]] == ["b"]
    assert variant_rows(shop) == before  # nobody new is counted
    assert sum(row["visitors"] for row in before.values()) == 20
    assert "Ended: every visitor sees b" in shop.get("/dashboard/shop", headers=TOKEN).text
    assert all(table["warnings"] == [] for table in report["experiments"])  # nobody more to wait for


def test_the_dashboards_pages_table_counts_goals_as_the_report_does(shop: TestClient) -> None:
    for n in range(3):
        body = shop.get("/v1/decide", params={"site": "shop", "url": "/sale", "vid": f"goal-visitor-{n:07d}"}).json()
        if n:
            beacon(shop, body["token"], "goal", f"goal-{n}", name="newsletter")
    (page,) = shop.get("/v1/reports/shop", headers=TOKEN).json()["pages"]
    assert page["converted"]["goal"] == 2
    table = shop.get("/dashboard/shop", headers=TOKEN).text.split('<section id="pages">')[1].split("</table>")[0]
    spanning = re.findall(r'<th rowspan="2">([^<]*)</th>', table)  # Page, Visitors; Converted, Rate, interval
    kinds = re.findall(r"<th>([^<]*)</th>", table)  # the visitors of each kind, between them
    cells = re.findall(r"<td>([^<]*)</td>", table)
    assert dict(zip([*spanning[:2], *kinds, *spanning[2:]], cells, strict=True))["Goal"] == "2"


def test_overflowed_visitors_and_bots_are_counted_apart(shop: TestClient, clock: Clock) -> None:
    tokens = []
    for n in range(25):  # 25 visitors in one minute, 20 numbers: five overflow
        body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"burst-visitor-{n:07d}"}).json()
        tokens.append((body["phone"]["kind"], body["token"]))
    for n, (_, token) in enumerate(tokens):
        beacon(shop, token, "form", f"burst-{n}")
    shop.get("/v1/decide", params={"site": "shop", "url": "/"},
             headers={"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"})
    report = shop.get("/v1/reports/shop", headers=TOKEN).json()
    rows = [row for table in report["experiments"] for row in table["variants"]]
    assert sum(row["exposed"] for row in rows) == 25
    assert sum(row["overflowed"] for row in rows) == 5 == sum(kind == "overflow" for kind, _ in tokens)
    # Left out of what a call counts in (SPEC: "excluded from call conversion"), as they could not
    # be credited one; their forms count as anyone's.
    assert sum(row["visitors"] for row in rows) == 20 and sum(row["converted"]["any"] for row in rows) == 20
    assert report["excluded"] == {"bot_page_views": 1, "overflowed_visitors": 5, "overflowed_conversions": 5}
    by_form = shop.get("/v1/reports/shop", params={"metric": "form"}, headers=TOKEN).json()
    rows = [row for table in by_form["experiments"] for row in table["variants"]]
    assert sum(row["visitors"] for row in rows) == 25 and sum(row["converted"]["form"] for row in rows) == 25
    assert sum(day["visitors"] for table in by_form["experiments"] for day in table["daily"]) == 25


def test_a_visitor_who_called_and_overflows_later_leaves_the_call_rates_whole(shop: TestClient, clock: Clock) -> None:
    """Their call stays in the log, but not in a rate whose visitors leave them out."""
    caller = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": "early-caller-000001"}).json()
    clock.advance(20)
    assert call(shop, "call-0000001", caller["phone"]["number"], clock.now, 60)["qualified"] is True
    clock.advance(31 * 60)  # their hold and their visit are over
    for n in range(20):  # the pool's twenty numbers are taken
        shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"crowd-visitor-{n:06d}"})
    again = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": "early-caller-000001"}).json()
    assert again["phone"]["kind"] == "overflow"
    for metric in ("call", "qualified_call", "any"):
        report = shop.get("/v1/reports/shop", params={"metric": metric}, headers=TOKEN).json()
        rows = [row for table in report["experiments"] for row in table["variants"]]
        assert sum(row["visitors"] for row in rows) == 20 and sum(row["converted"][metric] for row in rows) == 0
        assert report["excluded"]["overflowed_conversions"] == 1


def test_the_always_valid_interval_of_a_few_visitors_stays_within_what_rates_can_differ_by(
        shop: TestClient, clock: Clock) -> None:
    """Early on the sequential interval is wide: -213% to +323% of a rate is no difference two rates have."""
    seen: Counter[str] = Counter()
    for n in range(12):
        body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"few-visitor-{n:08d}"}).json()
        seen[variant := body["experiments"]["hero"]] += 1
        if seen[variant] % 2:  # half of each variant's visitors
            beacon(shop, body["token"], "form", f"few-{n}")
    (table,) = shop.get("/v1/reports/shop", headers=TOKEN).json()["experiments"]
    low, high = table["variants"][1]["lift"]["sequential"]["absolute_interval"]
    assert (low, high) == (-1.0, 1.0)


def test_statistics_compare_each_variant_with_control(shop: TestClient, clock: Clock) -> None:
    for n in range(120):
        clock.now = START + n * 60
        body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"stats-visitor-{n:07d}"}).json()
        if n % 4 == 0 or (body["experiments"]["hero"] == "b" and n % 4 != 3):  # 25% and 75%
            beacon(shop, body["token"], "form", f"s-{n}")
    (table,) = shop.get("/v1/reports/shop", headers=TOKEN).json()["experiments"]
    control, variant = table["variants"]
    assert control["variant"] == "control" and control["lift"] is None
    lift = variant["lift"]
    assert lift["absolute"] == pytest.approx(variant["rate"] - control["rate"])
    assert lift["absolute_interval"][0] < lift["absolute"] < lift["absolute_interval"][1]
    assert lift["p_value"] < 0.001 and lift["chance_to_beat"] > 0.999
    for reader, shown in (("en", "<td>&gt;99.9%</td>"), ("ru", "<td>&gt;99,9%</td>")):  # a chance, not a certainty
        page = shop.get("/dashboard/shop?test=fixed", headers={**TOKEN, "accept-language": reader}).text
        assert shown in page and "<td>100.0%</td>" not in page and "<td>100,0%</td>" not in page
    assert table["correction"] is None and "p_value_holm" not in lift  # one comparison: nothing to correct
    # The figures valid at every look, on the same counts, tuned for the default 5,000 visitors.
    always_valid = sequential(control["converted"]["any"], control["visitors"], variant["converted"]["any"],
                              variant["visitors"], expected_visitors=table["expected_visitors"])
    assert table["expected_visitors"] == 5000 and always_valid is not None
    assert lift["sequential"] == {
        "p_value": always_valid.p_value,
        "absolute_interval": [max(-1.0, always_valid.difference.low), min(1.0, always_valid.difference.high)],
        "relative_interval": [max(-1.0, always_valid.relative.low), always_valid.relative.high],
    }
    assert lift["sequential"]["p_value"] > lift["p_value"]  # the price of looking any day
    assert control["interval"][0] < control["rate"] < control["interval"][1]
    assert table["srm"]["alarm"] is False and 0 <= table["srm"]["p_value"] <= 1
    assert {day["variant"] for day in table["daily"]} == {"control", "b"}


@pytest.mark.parametrize(("converts", "warning"), [
    (lambda n: False, "too little data: the control has no conversions yet, so no sample size can be judged"),
    (lambda n: n % 6 != 0, "the control converts 83%: a 20% lift would pass 100%, so no sample size can be judged"),
    (lambda n: True, "the control converts 100%: a 20% lift would pass 100%, so no sample size can be judged"),
])
def test_a_sample_size_that_cannot_be_judged_says_why(shop: TestClient, clock: Clock, converts: Any,
                                                        warning: str) -> None:
    controls = 0
    for n in range(200):
        clock.now = START + n * 60
        body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"size-visitor-{n:07d}"}).json()
        if body["experiments"]["hero"] == "control":
            if converts(controls):
                beacon(shop, body["token"], "form", f"z-{n}")
            controls += 1
        if controls == 30:
            break
    (table,) = shop.get("/v1/reports/shop", headers=TOKEN).json()["experiments"]
    assert table["variants"][0]["visitors"] == 30 and warning in table["warnings"]


@pytest.mark.parametrize(("control", "b", "verdict"), [
    (0.05, 0.30, re.compile(r"Variant b converts better than the control \(\+\d+\.\d%, always-valid "
                            r"p = [\d.e-]+\): you may end the test, with winner: b")),
    (0.30, 0.02, re.compile("Every variant converts worse than the control: you may end the test, "
                            "with winner: control")),
    (0.20, 0.20, re.compile("No variant converts better than the control yet: keep the test running")),
])
def test_each_experiment_says_what_its_always_valid_figures_let_the_reader_decide(
        shop: TestClient, clock: Clock, control: float, b: float, verdict: re.Pattern[str]) -> None:
    """One plain sentence per test, safe to act on any day's look: what a marketer wants to
    know, in the report, its files, `swapline report` and the dashboard."""
    converted = Counter[str]()
    for n in range(400):
        clock.now = START + n * 60
        body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"verdict-visitor-{n:06d}"}).json()
        variant = body["experiments"]["hero"]
        converted[variant, "seen"] += 1
        if converted[variant] < (control if variant == "control" else b) * converted[variant, "seen"]:
            converted[variant] += 1
            beacon(shop, body["token"], "form", f"verdict-form-{n}")
    report = shop.get("/v1/reports/shop", headers=TOKEN).json()
    (table,) = report["experiments"]
    assert verdict.fullmatch(table["verdict"]), table
    if table["verdict"].startswith("Variant"):  # its p as the table beside it prints it, to three digits
        assert f"p = {table['variants'][1]['lift']['sequential']['p_value']:.3g})" in table["verdict"]
    rows = list(csv.DictReader(io.StringIO(shop.get("/v1/reports/shop.csv", headers=TOKEN).text)))
    assert {row["verdict"] for row in rows if row["section"] == "experiment"} == {table["verdict"]}
    assert table["verdict"] in shop.get("/dashboard/shop", headers=TOKEN).text
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        _print_report(report)
    assert f"  = {table['verdict']}\n" in printed.getvalue()


def test_an_experiment_whose_visitors_mostly_overflowed_says_its_call_figures_leave_them_out(
        shop: TestClient, clock: Clock) -> None:
    """A pool too small for a burst: the verdict on calls rests on the few who got a number, and
    the table says so beside it; a metric without calls counts them all."""
    for n in range(40):  # within a minute: 20 numbers, 20 visitors find none free
        assert shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"burst-visitor-{n:06d}"},
                        headers={"x-forwarded-for": f"203.0.113.{n + 1}"}).status_code == 200
    (table,) = shop.get("/v1/reports/shop", headers=TOKEN).json()["experiments"]
    assert ("20 of the 40 visitors got the overflow number and are not in these figures, which calls count in: "
            "read a metric without calls (form), or give the pool more numbers") in table["warnings"]
    (by_form,) = shop.get("/v1/reports/shop", params={"metric": "form"}, headers=TOKEN).json()["experiments"]
    assert not any("overflow number" in warning for warning in by_form["warnings"])


def test_a_test_whose_split_is_broken_or_that_has_ended_advises_nothing(
        shop: TestClient, clock: Clock, rules_dir: Path) -> None:
    for n in range(200):
        body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"split-visitor-{n:06d}"}).json()
        if n % 3 == 0:
            beacon(shop, body["token"], "form", f"split-form-{n}")
    for rules, verdict in (
            (SHOP.replace("{id: control, weight: 50}", "{id: control, weight: 90}").replace(
                "{id: b, weight: 50,", "{id: b, weight: 10,"),  # a reload that moved the weights under the test
             "Decide nothing on these figures until the split follows the weights"),
            (SHOP.replace("    page: [/, /sale]\n", "    page: [/, /sale]\n    winner: b\n", 1), None)):
        (rules_dir / "shop.yaml").write_text(rules)
        shop.app.state.runtime.rules = load(rules_dir)  # type: ignore[attr-defined]  # what a reload does
        (table,) = shop.get("/v1/reports/shop", headers=TOKEN).json()["experiments"]
        assert table["verdict"] == verdict


def test_the_sample_size_a_variant_waits_for_is_named_as_the_fixed_horizon_tests() -> None:
    """The dashboard shows the sequential test first, which at this size finds a 20% lift less
    often than 80%: an analyst who waits for the warning to clear must know which test it is."""
    needed = stats.required_sample(0.1)
    assert reports._sample_warnings(10, 100, [{"variant": "b", "visitors": 90}]) == [
        f"b: 90 of the {needed} visitors needed to see a 20% lift (by the fixed-horizon test; the sequential one, "
        "safe to read every day, needs more)"]


def test_report_filters_csv_and_token(shop: TestClient, clock: Clock) -> None:
    for n, page in enumerate(["/", "/sale", "/"]):
        body = shop.get("/v1/decide", params={"site": "shop", "url": page, "vid": f"filter-visitor-{n:06d}"}).json()
        beacon(shop, body["token"], "form", f"f-{n}")
    day = "2026-11-18"  # START's day
    only_sale = shop.get("/v1/reports/shop", params={"page": "/sale"}, headers=TOKEN).json()
    assert [table["page"] for table in only_sale["experiments"]] == ["/sale"]
    assert shop.get("/v1/reports/shop", params={"from": "2026-11-19"}, headers=TOKEN).json()["experiments"] == []
    same_day = shop.get("/v1/reports/shop", params={"from": day, "to": day, "experiment": "hero"}, headers=TOKEN)
    assert sum(row["exposed"] for t in same_day.json()["experiments"] for row in t["variants"]) == 3

    response = shop.get("/v1/reports/shop.csv", headers=TOKEN)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    experiment_rows = [row for row in rows if row["section"] == "experiment"]
    assert sum(int(row["exposed"]) for row in experiment_rows) == 3
    assert sum(int(row["converted_form"]) for row in experiment_rows) == 3
    assert {row["page"] for row in rows if row["section"] == "page"} == {"/", "/sale"}

    assert shop.get("/v1/reports/shop").status_code == 401
    assert shop.get("/v1/reports/shop.csv", headers={"authorization": "Bearer nope"}).status_code == 401
    for params in ({"from": "yesterday"}, {"metric": "sales"}, {"from": "2026-12-04", "to": "2026-12-01"},
                   {"metric": "goal:NEWS\x00"}, {"metric": "goal:"},
                   {"metirc": "form"}, {"variant": "cta:b"},  # a misspelt filter, another report's: not ignored
                   {"experiment": "ctaa"}):  # an experiment the rules do not have: no empty report
        bad = shop.get("/v1/reports/shop", params=params, headers=TOKEN)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_filter", params
    for metric in ("goal:newsletter", "goal:(other)"):
        assert shop.get("/v1/reports/shop", params={"metric": metric}, headers=TOKEN).json()["metric"] == metric


def test_events_need_an_id_a_known_kind_and_the_sites_origin(shop: TestClient) -> None:
    token = shop.get("/v1/decide", params={"site": "shop", "url": "/"}).json()["token"]
    for body, code in [({"type": "form"}, "invalid_event"), ({"type": "form", "id": "x y"}, "invalid_event"),
                       ({"type": "goal", "id": "g1"}, "invalid_event"),
                       ({"type": "goal", "id": "g1", "name": "Bad Name"}, "invalid_event")]:
        response = shop.post("/v1/events", content=orjson.dumps({**body, "token": token}))
        assert response.status_code == 400 and response.json()["error"]["code"] == code
    foreign = shop.post("/v1/events", content=orjson.dumps({"type": "form", "id": "f", "token": token}),
                        headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403
    own = shop.post("/v1/events", content=orjson.dumps({"type": "form", "id": "f", "token": token}),
                    headers={"origin": "https://shop.example"})
    assert own.status_code == 202 and own.headers["access-control-allow-origin"] == "https://shop.example"


def test_beacons_are_rate_limited_per_address(valkey_url: str, rules_dir: Path, store: redis.Redis) -> None:
    (rules_dir / "shop.yaml").write_text(SHOP)
    app = create_app(make_settings(valkey_url, rules_dir, beacon_rate=5))
    with TestClient(app, client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        app.state.runtime.clock = Clock()  # the minute of the limit never ends halfway, however slow the requests
        token = client.get("/v1/decide", params={"site": "shop", "url": "/"}).json()["token"]
        codes = [client.post("/v1/events", content=orjson.dumps({"type": "form", "id": f"r{n}", "token": token}))
                 .status_code for n in range(8)]
    assert codes == [202] * 5 + [429] * 3


def test_three_variants_get_holm_adjusted_p_values(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                   clock: Clock) -> None:
    """Two variants against one control: each p-value as it stands, and Holm-adjusted as
    statsmodels adjusts them; the dashboard says so and colours by the adjusted one."""
    from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]

    three = SHOP.replace("      - {id: control, weight: 50}\n      - {id: b, weight: 50,",
                         "      - {id: control, weight: 34}\n      - {id: c, weight: 33}\n      - {id: b, weight: 33,")
    three = three.replace("    page: [/, /sale]\n", "    page: [/, /sale]\n    expected_visitors: 200\n")
    with site_client(valkey_url, rules_dir, clock, "shop", three) as shop:
        for n in range(300):
            clock.now = START + n * 60
            body = shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"holm-visitor-{n:07d}"}).json()
            variant = body["experiments"]["hero"]
            if n % {"control": 10, "c": 6, "b": 3}[variant] == 0:
                beacon(shop, body["token"], "form", f"h-{n}")
        report = shop.get("/v1/reports/shop", headers=TOKEN).json()
        dashboard = shop.get("/dashboard/shop", headers=TOKEN).text
        fixed = shop.get("/dashboard/shop?test=fixed", headers=TOKEN).text
        rows = list(csv.DictReader(io.StringIO(shop.get("/v1/reports/shop.csv", headers=TOKEN).text)))
    (table,) = report["experiments"]
    lifts = [row["lift"] for row in table["variants"][1:]]
    expected = multipletests([lift["p_value"] for lift in lifts], method="holm")[1]
    assert table["correction"] == "holm"
    assert [lift["p_value_holm"] for lift in lifts] == pytest.approx(list(expected), rel=1e-12)
    assert all(lift["p_value_holm"] >= lift["p_value"] for lift in lifts)
    assert table["expected_visitors"] == 200  # the rule's own tuning
    control = table["variants"][0]
    for row in table["variants"][1:]:
        tuned = sequential(control["converted"]["any"], control["visitors"], row["converted"]["any"], row["visitors"],
                           expected_visitors=200)
        assert tuned is not None and row["lift"]["sequential"]["p_value"] == tuned.p_value
    sequential_figures = [lift["sequential"] for lift in lifts]
    expected = multipletests([figures["p_value"] for figures in sequential_figures], method="holm")[1]
    assert [figures["p_value_holm"] for figures in sequential_figures] == pytest.approx(list(expected), rel=1e-12)
    assert "p-value (always valid, Holm)" in dashboard and "Holm-adjusted" in dashboard
    assert "p-value (Holm)" in fixed
    # The files and the command line give the figures the dashboard shows, not only the unadjusted ones.
    in_file = {row["variant"]: row for row in rows if row["section"] == "experiment"}
    for row, lift in zip(table["variants"][1:], lifts, strict=True):
        assert float(in_file[row["variant"]]["p_value_holm"]) == pytest.approx(lift["p_value_holm"], rel=1e-5)
        assert float(in_file[row["variant"]]["p_value_sequential_holm"]) == pytest.approx(
            lift["sequential"]["p_value_holm"], rel=1e-5)
    assert in_file["control"]["p_value_holm"] == ""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        _print_report(report)
    header, _, *variants = printed.getvalue().split("experiment hero on /")[1].splitlines()[1:]
    assert "p (always valid, Holm)" in header and "p (Holm)" in header
    for line, lift in zip(variants, lifts, strict=False):  # past the control's line; the warnings after
        assert line.split()[6:8] == [f"{lift['sequential']['p_value_holm']:.3g}", f"{lift['p_value_holm']:.3g}"]


def test_a_conversion_off_both_experiments_pages_counts_for_the_visitors_variant_in_each(
        shop_with_catalog_experiment: TestClient, clock: Clock) -> None:
    """hero runs on /, sorting on /catalog; the form and the call come from /contacts, where
    neither runs. The store, not the page's token, says which variants the visitor holds."""
    shop, visit = shop_with_catalog_experiment, Visit(shop_with_catalog_experiment, "two-experiments-visitor-01")
    hero = visit.open("/")["experiments"]["hero"]
    clock.advance(60)
    sorting = visit.open("/catalog")["experiments"]["sorting"]
    clock.advance(60)
    contacts = visit.open("/contacts")
    assert contacts["experiments"] == {}
    assert beacon(shop, contacts["token"], "form", "two-experiments-form")["outcome"] == "counted"
    answer = call(shop, "two-exp-call-0001", contacts["phone"]["number"], clock.now + 30, 60)
    assert answer["credited"] and answer["experiments"] == {"hero": hero, "sorting": sorting}

    rows = variant_rows(shop)
    for experiment, page, variant in (("hero", "/", hero), ("sorting", "/catalog", sorting)):
        row = rows[experiment, page, variant]
        assert row["visitors"] == 1 and row["converted"]["form"] == 1 and row["converted"]["call"] == 1
        assert row["converted"]["qualified_call"] == 1 and row["converted"]["any"] == 1 and row["rate"] == 1.0
        others = [row for (e, _, v), row in rows.items() if e == experiment and v != variant]
        assert others and all(row["exposed"] == 0 and nothing_converted(row) for row in others)


def test_a_conversion_counts_only_for_the_experiments_the_visitor_saw_before_it(
        shop_with_catalog_experiment: TestClient, clock: Clock) -> None:
    """hero seen on /, a form from /contacts, and only then sorting on /catalog: the form is
    hero's alone. sorting's cohort gains the visitor (exposed, visitors) with no conversion, even
    when the same beacon comes again after the exposure; a later form counts for both."""
    shop, visit = shop_with_catalog_experiment, Visit(shop_with_catalog_experiment, "before-and-after-visitor-1")
    hero = visit.open("/")["experiments"]["hero"]
    clock.advance(60)
    contacts = visit.open("/contacts")
    beacon(shop, contacts["token"], "form", "form-before-sorting")
    clock.advance(60)
    sorting = visit.open("/catalog")["experiments"]["sorting"]
    beacon(shop, contacts["token"], "form", "form-before-sorting")  # a retry, heard after the exposure

    rows = variant_rows(shop)
    assert rows["hero", "/", hero]["converted"]["form"] == 1 and rows["hero", "/", hero]["totals"]["form"] == 1
    later = rows["sorting", "/catalog", sorting]
    assert (later["exposed"], later["visitors"], later["rate"]) == (1, 1, 0.0) and nothing_converted(later)
    (entry,) = shop.get("/v1/conversions/shop", headers=TOKEN).json()["entries"]
    assert entry["experiments"] == {"hero": hero}  # the log says the same: sorting came after

    clock.advance(60)
    beacon(shop, contacts["token"], "form", "form-after-sorting")
    rows = variant_rows(shop)
    assert rows["sorting", "/catalog", sorting]["converted"]["form"] == 1
    assert rows["sorting", "/catalog", sorting]["totals"]["form"] == 1  # the earlier form still is not its
    assert rows["hero", "/", hero]["converted"]["form"] == 1 and rows["hero", "/", hero]["totals"]["form"] == 2


def test_tel_clicks_and_goals_off_the_experiments_page_count_for_the_variant_and_log_the_visit(
        shop: TestClient, clock: Clock) -> None:
    """A visitor from a Yandex ad sees hero on /, then taps the number and reaches a goal on
    /contacts: both count for their variant, and each log entry says how the visit came."""
    visit = Visit(shop, "ad-visitor-off-page-00001")
    landing = visit.open(AD, ref="https://yandex.ru/")
    hero = landing["experiments"]["hero"]
    clock.advance(40)
    contacts = visit.open("/contacts")
    assert contacts["experiments"] == {} and contacts["visit"]["id"] == landing["visit"]["id"]
    beacon(shop, contacts["token"], "tel_click", "contacts-tap")
    clock.advance(5)
    beacon(shop, contacts["token"], "goal", "contacts-goal", name="callback")

    row = variant_rows(shop)["hero", "/", hero]
    assert row["converted"]["tel_click"] == row["converted"]["goal"] == row["converted"]["goal:callback"] == 1
    assert row["converted"]["any"] == 1 and row["converted"]["form"] == 0 and row["rate"] == 1.0

    page = shop.get("/v1/conversions/shop", headers=TOKEN).json()
    goal, tap = page["entries"]  # newest first
    assert (tap["id"], tap["kind"], goal["id"], goal["kind"], goal["goal"]) == (
        "tel_click:contacts-tap", "tel_click", "goal:contacts-goal", "goal", "callback")
    for entry in (tap, goal):
        assert entry["page"] == "/contacts" and entry["experiments"] == {"hero": hero}
        journey = entry["visit"]
        assert journey["id"] == landing["visit"]["id"]
        assert (journey["source"], journey["medium"], journey["campaign"]) == ("yandex", "cpc", "winter")
        assert journey["phrase"] == "купить чайник" and journey["click_ids"] == {"yclid": "4242"}
        assert journey["landing"] == "/" and [p["path"] for p in journey["pages"]] == ["/", "/contacts"]


def test_repeated_off_page_conversions_count_the_visitor_once_per_cohort(
        shop_with_catalog_experiment: TestClient, clock: Clock) -> None:
    """Three forms, two taps and two goals from /contacts (one form a retried beacon, one tap the
    next day): one converted visitor per kind in each cohort (hero's, sorting's and the site's
    page /), and every distinct event in the totals."""
    shop, visit = shop_with_catalog_experiment, Visit(shop_with_catalog_experiment, "repeat-converter-00000001")
    hero = visit.open("/")["experiments"]["hero"]
    clock.advance(60)
    sorting = visit.open("/catalog")["experiments"]["sorting"]
    clock.advance(60)
    token = visit.open("/contacts")["token"]
    outcomes = [beacon(shop, token, "form", "repeat-form-1")["outcome"],
                beacon(shop, token, "form", "repeat-form-2")["outcome"],
                beacon(shop, token, "form", "repeat-form-1")["outcome"]]  # the first, retried
    assert outcomes == ["counted", "counted", "duplicate"]
    beacon(shop, token, "tel_click", "repeat-tap-1")
    beacon(shop, token, "goal", "repeat-goal-1", name="newsletter")
    beacon(shop, token, "goal", "repeat-goal-2", name="newsletter")
    clock.advance(86_400)  # the next day: a cohort stays the day of first exposure
    beacon(shop, token, "tel_click", "repeat-tap-2")

    rows = variant_rows(shop)
    report = shop.get("/v1/reports/shop", headers=TOKEN).json()
    (site_page,) = [page for page in report["pages"] if page["page"] == "/"]
    for row in (rows["hero", "/", hero], rows["sorting", "/catalog", sorting], site_page):
        assert row["visitors"] == 1
        assert {kind: row["converted"][kind] for kind in ("form", "tel_click", "goal", "goal:newsletter", "any")} == {
            "form": 1, "tel_click": 1, "goal": 1, "goal:newsletter": 1, "any": 1}
        assert (row["totals"]["form"], row["totals"]["tel_click"], row["totals"]["goal"]) == (2, 2, 2)
        assert row["rate"] == 1.0


def test_a_page_view_adds_at_most_five_conversions_of_each_type(shop_with_catalog_experiment: TestClient,
                                                                clock: Clock) -> None:
    """The penetration tester's 30 forms under one page view's token, each with a made-up id: a
    page view adds five of a type, each to the totals and the log, and the rest count nowhere.
    A retry of one of the five is the same form; the visitor's next page view adds its own."""
    shop, visit = shop_with_catalog_experiment, Visit(shop_with_catalog_experiment, "many-forms-sender-0001")
    hero = visit.open("/")["experiments"]["hero"]
    token = visit.open("/contacts")["token"]
    outcomes = [beacon(shop, token, "form", f"made-up-{n}")["outcome"] for n in range(30)]
    assert outcomes == ["counted"] * 5 + ["capped"] * 25
    assert beacon(shop, token, "form", "made-up-2")["outcome"] == "duplicate"
    assert [beacon(shop, token, "tel_click", f"tap-{n}")["outcome"] for n in range(6)] == ["counted"] * 5 + ["capped"]
    clock.advance(60)
    assert beacon(shop, visit.open("/contacts")["token"], "form", "next-view-form")["outcome"] == "counted"

    row = variant_rows(shop)["hero", "/", hero]
    assert (row["converted"]["form"], row["totals"]["form"], row["totals"]["tel_click"]) == (1, 6, 5)
    entries = shop.get("/v1/conversions/shop", headers=TOKEN).json()["entries"]
    assert sorted(entry["id"] for entry in entries if entry["kind"] == "form") == sorted(
        [*(f"form:made-up-{n}" for n in range(5)), "form:next-view-form"])


def test_a_beacon_retried_while_its_token_counts_counts_once(shop_with_catalog_experiment: TestClient,
                                                              clock: Clock) -> None:
    """A browser that lost the answer to its form beacon sends it again when the page is next
    opened, days later: while the token still counts (SWAPLINE_TOKEN_DAYS, 3), it is the same
    form; once the token is too old, the beacon is refused, not counted."""
    shop, visit = shop_with_catalog_experiment, Visit(shop_with_catalog_experiment, "late-retrier-000000001")
    hero = visit.open("/")["experiments"]["hero"]
    token = visit.open("/contacts")["token"]
    assert beacon(shop, token, "form", "late-retry-form")["outcome"] == "counted"
    clock.advance(int(2.9 * 86_400))
    other = Visit(shop, "on-time-converter-0001").open("/contacts")["token"]
    assert beacon(shop, other, "form", "on-time-form")["outcome"] == "counted"  # it trims the old event ids
    assert beacon(shop, token, "form", "late-retry-form")["outcome"] == "duplicate"
    clock.advance(int(0.2 * 86_400))
    body = orjson.dumps({"type": "form", "id": "late-retry-form", "token": token})
    assert shop.post("/v1/events", content=body, headers={"content-type": "text/plain"}).status_code == 401
    assert variant_rows(shop)["hero", "/", hero]["totals"]["form"] == 1

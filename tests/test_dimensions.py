"""Reports by dimension through the real service and store: which source, campaign and search
phrase brought visits, calls and forms, and how well each converts."""

from __future__ import annotations

import csv
import datetime
import io
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.analytics import distinct
from service.analytics.stats import wilson
from service.tracking.counters import counts_key, ids_key, prefix, texts_key
from tests.browser import ARTIFACTS, CLIPPED, chromium, dashboard
from tests.conftest import BROWSER_HEADERS, START, Clock, one_site, site_client, start, stop
from tests.test_visits import AD, ORIGIN, REPORT, SITE, Browser, beacon, call

GOOGLE = f"{ORIGIN}/?utm_source=google&utm_medium=cpc&utm_campaign=winter&utm_term={quote('сплит система')}"
LONG_PHRASE = f"{ORIGIN}/?utm_source=vk&utm_term={quote('кондиционер с установкой под ключ в рассрочку')}"


@pytest.fixture
def climate(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "climate", SITE) as client:
        yield client


def by(client: TestClient, dimensions: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/reports/climate", params={"by": dimensions, **params}, headers=REPORT)
    assert response.status_code == 200, response.text
    return list(response.json()["rows"])


def traffic(client: TestClient, clock: Clock) -> None:
    """Four visits from the Yandex ad (the first calls the number it was shown, the last two,
    who got the overflow number of its two-number pool, send a form), three from Google (one
    form), two direct ones."""
    for n in range(4):
        page = Browser(client, vid=f"yandex-visitor-{n:06d}").open(AD, ref="https://yandex.ru/")
        if n >= 2:
            beacon(client, page["token"], f"yandex-form-{n}")
        if n == 0:
            clock.advance(20)
            call(client, page["phone"]["number"], clock.now, call_id="yandex-call")
    for n in range(3):
        page = Browser(client, vid=f"google-visitor-{n:06d}").open(GOOGLE, ref="https://www.google.com/")
        if n == 0:
            beacon(client, page["token"], "google-form-0")
    for n in range(2):
        Browser(client, vid=f"direct-visitor-{n:06d}").open(f"{ORIGIN}/contacts", ref="")


def test_visits_and_conversions_by_source(climate: TestClient, clock: Clock) -> None:
    traffic(climate, clock)
    rows = {row["source"]: row for row in by(climate, "source")}
    assert {source: row["visits"] for source, row in rows.items()} == {"yandex": 4, "google": 3, "(none)": 2}
    yandex = rows["yandex"]
    assert yandex["conversions"] == {"call": 1, "qualified_call": 1, "missed_call": 0, "form": 2, "tel_click": 0,
                                     "goal": 0}
    assert yandex["converted"] == 3 and yandex["rate"] == 3 / 4  # three of its four visits converted
    interval = wilson(3, 4)
    assert interval is not None and yandex["interval"] == pytest.approx([interval.low, interval.high])
    assert rows["google"]["converted"] == 1 and rows["(none)"]["converted"] == 0
    assert [row["source"] for row in by(climate, "source", sort="converted")][:2] == ["yandex", "google"]


def test_a_visit_that_converts_on_two_days_is_one_converted_visit_of_the_day_it_started(climate: TestClient,
                                                                                         clock: Clock) -> None:
    """A support engineer's reconciling with a CRM: a visit a minute before midnight sent a form
    and called after it. It counted as a converted visit of each day: two over both days, where
    the log has one, and a rate of 2/1 cut to 1/1; the second day alone had none of its visits
    (they start on the first) and yet one converted, cut to 0. Conversions count on their day."""
    zone = climate.app.state.runtime.site("climate").time_zone  # type: ignore[attr-defined]
    started = datetime.datetime.fromtimestamp(clock.now, zone)
    midnight = datetime.datetime.combine(started.date() + datetime.timedelta(days=1), datetime.time(), zone)
    clock.now = midnight.timestamp() - 60
    page = Browser(climate, vid="late-visitor-000001").open(AD, ref="https://yandex.ru/")
    beacon(climate, page["token"], "late-form")
    clock.advance(120)  # the next day
    call(climate, page["phone"]["number"], clock.now, call_id="late-call")
    Browser(climate, vid="next-day-visitor-01").open(AD, ref="https://yandex.ru/")  # no conversion
    first, second = midnight.date() - datetime.timedelta(days=1), midnight.date()

    def yandex(since: datetime.date, until: datetime.date) -> dict[str, Any]:
        (row,) = [row for row in by(climate, "source", **{"from": since.isoformat(), "to": until.isoformat()})
                  if row["source"] == "yandex"]
        return {name: row[name] for name in ("visits", "converted", "conversions", "converted_by_kind")}

    both, day_one, day_two = yandex(first, second), yandex(first, first), yandex(second, second)
    assert (both["visits"], both["converted"]) == (2, 1)
    assert (both["converted_by_kind"]["form"], both["converted_by_kind"]["call"]) == (1, 1)
    assert (day_one["visits"], day_one["converted"]) == (1, 1)  # the late visit, which converted
    assert day_one["converted_by_kind"]["call"] == 1  # on the day it started
    assert (day_two["visits"], day_two["converted"]) == (1, 0)  # the next day's visit did not
    assert (day_one["conversions"]["form"], day_one["conversions"]["call"]) == (1, 0)  # each on its own day
    assert (day_two["conversions"]["form"], day_two["conversions"]["call"]) == (0, 1)


def test_the_sources_tab_names_the_rows_of_no_value_and_devices_in_the_readers_words(climate: TestClient,
                                                                                   clock: Clock) -> None:
    traffic(climate, clock)
    russian = {**REPORT, "accept-language": "ru-RU,ru"}
    by_source = climate.get("/dashboard/climate/sources", params={"by": "source"}, headers=russian).text
    assert "<td>(нет)</td>" in by_source and "(none)" not in by_source  # the direct visits
    assert "<td>yandex</td>" in by_source  # a value as it came
    by_device = climate.get("/dashboard/climate/sources", params={"by": "device"}, headers=russian).text
    assert "<td>компьютер</td>" in by_device and ">desktop<" not in by_device
    assert "<td>(none)</td>" in climate.get("/dashboard/climate/sources", headers=REPORT).text  # in English


def test_calls_credited_to_nobody_are_a_row_of_their_own_so_that_the_calls_add_up(climate: TestClient,
                                                                                  clock: Clock) -> None:
    """The Calls tab lists every call; the Sources tab counts those no visitor held the number
    for as "(not credited)", by their pool where they have one, so the two agree; a call to
    none of the site's numbers (a PBX that reports every line's) is listed, and counted in no
    report: it is no call to the site."""
    traffic(climate, clock)
    call(climate, "+74951700002", START - 600, call_id="before-anyone-held-it")  # the yandex pool's
    call(climate, "+74959999999", clock.now, call_id="no-number-of-the-site")
    rows = {row["source"]: row for row in by(climate, "source")}
    nobody = rows["(not credited)"]
    assert (nobody["visits"], nobody["rate"], nobody["conversions"]["call"]) == (0, None, 1)
    logged = climate.get("/v1/calls/climate", headers=REPORT).json()["entries"]
    assert len(logged) == 3
    assert sum(row["conversions"]["call"] for row in rows.values()) == 2 == len(
        [entry for entry in logged if entry["reason"] != "unknown_number"])
    pools = {row["pool"]: row for row in by(climate, "pool")}
    assert {pool: row["conversions"]["call"] for pool, row in pools.items()} == {"yandex": 2, "everyone": 0}
    assert pools["yandex"]["converted"] == 3  # of its visits: a call credited to nobody converted none
    # However few rows are asked for, calls credited to nobody are no value to add up with others.
    top, nobody, other = by(climate, "source", limit="1")
    assert (top["source"], nobody["source"], other["source"]) == ("yandex", "(not credited)", "(other)")
    assert (other["visits"], other["converted"], other["conversions"]["call"]) == (5, 1, 0)
    # The conversions' file says which calls those are, so that a spreadsheet's count agrees too.
    rows = csv.DictReader(io.StringIO(climate.get("/v1/conversions/climate.csv", headers=REPORT).text))
    assert {(row["id"], row["credited"], row["reason"]) for row in rows if row["kind"] == "call"} == {
        ("call:yandex-call", "true", ""), ("call:before-anyone-held-it", "false", "no_holder"),
        ("call:no-number-of-the-site", "false", "unknown_number")}
    for source, calls in (("(not credited)", {"before-anyone-held-it", "no-number-of-the-site"}),
                          ("(none)", set()), ("yandex", {"yandex-call"})):
        listed = climate.get("/v1/calls/climate", params={"source": source}, headers=REPORT).json()["entries"]
        assert {entry["call_id"] for entry in listed} == calls, source


def test_a_visitor_who_comes_back_counts_as_one_visitor_of_several_visits(climate: TestClient, clock: Clock) -> None:
    returning = Browser(climate, vid="returning-visitor-0001")
    returning.open(AD, ref="https://yandex.ru/")
    clock.advance(31 * 60)  # past the visit timeout: a visit of its own
    returning.open(AD, ref="https://yandex.ru/")
    Browser(climate, vid="once-only-visitor-001").open(AD, ref="https://yandex.ru/")
    Browser(climate, vid="google-visitor-000001").open(GOOGLE, ref="https://www.google.com/")
    assert {(row["source"], row["visits"], row["visitors"]) for row in by(climate, "source")} == {
        ("yandex", 3, 2), ("google", 1, 1)}
    clock.advance(86_400)  # the next day, the same visitor again: still one visitor over both days
    returning.open(AD, ref="https://yandex.ru/")
    (yandex, other) = by(climate, "source", limit="1", **{"from": "2026-11-18", "to": "2026-11-19"})
    assert (yandex["visits"], yandex["visitors"]) == (4, 2) and (other["source"], other["visitors"]) == ("(other)", 1)
    assert {(row["source"], row["campaign"], row["visits"], row["visitors"])
            for row in by(climate, "source,campaign", **{"from": "2026-11-18"})} == {
        ("yandex", "summer", 4, 2), ("google", "winter", 1, 1)}
    csv_rows = list(csv.DictReader(io.StringIO(climate.get(
        "/v1/reports/climate.csv", params={"by": "source"}, headers=REPORT).text)))
    assert {(row["source"], row["visitors"]) for row in csv_rows} == {("yandex", "2"), ("google", "1")}


def test_two_dimensions_filters_and_the_rest_as_other(climate: TestClient, clock: Clock) -> None:
    traffic(climate, clock)
    pairs = {(row["source"], row["phrase"]): row["visits"] for row in by(climate, "source,phrase")}
    assert pairs == {("yandex", "купить кондиционер"): 4, ("google", "сплит система"): 3, ("(none)", "(none)"): 2}
    # The same pairs asked the other way round: each value under its own name, visitors and all.
    reversed_rows = by(climate, "phrase,source")
    assert {(row["source"], row["phrase"]): row["visits"] for row in reversed_rows} == pairs
    assert {(row["phrase"], row["source"]): row["visitors"] for row in reversed_rows} == {
        (row["phrase"], row["source"]): row["visitors"] for row in by(climate, "source,phrase")}
    assert all(row["values"] == [row["phrase"], row["source"]] and row["visitors"] for row in reversed_rows)
    campaigns = by(climate, "campaign", source="google")
    assert [(row["campaign"], row["visits"]) for row in campaigns] == [("winter", 3)]
    for searched in ("сплит система", "Сплит Система", "  СПЛИТ   система "):  # as the ad or the visitor wrote it
        assert [(row["source"], row["visits"]) for row in by(climate, "source", phrase=searched)] == [("google", 3)]
    top, other = by(climate, "landing", limit="1")
    assert (top["landing"], top["visits"]) == ("/", 7) and (other["landing"], other["visits"]) == ("(other)", 2)
    assert by(climate, "source", **{"from": "2026-11-19", "to": "2026-11-20"}) == []  # the test clock's day is the 18th
    csv_rows = list(csv.DictReader(io.StringIO(climate.get(
        "/v1/reports/climate.csv", params={"by": "source,campaign"}, headers=REPORT).text)))
    assert {(row["source"], row["campaign"], row["visits"], row["form"]) for row in csv_rows} == {
        ("yandex", "summer", "4", "2"), ("google", "winter", "3", "1"), ("(none)", "(none)", "2", "0")}


def test_visitors_by_two_dimensions_and_with_filters_are_each_visitor_once(climate: TestClient,
                                                                          clock: Clock) -> None:
    """Fifteen visitors come back, from three sources (one tagged in two letter cases) and two
    campaigns, over three days: each row's visitors are the distinct ones among its visits,
    whatever the dimensions, filters and days asked. A row keeps a source as it came; a filter
    finds it in any letter case, as the logs' filters do."""
    rng = random.Random(5)
    came: list[tuple[str, str, str, str]] = []  # day, source, campaign, visitor
    for day in ("2026-11-18", "2026-11-19", "2026-11-20"):
        for _ in range(40):
            visit = (day, rng.choice(["yandex", "google", "vk", "VK"]), rng.choice(["summer", "winter"]),
                     f"mixed-visitor-{rng.randrange(15):06d}")
            Browser(climate, vid=visit[3]).open(f"{ORIGIN}/?utm_source={visit[1]}&utm_campaign={visit[2]}", ref="")
            came.append(visit)
        clock.advance(86_400)

    def expected(days: tuple[str, ...], source: str | None = None) -> dict[tuple[str, ...], int]:
        groups: defaultdict[tuple[str, ...], set[str]] = defaultdict(set)
        for day, from_source, campaign, visitor in came:
            if day in days and (source is None or source.casefold() == from_source.casefold()):
                groups[(campaign,) if source else (from_source, campaign)].add(visitor)
        return {key: len(visitors) for key, visitors in groups.items()}

    every_day = {"from": "2026-11-18", "to": "2026-11-20"}
    pairs = by(climate, "source,campaign", **every_day)
    assert {tuple(row["values"]): row["visitors"] for row in pairs} == expected(("2026-11-18", "2026-11-19",
                                                                                   "2026-11-20"))
    assert sum(row["visitors"] for row in pairs) > 15  # a visitor came by more than one pair
    for source in ("yandex", "Vk"):
        for days in (("2026-11-19",), ("2026-11-18", "2026-11-19", "2026-11-20")):
            rows = by(climate, "campaign", source=source, **{"from": days[0], "to": days[-1]})
            assert {tuple(row["values"]): row["visitors"] for row in rows} == expected(days, source)
    top, *_, other = by(climate, "source,campaign", limit="2", sort="visitors", **every_day)
    assert top["visitors"] == max(expected(("2026-11-18", "2026-11-19", "2026-11-20")).values())
    listed = {tuple(row["values"]) for row in by(climate, "source,campaign", limit="2", sort="visitors", **every_day)}
    assert other["values"] == ["(other)", "(other)"] and other["visitors"] == len(
        {visitor for _, source, campaign, visitor in came if (source, campaign) not in listed})


def test_days_counted_before_the_tables_of_visits_give_visitors_as_unknown(climate: TestClient, clock: Clock,
                                                                           store: redis.Redis) -> None:
    traffic(climate, clock)
    counted = by(climate, "source", **{"from": "2026-11-17"})
    store.sadd(prefix("climate", "2026-11-17") + "values:source", "yandex")  # as versions before them kept values
    upgraded = by(climate, "source", **{"from": "2026-11-17"})
    assert [row["visitors"] for row in upgraded] == [None] * 3 and all(row["visitors"] for row in counted)
    assert [{**row, "visitors": None} for row in counted] == upgraded  # the visits and conversions are all there
    assert all(row["visitors"] for row in by(climate, "source", **{"from": "2026-11-18"}))  # of the days since


def test_days_counted_before_the_counters_named_values_by_number_add_up_with_the_days_since(
        climate: TestClient, clock: Clock, store: redis.Redis) -> None:
    traffic(climate, clock)
    counted = {pair: by(climate, pair) for pair in ("source", "source,campaign", "campaign,phrase", "city")}
    day = "2026-11-18"
    for key in store.scan_iter(match=counts_key("climate", day, ["*"])):  # as the release before counted them
        names = key.decode().rsplit(":", 1)[1].split(",")
        named = [{number: value for value, number in store.hgetall(ids_key("climate", day, name)).items()}
                 for name in names]
        for field, count in store.hgetall(key).items():
            measure = field.split(b"|")[:-len(names)]
            numbers = field.split(b"|")[-len(names):]
            texts = [values.get(number, b"(other)") for values, number in zip(named, numbers, strict=True)]
            store.hset(texts_key("climate", day, names), b"|".join([*measure, *texts]), count)
        store.delete(key)
    assert {pair: by(climate, pair) for pair in counted} == counted
    page = Browser(climate, vid="upgraded-visitor").open(GOOGLE, ref="https://www.google.com/")
    beacon(climate, page["token"], "upgraded-form")
    rows = {row["source"]: row for row in by(climate, "source")}
    assert (rows["google"]["visits"], rows["google"]["conversions"]["form"]) == (4, 2)  # three before, one since
    assert by(climate, "source", campaign="winter")[0]["visits"] == 4  # a filter finds both


def test_a_report_over_more_visits_than_a_scan_may_read_gives_visitors_as_unknown(
        climate: TestClient, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    traffic(climate, clock)  # nine visits
    monkeypatch.setattr(distinct, "MOST_VISITS", 8)  # as if a site had millions in the report's days
    rows = by(climate, "source,campaign")
    assert [row["visitors"] for row in rows] == [None] * 3 and sum(row["visits"] for row in rows) == 9
    monkeypatch.setattr(distinct, "MOST_VISITS", 9)
    assert sum(row["visitors"] for row in by(climate, "source,campaign")) == 9


def test_every_counter_of_a_day_expires_even_one_lost_and_made_again_during_it(climate: TestClient, clock: Clock,
                                                                                store: redis.Redis) -> None:
    def lifetimes() -> dict[str, int]:
        return {key.decode(): store.ttl(key) for key in store.scan_iter(match="sw:{climate:log}:dims:*")}

    traffic(climate, clock)
    first = lifetimes()
    assert len(first) > 45 and all(0 < ttl <= 400 * 86_400 for ttl in first.values()), first
    day = prefix("climate", "2026-11-18")
    lost = [day + "counts:source,campaign", day + "counts:phrase", day + "ids:phrase", day + "visits"]
    assert store.delete(*lost) == 4  # as an eviction or an operator might, mid-day
    page = Browser(climate, vid="another-yandex-visitor").open(AD, ref="https://yandex.ru/")
    beacon(climate, page["token"], "another-yandex-form")
    again = lifetimes()
    assert set(lost) <= set(again) and all(0 < ttl <= 400 * 86_400 for ttl in again.values()), again
    assert by(climate, "source,campaign")[0]["visits"] == 1  # counted anew since


def test_a_day_that_lost_the_numbers_of_its_values_counts_no_value_under_anothers(
        climate: TestClient, clock: Clock, store: redis.Redis) -> None:
    traffic(climate, clock)  # nine visits, four of them with a phrase
    assert store.delete(ids_key("climate", "2026-11-18", "phrase")) == 1  # its counters still count by number
    Browser(climate, vid="another-google-visitor").open(GOOGLE.replace("utm_term=", "utm_term=" + quote("сплит ")),
                                                        ref="https://www.google.com/")
    assert {row["phrase"]: row["visits"] for row in by(climate, "phrase")} == {"(other)": 10}
    assert {row["source"]: row["visits"] for row in by(climate, "source")} == {"yandex": 4, "google": 4, "(none)": 2}


def test_a_filter_nobody_had_over_the_longest_range_answers_no_rows(climate: TestClient, clock: Clock) -> None:
    traffic(climate, clock)
    longest = {"from": "2025-10-15", "to": "2026-11-18"}  # 400 days, the most a report covers
    assert by(climate, "campaign", source="%|" * 2000, **longest) == []  # '%' and '|' as the counters escape them
    assert sum(row["visitors"] for row in by(climate, "source,campaign", **longest)) == 9
    Browser(climate, vid="piped-visitor-000001").open(f"{ORIGIN}/?utm_source=vk&utm_campaign={quote('зима|50%')}",
                                                      ref="")
    (piped,) = by(climate, "source", campaign="зима|50%", **longest)  # found as it came, escaping and all
    assert (piped["source"], piped["visits"], piped["visitors"]) == ("vk", 1, 1)


def test_a_conversion_counts_in_the_row_of_its_visit_whatever_its_phrase_and_campaign_hold(
        climate: TestClient) -> None:
    # A visit is counted from its page view, its conversions from its stored record: both must
    # give each dimension the same value, the phrase as keywords read it, '|' and '%' escaped.
    odd = f"{ORIGIN}/?utm_source=yandex&utm_campaign={quote('Зима|50%')}&utm_term={quote('Купить  Ёлку!')}"
    page = Browser(climate, vid="odd-phrase-visitor-01").open(odd, ref="")
    beacon(climate, page["token"], "odd-phrase-form")
    (row,) = by(climate, "campaign,phrase")
    assert (row["campaign"], row["phrase"]) == ("Зима|50%", "купить елку")
    assert (row["visits"], row["conversions"]["form"], row["converted"]) == (1, 1, 1)


def test_a_worker_loads_numpy_only_to_count_visitors() -> None:
    """numpy's libquadmath slows every printf of the process (hiredis's packing among them):
    the service imports it when a report first counts visitors, not before."""
    check = ("import sys; from service.app import create_app; from service.cli import main; "
             "import service.analytics.distinct; print('numpy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout == "False\n"


def test_cities_and_regions_are_named_as_the_sites_decisions_name_them(climate: TestClient, clock: Clock) -> None:
    """A Russian site's decisions say «Москва»: so do its reports, and a filter may say either.
    A region's row is its name too, not its code (RU-SPE); the filter takes either."""
    for n, address in enumerate(("46.242.0.1", "46.242.0.1", "95.161.0.1")):  # Moscow twice, Saint Petersburg
        shown = Browser(climate, vid=f"city-visitor-{n:06d}", headers={"x-forwarded-for": address}).open(AD)
        assert shown["geo"]["city"] == ("Санкт-Петербург" if n == 2 else "Москва")
    assert {row["city"]: row["visits"] for row in by(climate, "city")} == {"Москва": 2, "Санкт-Петербург": 1}
    for named in ("Москва", "Moscow", "мск"):
        (row,) = by(climate, "source", city=named)
        assert (row["source"], row["visits"], row["visitors"]) == ("yandex", 2, 2), named
    rows = by(climate, "region,source")
    assert {(row["region"], row["visits"]) for row in rows} == {("Москва", 2), ("Санкт-Петербург", 1)}
    assert all(row["values"][0] == row["region"] for row in rows)
    for named in ("Санкт-Петербург", "Saint Petersburg", "RU-SPE"):
        (row,) = by(climate, "source", region=named)
        assert (row["source"], row["visits"]) == ("yandex", 1), named


def test_visitors_by_first_page_and_by_experiment_variant(climate: TestClient, clock: Clock) -> None:
    traffic(climate, clock)
    pages = {row["page"]: row for row in by(climate, "page")}
    # Those who got an overflow number are left out of the rate, as the experiment report leaves
    # them out of a rate a call counts in: two of Yandex's four, and of the five the two-number
    # pool "everyone" met, the last three. Their forms count as forms.
    assert {page: (row["visits"], row["visitors"]) for page, row in pages.items()} == {
        "/": (None, 4), "/contacts": (None, 0)}
    assert pages["/"]["converted"] == 2 and pages["/"]["conversions"]["form"] == 3
    variants = {row["variant"]: row for row in by(climate, "variant")}
    assert set(variants) == {"cta:control", "cta:call-now"}
    assert sum(row["visitors"] for row in variants.values()) == 4
    assert sum(row["converted"] for row in variants.values()) == 2
    report = climate.get("/v1/reports/climate", params={"metric": "any"}, headers=REPORT).json()
    (experiment,) = [table for table in report["experiments"] if table["page"] == "/"]
    assert {f"cta:{row['variant']}": row["visitors"] for row in experiment["variants"]} == {
        name: row["visitors"] for name, row in variants.items()}  # the experiment report's figures
    tab = climate.get("/dashboard/climate/sources", params={"by": "page"}, headers=REPORT).text
    assert "<th>Converted visitors</th>" in tab and "Converted visits" not in tab  # they count visitors


@pytest.mark.parametrize("params", [{"by": "colour"}, {"by": "source,campaign,phrase"}, {"by": "source,source"},
                                    {"by": "source,campaign", "phrase": "x"}, {"by": "source", "sort": "luck"},
                                    {"by": "source", "limit": "0"}, {"by": "source", "from": "yesterday"},
                                    {"by": "source", "from": "2026-11-20", "to": "2026-11-01"},
                                    {"by": "page,source"}, {"by": "variant", "source": "yandex"},
                                    {"by": "source", "variant": "hero:b"}, {"by": "source", "experiment": "hero"}])
def test_a_report_by_dimension_that_makes_no_sense_is_a_clear_400(climate: TestClient, params: dict[str, str]) -> None:
    refused = climate.get("/v1/reports/climate", params=params, headers=REPORT)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_filter"


def test_the_dashboard_shows_sources_with_their_rates(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """In Chromium: the Sources tab, by source and then by source and campaign."""
    rules = one_site(tmp_path, "climate", SITE)
    service, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules),
                          SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        with httpx.Client(base_url=base, headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}) as http:
            for n, (url, converts) in enumerate([(AD, True), (AD, False), (GOOGLE, False), (GOOGLE, False),
                                                 (LONG_PHRASE, False)]):
                shown = http.get("/v1/decide", params={"site": "climate", "url": url, "vid": f"tab-visitor-{n:06d}"})
                if converts:
                    form = orjson.dumps({"type": "form", "id": f"tab-form-{n}", "token": shown.json()["token"]})
                    assert http.post("/v1/events", content=form, headers={"origin": ORIGIN}).status_code == 202
        with chromium() as browser:
            page = dashboard(browser, base, "climate", "climate-report-token-0001")
            page.get_by_role("link", name="Sources").click()
            cells = [row.locator("td").all_inner_texts() for row in page.locator("#sources tbody tr").all()]
            assert [(row[0], row[1], row[2], row[6], row[10]) for row in cells] == [
                ("google", "2", "2", "0", "0.0%"), ("yandex", "2", "2", "1", "50.0%"), ("vk", "1", "1", "0", "0.0%")]
            assert page.locator("svg.chart rect.bar").count() == 3
            page.select_option("select[name=by]", "source,campaign")
            page.get_by_role("button", name="Show").click()
            page.wait_for_url("**by=source%2Ccampaign**")
            assert page.locator("#sources thead th").all_inner_texts()[:4] == ["Source", "Campaign", "Visits",
                                                                                "Visitors"]
            cells = [row.locator("td").all_inner_texts() for row in page.locator("#sources tbody tr").all()]
            assert [row[:4] for row in cells] == [["google", "winter", "2", "2"], ["yandex", "summer", "2", "2"],
                                                  ["vk", "(none)", "1", "1"]]
            page.goto(page.url.replace("campaign", "phrase"))
            labels = page.locator("svg.chart text[text-anchor=end]").evaluate_all("(ts) => ts.map(t => t.textContent)")
            assert "vk · кондиционер с установкой п…" in labels  # cut to fit, and said so
            assert page.locator("svg.chart").evaluate_all(CLIPPED) == []
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-sources.png"), full_page=True)
    finally:
        stop(service)

"""A site's days are its own: reports, logs and the dashboard count and show them on the clocks
of its `time_zone`, as the ad platforms' and Metrica's reports do for the account's."""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import redis
from starlette.testclient import TestClient

from service.tracking.clock import hour_and_day
from service.tracking.journal import LogQuery
from tests.conftest import Clock, site_client
from tests.test_visits import AD, ORIGIN, REPORT, SITE, Browser, beacon, call

VLADIVOSTOK = SITE.replace("site: climate\n", "site: climate\ntime_zone: Asia/Vladivostok\n")  # UTC+10
GOOGLE = f"{ORIGIN}/?utm_source=google&utm_medium=cpc"


@pytest.fixture
def far_east(valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock) -> Iterator[TestClient]:
    with site_client(valkey_url, rules_dir, clock, "climate", VLADIVOSTOK) as client:
        yield client


def report(client: TestClient, path: str = "/v1/reports/climate", **params: Any) -> Any:
    response = client.get(path, params=params, headers=REPORT)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_site_counts_its_days_by_its_own_clocks(far_east: TestClient, clock: Clock) -> None:
    """The test clock starts at 11:06 UTC on 18 November: 21:06 in Vladivostok. Three hours on
    it is still the 18th in UTC and already the 19th there: the second visit, its call and its
    experiment cohort are the 19th's."""
    evening = Browser(far_east, vid="evening-visitor-00001").open(AD, ref="https://yandex.ru/")
    beacon(far_east, evening["token"], "evening-form")
    clock.advance(3 * 3600)
    night = Browser(far_east, vid="night-visitor-0000001").open(GOOGLE, ref="https://www.google.com/")
    call(far_east, night["phone"]["number"], clock.now, call_id="night-call")

    def sources(day: str) -> dict[str, int]:
        rows = report(far_east, by="source", **{"from": day, "to": day})["rows"]
        return {row["source"]: row["visits"] for row in rows}

    assert sources("2026-11-18") == {"yandex": 1} and sources("2026-11-19") == {"google": 1}
    assert {row["source"] for row in report(far_east, by="source")["rows"]} == {"yandex", "google"}  # to the 19th
    cohorts = report(far_east, **{"from": "2026-11-19"})["experiments"][0]["variants"]
    assert sum(row["visitors"] for row in cohorts) == 1  # the night's visitor: the evening's is the 18th's
    calls = report(far_east, "/v1/calls/climate", **{"from": "2026-11-19", "to": "2026-11-19"})["entries"]
    assert [entry["call_id"] for entry in calls] == ["night-call"]
    assert report(far_east, "/v1/calls/climate", to="2026-11-18")["entries"] == []
    conversions = report(far_east, "/v1/conversions/climate", to="2026-11-18")["entries"]
    assert [entry["id"] for entry in conversions] == ["form:evening-form"]
    (_, row) = csv.reader(io.StringIO(far_east.get("/v1/calls/climate.csv", headers=REPORT).text))
    assert row[0] == "2026-11-19T00:06:40+10:00"  # on the site's clocks, with the offset that says so
    book = openpyxl.load_workbook(io.BytesIO(far_east.get("/v1/calls/climate.xlsx", headers=REPORT).content)).active
    assert book is not None and book["A2"].value.isoformat() == "2026-11-19T00:06:40"  # as Excel shows the time
    page = far_east.get("/dashboard/climate/calls", headers=REPORT).text
    assert "Started (Asia/Vladivostok)" in page and "2026-11-19 00:06:40" in page
    sources_page = far_east.get("/dashboard/climate/sources", headers=REPORT).text
    assert 'name="to" value="2026-11-19"' in sources_page  # the site's today


def test_a_site_without_a_time_zone_counts_utc_days(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                    clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "climate", SITE) as client:
        Browser(client, vid="evening-visitor-00001").open(AD, ref="https://yandex.ru/")
        clock.advance(3 * 3600)
        Browser(client, vid="night-visitor-0000001").open(GOOGLE, ref="https://www.google.com/")
        rows = report(client, by="source", **{"from": "2026-11-18", "to": "2026-11-18"})["rows"]
        assert {row["source"]: row["visits"] for row in rows} == {"yandex": 1, "google": 1}


@pytest.mark.parametrize(("zone", "day", "first", "last"), [
    ("Europe/Moscow", "2026-11-19", "2026-11-18T21:00:00+00:00", "2026-11-19T20:59:59.999000+00:00"),
    ("Asia/Kathmandu", "2026-11-19", "2026-11-18T18:15:00+00:00", "2026-11-19T18:14:59.999000+00:00"),  # +05:45
    ("America/New_York", "2026-11-01", "2026-11-01T04:00:00+00:00", "2026-11-02T04:59:59.999000+00:00"),  # 25 hours
])
def test_a_logs_day_runs_from_midnight_to_midnight_on_the_sites_clocks(zone: str, day: str, first: str,
                                                                       last: str) -> None:
    query = LogQuery.parse({"from": day, "to": day}, ZoneInfo(zone))
    assert query.since_ms is not None and query.until_ms is not None
    assert [datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat()
            for ms in (query.since_ms, query.until_ms)] == [first, last]


def test_an_hour_and_a_day_on_clocks_a_quarter_hour_off_the_utc_hour() -> None:
    kathmandu = ZoneInfo("Asia/Kathmandu")  # +05:45: its midnight is 18:15 UTC
    midnight = int(datetime.datetime(2026, 11, 18, 18, 15, tzinfo=datetime.UTC).timestamp() * 1000)
    assert hour_and_day(midnight - 1, kathmandu) == ("2026-11-18T23", "2026-11-18")
    assert hour_and_day(midnight, kathmandu) == ("2026-11-19T00", "2026-11-19")
    assert hour_and_day(midnight) == ("2026-11-18T18", "2026-11-18")  # UTC unless a zone is given


@pytest.mark.parametrize("address", [
    "/v1/reports/climate?by=source&to=0001-01-05", "/v1/reports/climate?by=source&from=9999-12-31&to=9999-12-31",
    "/v1/reports/climate.xlsx?to=0001-01-01", "/v1/calls/climate?to=9999-12-31",
    "/v1/calls/climate.xlsx?from=9999-12-31&to=9999-12-31", "/v1/conversions/climate.csv?from=0001-01-01&to=0001-01-01",
    "/v1/exports/climate/metrica.csv?to=9999-12-31", "/dashboard/climate/sources?to=0001-01-05",
    "/dashboard/climate/calls?to=9999-12-31",
])
def test_the_first_and_last_days_a_calendar_has_answer_nothing_found(far_east: TestClient, address: str) -> None:
    """Days as far as a date goes, on clocks ten hours ahead: no day before or after them to reach."""
    response = far_east.get(address, headers=REPORT)
    assert response.status_code == 200, response.text

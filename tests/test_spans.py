"""The ledger's spans of days, on a real store: a cohort day's counts reach every span that
holds it, the counts over any days are the days' own added up (from the fewest spans), the
store numbers days as Python does, and a ledger kept the way it was before spans is moved
into them once, whoever moves it."""

from __future__ import annotations

import asyncio
import datetime
import random
from pathlib import Path

import redis
from hypothesis import given
from hypothesis import strategies as st

from service.tracking import upgrade
from service.tracking.ledger import Ledger, LedgerKeys, day_name, day_number, tiles
from service.tracking.store import Script, Store, connect
from tests.conftest import CLUSTER, START, Clock, site_client
from tests.test_reports import SHOP, TOKEN, beacon

NUMBERED = "local n = {} for i = 1, #ARGV do n[i] = day_number(ARGV[i]) end return n"


def test_the_store_numbers_days_as_python_does(store: redis.Redis) -> None:
    start = datetime.date(1899, 12, 20)
    days = [(start + datetime.timedelta(days=n)).isoformat() for n in range(0, 80_000, 13)]
    days += ["1970-01-01", "1969-12-31", "2000-02-29", "2024-02-29", "2100-02-28", "2100-03-01", "2026-12-31"]
    source = Script.named("spans").source + NUMBERED
    assert store.eval(source, 0, *days) == [day_number(day) for day in days]  # type: ignore[no-untyped-call]


@given(st.integers(0, 40_000), st.integers(0, 900))
def test_tiles_cover_each_day_once_with_few_aligned_spans(first: int, more: int) -> None:
    spans = tiles(first, first + more)
    covered = [day for start, length in spans for day in range(start, start + length)]
    assert covered == list(range(first, first + more + 1))
    assert all(length in (1, 4, 16, 64) and start % length == 0 for start, length in spans)
    assert len(spans) <= 2 * 3 * 3 + (more + 1) // 64  # up to three of each shorter length at either end


def test_counts_over_any_days_are_the_days_own_added_up(valkey_url: str, store: redis.Redis) -> None:
    rng = random.Random(7)
    first = day_number("2026-08-30")
    days = [day_name(first + n) for n in range(75)]

    ranges = [tuple(sorted(rng.sample(days, 2))) for _ in range(60)] + [(days[0], days[-1]), (days[5], days[5])]

    async def scenario() -> list[dict[bytes, int]]:
        ledger = Ledger(Store(connect(valkey_url, cluster=CLUSTER)), keep_days=400)
        for n in range(600):
            vid, day = f"span-visitor-{n:06d}", rng.choice(days)
            commands, _ = ledger.exposures("spans", vid, rng.choice(["/", "/a", "/b|c"]), day,
                                           {"hero": rng.choice(["control", "b"])})
            await ledger.store.batcher.submit(*commands)
            if n % 3 == 0:
                await ledger.convert("spans", vid, ["hero"], f"event-{n}", [rng.choice(["form", "call"])], 0)
            if n % 17 == 0:
                await ledger.store.batcher.submit(*ledger.overflows("spans", vid, ["hero"]))
        answers = [await ledger.counts("spans", "hero", since, until) for since, until in ranges]
        await ledger.store.close()
        return answers

    keys = LedgerKeys.of("spans", "hero")

    def pages(counts: dict[bytes, int]) -> dict[bytes, int]:
        return {name: n for name, n in counts.items() if b"|*|" not in name}  # the days' totals are no page

    def day_by_day(since: str, until: str) -> dict[bytes, int]:
        added: dict[bytes, int] = {}
        for number in range(day_number(since), day_number(until) + 1):
            for name, value in store.hgetall(keys.span(number, 1)).items():
                added[name] = added.get(name, 0) + int(value)
        return pages(added)

    for (since, until), counted in zip(ranges, asyncio.run(scenario()), strict=True):
        assert pages(counted) == day_by_day(since, until), (since, until)
    assert sum(n for name, n in day_by_day(days[0], days[-1]).items() if name.startswith(b"e|")) == 600
    spans = list(store.scan_iter(match=f"{keys.prefix}days:*"))
    assert {int(key.rsplit(b":", 1)[1]) for key in spans} == {1, 4, 16, 64}
    assert all(0 < store.ttl(key) <= 400 * 86_400 for key in spans)


def test_a_report_over_all_of_time_reads_the_days_kept(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                        clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "shop", SHOP) as shop:
        for n in range(3):
            shop.get("/v1/decide", params={"site": "shop", "url": "/", "vid": f"all-of-time-{n:06d}"})
        plain = shop.get("/v1/reports/shop", headers=TOKEN).json()
        ever = shop.get("/v1/reports/shop", params={"from": "0001-01-01", "to": "9999-12-31"}, headers=TOKEN).json()
        # Fields no script writes (a hand-edited store, a newer version's) are passed over.
        store.hset(LedgerKeys.of("shop", "hero").span(day_number("2026-11-18"), 1),
                   mapping={"junk": 5, "e|/only-a-page": 7, "z|/|b": 9, "u|/|b": 4, "e|/|b|form": 3})
        odd = shop.get("/v1/reports/shop", headers=TOKEN)
        by_page = shop.get("/v1/reports/shop", params={"by": "page"}, headers=TOKEN)
    assert sum(row["exposed"] for table in ever["experiments"] for row in table["variants"]) == 3
    assert ever["experiments"] == plain["experiments"] and ever["pages"] == plain["pages"]
    assert odd.status_code == 200 and odd.json()["experiments"] == plain["experiments"]
    assert by_page.status_code == 200 and sum(row["visitors"] for row in by_page.json()["rows"]) == 3


OLD_LEDGER = {  # what the scripts before spans wrote: "DAY|PAGE|VARIANT[|KIND]" -> count
    "sw:{shop/hero}:exposed": {"2026-11-17|/|control": 40, "2026-11-17|/|b": 38, "2026-11-18|/sale|b": 5,
                               "not-a-day|/|b": 3},
    "sw:{shop/hero}:overflow": {"2026-11-17|/|control": 2},
    "sw:{shop/hero}:conversions": {"2026-11-17|/|b|form": 4, "2026-11-17|/|b|any": 4},
    "sw:{shop/hero}:totals": {"2026-11-17|/|b|form": 6, "2026-11-17|/|b|any": 6},
    "sw:{shop/hero}:excluded": {"2026-11-17|/|control|any": 1},
    "sw:{shop/_site}:exposed": {"2026-11-17|/|all": 78, "2026-11-18|/sale|all": 5},
    "sw:{shop/_site}:overflow": {"2026-11-17|/|all": 2},
    "sw:{shop/_site}:excluded": {"2026-11-17|/|all|any": 1},
}


def test_a_ledger_kept_before_spans_is_moved_into_them_once(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                             clock: Clock) -> None:
    for key, fields in OLD_LEDGER.items():
        store.hset(key, mapping=fields)

    async def together() -> None:  # two processes start at once: each field moves once
        stores = [Store(connect(valkey_url, cluster=CLUSTER)) for _ in range(2)]
        await asyncio.gather(*(upgrade.respan(each, 400) for each in stores))
        await asyncio.gather(*(each.close() for each in stores))

    asyncio.run(together())
    assert not any(store.exists(key) for key in OLD_LEDGER) and store.get(upgrade.DONE) == b"1"
    with site_client(valkey_url, rules_dir, clock, "shop", SHOP) as shop:
        report = shop.get("/v1/reports/shop", headers=TOKEN).json()
        week = shop.get("/v1/reports/shop", params={"from": "2026-11-18"}, headers=TOKEN).json()
    rows = {(table["page"], row["variant"]): row for table in report["experiments"] for row in table["variants"]}
    assert (rows["/", "control"]["exposed"], rows["/", "control"]["overflowed"]) == (40, 2)
    b = rows["/", "b"]
    assert (b["exposed"], b["converted"]["form"], b["totals"]["form"]) == (38, 4, 6)
    assert rows["/sale", "b"]["exposed"] == 5
    assert {day["day"] for table in report["experiments"] for day in table["daily"]} == {"2026-11-17", "2026-11-18"}
    assert [(page["page"], page["visitors"]) for page in report["pages"]] == [("/", 76), ("/sale", 5)]
    assert report["excluded"]["overflowed_visitors"] == 2 and report["excluded"]["overflowed_conversions"] == 1
    assert [table["page"] for table in week["experiments"]] == ["/sale"]


WIDE = """
site: wide
origins: [https://wide.example]
reports: {token: wide-report-token-0001}
experiments:
  - id: hero
    variants:
      - {id: control, weight: 50}
      - {id: b, weight: 50, swap: [{selector: h1, text: b}]}
"""


def test_the_other_row_of_a_report_adds_up_the_pages_past_its_limit(valkey_url: str, rules_dir: Path,
                                                                      store: redis.Redis, clock: Clock) -> None:
    wide = {"authorization": "Bearer wide-report-token-0001"}
    with site_client(valkey_url, rules_dir, clock, "wide", WIDE) as client:
        for n in range(60):  # four pages, the first the busiest, over three days
            clock.now = START + (n % 3) * 86_400 + n
            page = ["/a", "/a", "/b", "/c", "/d"][n % 5]
            body = client.get("/v1/decide", params={"site": "wide", "url": page, "vid": f"wide-visitor-{n:06d}"})
            if n % 4 == 0:
                beacon(client, body.json()["token"], "form", f"wide-form-{n}")
        clock.now = START + 3 * 86_400
        every = client.get("/v1/reports/wide", params={"metric": "form"}, headers=wide).json()["experiments"]
        top = client.get("/v1/reports/wide", params={"metric": "form", "limit": "1"}, headers=wide).json()
    assert [table["page"] for table in every] == ["/a", "/b", "/c", "/d"]
    assert [table["page"] for table in top["experiments"]] == ["/a", "(other)"]
    assert top["experiments"][0] == every[0]
    other, rest = top["experiments"][1], every[1:]
    for variant, row in enumerate(other["variants"]):
        assert row["exposed"] == sum(table["variants"][variant]["exposed"] for table in rest)
        assert row["converted"]["form"] == sum(table["variants"][variant]["converted"]["form"] for table in rest)
    added: dict[tuple[str, str], list[int]] = {}
    for table in rest:
        for day in table["daily"]:
            counts = added.setdefault((day["day"], day["variant"]), [0, 0])
            counts[0] += day["visitors"]
            counts[1] += day["converted"]
    assert {(day["day"], day["variant"]): [day["visitors"], day["converted"]] for day in other["daily"]} == added
    assert len({day for day, _ in added}) == 3 and sum(visitors for visitors, _ in added.values()) == 36

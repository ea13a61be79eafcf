"""Made-up page paths and goal names: counted under "(other)" past the day's most, so they
can grow neither the store nor the reports, and no report holds the event loop for long."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import orjson
import redis

from service.app import create_app
from service.tracking.ledger import LedgerKeys, day_number
from tests.conftest import START, make_settings
from tests.loop import BUDGET, LoopWatch, serving

CATALOGUE = """
site: catalogue
reports: { token: catalogue-report-token-01 }
experiments:
  - id: hero
    variants:
      - { id: control, weight: 50 }
      - { id: b, weight: 50, swap: [{ selector: h1, text: b }] }
"""
TOKEN = {"authorization": "Bearer catalogue-report-token-01"}
PAGES, GOALS = 8_000, 200
DAY = "2026-11-18"  # START's day


def test_made_up_pages_and_goal_names_are_capped(valkey_url: str, rules_dir: Path, store: redis.Redis) -> None:
    (rules_dir / "catalogue.yaml").write_text(CATALOGUE)

    async def scenario() -> dict[str, Any]:
        app = create_app(make_settings(valkey_url, rules_dir))
        seen: dict[str, Any] = {}
        async with serving(app) as http:
            app.state.runtime.clock = lambda: START
            tokens = []
            for n in range(PAGES):  # one visitor each, from addresses of their own
                body = (await http.get("/v1/decide", headers={"x-forwarded-for": f"100.64.{n // 250}.{n % 250}"},
                                       params={"site": "catalogue", "url": f"/made-up/{n}", "vid": f"card-{n:012d}"}))
                tokens.append(body.json()["token"])
            for n in range(GOALS):  # goals each with a name never seen before, five a page view (its most)
                event = {"type": "goal", "id": f"g{n}", "name": f"invented-{n}", "token": tokens[n // 5]}
                assert (await http.post("/v1/events", content=orjson.dumps(event))).status_code == 202
            async with LoopWatch() as watch:
                seen["report"] = (await http.get("/v1/reports/catalogue", headers=TOKEN)).json()
                seen["csv"] = (await http.get("/v1/reports/catalogue.csv", headers=TOKEN)).text
                seen["dashboard"] = (await http.get("/dashboard/catalogue", headers=TOKEN)).text
                seen["all"] = (await http.get("/v1/reports/catalogue", params={"limit": "1000"}, headers=TOKEN)).json()
            seen["longest"] = watch.longest
        return seen

    seen = asyncio.run(scenario())
    keys = LedgerKeys.of("catalogue", "_site")
    assert store.scard(keys.pages(DAY)) == 1000  # SWAPLINE_MAX_PAGES
    exposed = [name for name in store.hkeys(keys.span(day_number(DAY), 1)) if name.startswith(b"e|")]
    assert len(exposed) == 1002  # the pages, "(other)" for the 7,000 others, and the day's total
    assert store.scard(keys.goals(DAY)) == 100  # SWAPLINE_MAX_GOALS
    assert 0 < store.ttl(keys.pages(DAY)) <= 2 * 86_400

    report = seen["report"]
    pages = [page["page"] for page in report["pages"]]
    assert len(pages) == 101 and pages[-1] == "(other)"  # the 100 most visited (`limit`), then the rest
    assert sum(page["visitors"] for page in report["pages"]) == PAGES  # nobody is lost in "(other)"
    goals = {kind for page in seen["all"]["pages"] for kind, count in page["totals"].items()
             if kind.startswith("goal:") and count}
    assert len(goals) == 101 and "goal:(other)" in goals
    assert sum(page["totals"].get("goal:(other)", 0) for page in seen["all"]["pages"]) == 100
    assert [table["page"] for table in report["experiments"]][-1] == "(other)"
    assert sum(row["visitors"] for table in report["experiments"] for row in table["variants"]) == PAGES
    assert len(seen["all"]["pages"]) == 1001 and sum(p["visitors"] for p in seen["all"]["pages"]) == PAGES

    rows = list(csv.DictReader(io.StringIO(seen["csv"])))
    assert sum(row["section"] == "page" for row in rows) == 101
    assert len(seen["dashboard"]) < 300_000  # 20 pages and their tables, not 8,000
    assert seen["dashboard"].count('<section class="experiment"') == 21
    assert seen["longest"] < BUDGET, f"a report held the event loop for {seen['longest'] * 1000:.0f} ms of CPU"

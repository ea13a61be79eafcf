"""The rules engine, driven by the language-neutral cases in cases/engine.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.front.decide import page_view
from service.rules import links
from service.rules.engine import PLANS_KEPT, Site, decide, planned
from service.rules.geo import Geo
from service.rules.pageview import PageView
from service.rules.rulefiles import load
from tests.conftest import BROWSER, CASES, swaps_of

ENGINE_CASES = json.loads((CASES / "engine.json").read_text())


def compile_site(data: dict[str, Any], tmp_path: Path) -> Site:
    (tmp_path / "site.yaml").write_text(json.dumps(data, ensure_ascii=False))  # JSON is YAML
    return load(tmp_path).sites[data["site"]]


def make_visit(case: dict[str, Any], vid: str = "case-visitor-00000001") -> PageView:
    geo_data = case.get("geo", {})
    ru, en = geo_data.get("city", [None, None])
    names = {lang: {"city": name} for lang, name in (("ru", ru), ("en", en)) if name}
    geo = Geo(geo_data.get("country"), geo_data.get("region"), en, names)
    return page_view(case["url"], case.get("ref"), vid, geo, case.get("ua", BROWSER))


@pytest.mark.parametrize("case", ENGINE_CASES, ids=[case["name"] for case in ENGINE_CASES])
def test_engine_case(case: dict[str, Any], tmp_path: Path) -> None:
    site = compile_site(case["site"], tmp_path)
    for visit_case in case["visits"]:
        outcome = decide(site, make_visit(visit_case), forced=visit_case.get("forced"))
        expect = visit_case["expect"]
        if "swaps" in expect:
            assert swaps_of(outcome) == expect["swaps"], visit_case["url"]
        if "experiments" in expect:
            assert outcome.experiments == expect["experiments"], visit_case["url"]
        if "pool" in expect:
            assert (outcome.pool.id if outcome.pool else None) == expect["pool"], visit_case["url"]


def test_city_condition_matches_city_names_only(tmp_path: Path) -> None:
    site = compile_site({"site": "s", "rules": [{"id": "r", "when": {"city": "Москва"},
                                                 "swap": [{"selector": "h1", "text": "x"}]}]}, tmp_path)
    zelenograd = Geo("RU", "RU-MOW", "Zelenograd", {"ru": {"city": "Зеленоград", "region": "Москва"}})
    assert decide(site, page_view("/", None, "case-visitor-00000001", zelenograd, BROWSER)).swaps == ()


@pytest.mark.parametrize(("value", "allowed"), [
    ("/catalog/split?x=1#a", True), ("kazan.jpg", True), ("//cdn.example/a.jpg", True), ("HTTPS://example.ru", True),
    ("java script:alert(1)", True),  # a browser reads it as a relative path
    ("javascript:alert(1)", False), ("JavaScript:alert(1)", False), ("java\tscript:alert(1)", False),
    ("java\nscript:alert(1)", False), (" \x01javascript:alert(1)", False), ("data:image/png;base64,AAAA", False),
    ("vbscript:x", False), ("mailto:a@b.ru", False), ("", False), (" ", False),
])
def test_addresses_a_swap_may_set(value: str, allowed: bool) -> None:
    assert links.address(value) is allowed


@pytest.mark.parametrize(("value", "allowed"), [
    ("/a.jpg", True), ("/a.jpg 1x, /a@2x.jpg 2x", True), ("a.jpg 480w,b.jpg 800w", True), ("/a.jpg 1.5x", True),
    ("/a.jpg 2x, javascript:x 1x", False), ("data:image/png;base64,AAAA 1x", False), ("/a.jpg 2y", False),
    ("/a.jpg 1x 2x", False), ("/a.jpg,,/b.jpg", False), ("", False),
])
def test_srcsets_a_swap_may_set(value: str, allowed: bool) -> None:
    assert links.srcset(value) is allowed


def test_the_sites_of_a_worker_share_one_memo_of_plans_that_keeps_the_most_recent(tmp_path: Path) -> None:
    """A worker serving many sites keeps `PLANS_KEPT` plans in all, not as many a site: three
    sites, each with more page views than half of that, leave the first site's plans out."""
    sites = []
    for n in range(3):
        (tmp_path / f"s{n}").mkdir()
        sites.append(compile_site({"site": f"s{n}", "rules": [{"id": "lead", "swap": [
            {"selector": "h1", "text": "{{ phrase }}"}]}]}, tmp_path / f"s{n}"))
    views = [make_visit({"url": f"/?utm_term=товар+{n}"}) for n in range(PLANS_KEPT // 2)]
    planned.cache_clear()
    for site in sites:
        for view in views:
            assert swaps_of(decide(site, view)) == {"h1": view.phrase}
    assert planned.cache_info().currsize == PLANS_KEPT
    made = planned.cache_info().misses
    decide(sites[1], views[0])
    decide(sites[2], views[-1])
    assert planned.cache_info().misses == made  # the two sites used last: remembered
    decide(sites[0], views[-1])
    assert planned.cache_info().misses == made + 1  # the first: made again

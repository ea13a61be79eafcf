"""The rules engine, driven by the language-neutral cases in cases/engine.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.front.decide import page_view
from service.rules.engine import PageView, Site, decide
from service.rules.geo import Geo
from service.rules.rulefiles import load
from tests.conftest import BROWSER, CASES

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
            assert dict(outcome.swaps) == expect["swaps"], visit_case["url"]
        if "experiments" in expect:
            assert outcome.experiments == expect["experiments"], visit_case["url"]
        if "pool" in expect:
            assert (outcome.pool.id if outcome.pool else None) == expect["pool"], visit_case["url"]


def test_city_condition_matches_city_names_only(tmp_path: Path) -> None:
    site = compile_site({"site": "s", "rules": [{"id": "r", "when": {"city": "Москва"},
                                                 "swap": [{"selector": "h1", "text": "x"}]}]}, tmp_path)
    zelenograd = Geo("RU", "RU-MOW", "Zelenograd", {"ru": {"city": "Зеленоград", "region": "Москва"}})
    assert decide(site, page_view("/", None, "case-visitor-00000001", zelenograd, BROWSER)).swaps == ()

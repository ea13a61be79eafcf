"""The rules engine, driven by the language-neutral cases in cases/engine.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.engine import Site, Visit, decide, normalise_path
from service.geo import Geo
from service.phrase import lemmas, normalise, parse_traffic
from service.rulefiles import load
from service.visitors import device, is_bot
from tests.conftest import BROWSER, CASES

ENGINE_CASES = json.loads((CASES / "engine.json").read_text())


def compile_site(data: dict[str, Any], tmp_path: Path) -> Site:
    (tmp_path / "site.yaml").write_text(json.dumps(data, ensure_ascii=False))  # JSON is YAML
    return load(tmp_path).sites[data["site"]]


def make_visit(case: dict[str, Any], vid: str = "case-visitor-00000001") -> Visit:
    traffic = parse_traffic(case["url"], case.get("ref"))
    geo_data = case.get("geo", {})
    ru, en = geo_data.get("city", [None, None])
    names = {lang: {"city": name} for lang, name in (("ru", ru), ("en", en)) if name}
    geo = Geo(geo_data.get("country"), geo_data.get("region"), en, names)
    ua = case.get("ua", BROWSER)
    path = normalise_path(urlsplit(case["url"]).path or "/")
    return Visit(vid, path, traffic, frozenset(lemmas(traffic.phrase or "")),
                 normalise(traffic.phrase or ""), geo, device(ua), is_bot(ua))


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

"""Experiment assignment: weighted, sticky, deterministic; and the rule index at scale."""

from __future__ import annotations

import collections
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.front.decide import page_view
from service.rules.engine import decide, planned
from service.rules.geo import GeoDB, cities
from service.rules.rulefiles import load
from service.tracking.visitors import new_vid
from tests.conftest import BROWSER, ROOT, swaps_of
from tests.test_engine import compile_site, make_visit

SITE = {
    "site": "s",
    "experiments": [{"id": "e", "variants": [
        {"id": "control", "weight": 50},
        {"id": "b", "weight": 30, "swap": [{"selector": "h1", "text": "b"}]},
        {"id": "c", "weight": 20, "swap": [{"selector": "h1", "text": "c"}]},
    ]}],
}


def test_ten_thousand_visitors_land_within_two_percent_of_the_weights(tmp_path: Path) -> None:
    site = compile_site(SITE, tmp_path)
    counts = collections.Counter(
        decide(site, make_visit({"url": "/"}, vid=new_vid())).experiments["e"] for _ in range(10_000)
    )
    for variant, weight in {"control": 50, "b": 30, "c": 20}.items():
        assert abs(counts[variant] / 10_000 * 100 - weight) <= 2, counts


def test_assignment_is_sticky_and_deterministic(tmp_path: Path) -> None:
    site = compile_site(SITE, tmp_path)
    vids = [new_vid() for _ in range(200)]
    first = [decide(site, make_visit({"url": "/"}, vid)).experiments["e"] for vid in vids]
    again = [decide(site, make_visit({"url": "/?utm_term=x"}, vid)).experiments["e"] for vid in vids]
    assert first == again
    # The same id on a freshly loaded copy of the rules (another process) agrees too.
    (tmp_path / "copy").mkdir()
    other = compile_site(SITE, tmp_path / "copy")
    assert [decide(other, make_visit({"url": "/"}, vid)).experiments["e"] for vid in vids] == first
    assert len(set(first)) == 3


def test_changing_the_salt_reshuffles(tmp_path: Path) -> None:
    site = compile_site(SITE, tmp_path)
    salted = json.loads(json.dumps(SITE))
    salted["experiments"][0]["salt"] = "round-2"
    (tmp_path / "salted").mkdir()
    resalted = compile_site(salted, tmp_path / "salted")
    vids = [new_vid() for _ in range(300)]
    before = [decide(site, make_visit({"url": "/"}, vid)).experiments["e"] for vid in vids]
    after = [decide(resalted, make_visit({"url": "/"}, vid)).experiments["e"] for vid in vids]
    assert sum(a != b for a, b in zip(before, after, strict=True)) > 100


def test_control_changes_nothing(tmp_path: Path) -> None:
    site = compile_site(SITE, tmp_path)
    outcome = decide(site, make_visit({"url": "/"}), forced={"e": "control"})
    assert outcome.experiments == {"e": "control"} and outcome.swaps == ()


def test_index_hands_decide_only_the_rules_that_could_match(tmp_path: Path) -> None:
    rules = [
        {"id": f"kw-{i}", "when": {"keywords": [f"товар{i} купить"]}, "swap": [{"selector": "h1", "text": f"t{i}"}]}
        for i in range(2000)
    ]
    towns = list(dict.fromkeys(filter(None, (city.city_ru for city in cities()))))
    rules += [
        {"id": f"city-{i}", "when": {"city": towns[i]}, "swap": [{"selector": "p", "text": f"c{i}"}]}
        for i in range(1000)
    ]
    site = compile_site({"site": "s", "rules": rules}, tmp_path)
    visit = make_visit({"url": "/?utm_term=купить+товар1234", "geo": {"country": "RU", "city": [towns[7], "x"]}})
    candidates = site.rules.candidates(visit)
    assert [rule.id for rule in candidates] == ["kw-1234", "city-7"]
    assert swaps_of(decide(site, visit)) == {"h1": "t1234", "p": "c7"}
    assert len(site.rules) == 3000


def test_visitors_of_one_page_share_its_plan_and_draw_their_own_variants(tmp_path: Path) -> None:
    site = compile_site({**SITE, "rules": [{"id": "lead", "swap": [{"selector": ".lead", "text": "{{ phrase }}"}]}]},
                        tmp_path)
    made = planned.cache_info().misses
    outcomes = [decide(site, make_visit({"url": "/?utm_term=кондиционер"}, vid=new_vid())) for _ in range(300)]
    assert planned.cache_info().misses == made + 1  # the rules ran once for 300 visitors
    assert {outcome.experiments["e"] for outcome in outcomes} == {"control", "b", "c"}
    assert all(swaps_of(outcome)[".lead"] == "кондиционер" for outcome in outcomes)
    for outcome in outcomes:
        assert swaps_of(outcome).get("h1") == {"control": None, "b": "b", "c": "c"}[outcome.experiments["e"]]
    other = decide(site, make_visit({"url": "/?utm_term=сплит"}, vid=new_vid()))
    assert swaps_of(other)[".lead"] == "сплит"  # another phrase, another plan


def test_towns_the_rules_do_not_name_share_what_the_rules_make_of_them(tmp_path: Path) -> None:
    site = compile_site({"site": "s", "language": "ru", "rules": [
        {"id": "kazan", "priority": 2, "when": {"city": "Kazan"},
         "swap": [{"selector": "h1", "text": "Склад в Казани"}]},
        {"id": "ru", "priority": 1, "when": {"country": "RU"},
         "swap": [{"selector": "h1", "text": "Доставка {{ city.in }}"}]},
    ]}, tmp_path)

    def town(en: str, ru: str, country: str = "RU") -> dict[str, Any]:
        return {"url": "/", "geo": {"country": country, "city": [ru, en]}}

    tula, tver = make_visit(town("Tula", "Тула")), make_visit(town("Tver", "Тверь"))
    assert site.match(tula) is site.match(tver)  # one look at the rules for both towns
    assert swaps_of(decide(site, tula)) == {"h1": "Доставка в Туле"}  # each still sees its own
    assert swaps_of(decide(site, tver)) == {"h1": "Доставка в Твери"}
    assert swaps_of(decide(site, make_visit(town("Kazan", "Казань")))) == {"h1": "Склад в Казани"}
    assert decide(site, make_visit(town("Almaty", "Алматы", "KZ"))).swaps == ()


def test_remembered_decisions_equal_fresh_ones_for_real_addresses() -> None:
    """The load site (conditions on countries, regions and cities, texts naming the town) for
    visitors from the Locust suite's GeoLite2 addresses: what the memos answer is what the
    rules answer for each visit alone, and the rules are looked at for few of them."""
    site = load(ROOT / "loadtest" / "rules").sites["load"]
    geo = GeoDB()
    groups = json.loads((ROOT / "loadtest" / "data" / "ips.json").read_text())["groups"]
    addresses = [entry["ip"] for entries in groups.values() for entry in entries[::3]]
    pages = [("/", None), ("/?utm_term=кондиционер", None), ("/?utm_term=ремонт+кондиционера", None),
             ("/?utm_term=daikin", None), ("/?utm_source=yandex&utm_medium=cpc", None),
             ("/?utm_source=yandex&utm_medium=email", None), ("/?utm_source=google&utm_medium=cpc", None),
             ("/contacts", "https://load.example/"), ("/catalog/split-systems?gclid=1", None),
             ("/", "https://yandex.ru/search/?text=daikin+кондиционер")]
    agents = [BROWSER, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"]
    visits = [page_view(url, ref, new_vid(), geo.lookup(address), agent)
              for address in addresses for url, ref in pages for agent in agents]
    for seen in visits:
        assert decide(site, seen) == decide(replace(site), seen), seen  # a copy's memos start empty
    assert len({seen.geo for seen in visits}) > 50  # towns
    assert len({id(site.match(seen)) for seen in visits}) < len(visits) / 10


def test_a_site_with_many_phrase_patterns_tells_visits_apart_by_the_phrase(tmp_path: Path) -> None:
    rules = [{"id": f"r{i}", "when": {"phrase_regex": f"^model{i}$"}, "swap": [{"selector": "h1", "text": f"m{i}"}]}
             for i in range(40)]  # more than are tried one by one for every new visit
    site = compile_site({"site": "s", "rules": rules}, tmp_path)
    for i in (5, 6, 39, 5):
        assert swaps_of(decide(site, make_visit({"url": f"/?utm_term=model{i}"}))) == {"h1": f"m{i}"}

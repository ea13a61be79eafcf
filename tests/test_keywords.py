"""Keyword matching as Yandex Direct users expect it, from the table in cases/keywords.json.

The table was written before the matching code, from what marketers type and mean. Its cases
run through the whole engine: one site whose rules are the table's keywords, each rule swapping
a text of its own, and one decision per phrase, so the typo index, the rule index and the
memos are those a real site has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from service.rules.engine import Site, decide
from tests.conftest import CASES, swaps_of
from tests.test_engine import compile_site, make_visit

TABLE: list[dict[str, Any]] = json.loads((CASES / "keywords.json").read_text(encoding="utf-8"))["cases"]
RULES = sorted({(case["keyword"], case.get("exact", False)) for case in TABLE})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    rules = [{"id": f"k{i}", "when": {"keywords": [keyword], "exact": exact},
              "swap": [{"selector": f"#k{i}", "text": "matched"}]} for i, (keyword, exact) in enumerate(RULES)]
    return compile_site({"site": "table", "rules": rules}, tmp_path_factory.mktemp("keywords"))


def matched(site: Site, phrase: str) -> set[tuple[str, bool]]:
    """The (keyword, exact) rules that match a visit searching for `phrase`."""
    outcome = decide(site, make_visit({"url": "/?utm_term=" + quote(phrase)}))
    return {RULES[int(selector.removeprefix("#k"))] for (selector, _), _ in outcome.swaps}


def test_the_table_is_as_big_and_as_varied_as_promised() -> None:
    assert len(TABLE) >= 150
    assert sum(not case["match"] for case in TABLE) >= 50
    kinds = {case["kind"] for case in TABLE}
    assert {"readings", "compound", "typo", "transliteration", "layout", "english", "minus", "exact",
            "operators"} <= kinds


def test_recall_is_at_least_95_percent_and_precision_is_perfect(site: Site) -> None:
    missed, wrong = [], []
    for case in TABLE:
        found = (case["keyword"], case.get("exact", False)) in matched(site, case["phrase"])
        if found != case["match"]:
            (missed if case["match"] else wrong).append(f"{case['kind']}: {case['phrase']!r} vs {case['keyword']!r}")
    positives = sum(case["match"] for case in TABLE)
    assert not wrong, "matched and should not:\n" + "\n".join(wrong)
    assert (positives - len(missed)) / positives >= 0.95, "missed:\n" + "\n".join(missed)


@pytest.mark.parametrize("kind", sorted({case["kind"] for case in TABLE}))
def test_each_kind_of_match_is_mostly_found(site: Site, kind: str) -> None:
    cases = [case for case in TABLE if case["kind"] == kind and case["match"]]
    found = sum((case["keyword"], case.get("exact", False)) in matched(site, case["phrase"]) for case in cases)
    assert found >= 0.9 * len(cases)


@pytest.mark.parametrize(("language", "phrase", "headline"), [
    ("ru", "rjylbwbjyth", "Кондиционер"),  # typed in the Latin layout: retyped
    ("ru", "Rjylbwbjyth Ghjlf;f", "Кондиционер продажа"),
    ("ru", "kupit kondicioner", "Кондиционеры"),  # Russian in Latin letters: the default, not «Купит кондиционер»
    # A typo of the site's keywords is printed as they write it, in the form typed.
    ("ru", "купить кандиционер", "Купить кондиционер"),
    ("ru", "Окндиционеры недорого!", "Кондиционеры недорого"),  # the text, not the phrase, ends the sentence
    ("ru", "кандиционерами", "Кондиционерами"),
    ("ru", "сплит-ситсемы в москве", "Сплит-системы"),  # the town a text names by city.in, not twice
    ("ru", "купить кондиционер бебабаба", "Купить кондиционер бебабаба"),  # no keyword's typo: as typed
    # Invisible characters a crafted link carries are not printed: «\u202e» would show the text reversed.
    ("ru", "\u202eкупить кондиционер", "Купить кондиционер"),
    ("ru", "купить\x00кондиционер", "Купить кондиционер"),
    ("ru", "конди\u00adционер", "Кондиционер"),
    ("ru", "split system", "Кондиционеры"),  # reads as Russian («сплит»): the default on a Russian site
    ("en", "split system", "Split system"),
])
def test_keyword_insertion_prints_the_phrase_as_its_visitor_meant_it(
        tmp_path: Path, language: str, phrase: str, headline: str) -> None:
    site = compile_site({"site": "s", "language": language, "rules": [{
        "id": "r", "when": {"keywords": ["кондиционер", "сплит система"]},
        "swap": [{"selector": "h1", "text": "{{ keyword(default='Кондиционеры', case='sentence') }}"}]}]}, tmp_path)
    assert swaps_of(decide(site, make_visit({"url": "/?utm_term=" + quote(phrase)}))) == {"h1": headline}


def test_a_quoted_keyword_is_judged_on_each_phrase_not_remembered_by_its_words(tmp_path: Path) -> None:
    """Both phrases hold the keyword's words, so the memo of what the rules make of a page view
    must tell them apart by what the quotes ask: no other words."""
    rule = {"id": "r", "when": {"keywords": ['"купить кондиционер"']},
            "swap": [{"selector": "h1", "text": "В кавычках"}]}
    site = compile_site({"site": "s", "rules": [rule]}, tmp_path)
    for phrase, swaps in [("купить кондиционер", {"h1": "В кавычках"}), ("купить кондиционер недорого", {}),
                          ("кондиционеры купить", {"h1": "В кавычках"}), ("купить кондиционер недорого", {})]:
        assert swaps_of(decide(site, make_visit({"url": "/?utm_term=" + quote(phrase)}))) == swaps, phrase

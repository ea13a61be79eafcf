import json
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from service.rules.places import CASES, FORMS, known_places, place, warm, with_overrides

CASES_FILE = Path(__file__).parent / "cases" / "places.json"


def load_cases() -> list[dict[str, str]]:
    cases: list[dict[str, str]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))
    return cases


def case_id(case: dict[str, str]) -> str:
    return f"{case['name']}-{case.get('case') or case['form']}-{case.get('language', 'ru')}"


@pytest.mark.parametrize("case", load_cases(), ids=case_id)
def test_case(case: dict[str, str]) -> None:
    key = case.get("case") or case["form"]
    assert place(case["name"], case.get("language", "ru"))[key] == case["expected"]


@pytest.mark.parametrize("case", CASES)
def test_cases_are_attributes(case: str) -> None:
    city = place("Владимир")
    assert getattr(city, case) == city.forms[case]


def test_str_is_the_name() -> None:
    assert str(place("Нижний Новгород")) == "Нижний Новгород"


def test_unknown_key_returns_the_name() -> None:
    city = place("Москва")
    assert city["nope"] == "Москва"
    with pytest.raises(AttributeError):
        city.nope  # noqa: B018


def test_forms_are_read_only() -> None:
    forms: Any = place("Москва").forms
    with pytest.raises(TypeError):
        forms["in"] = "на Москве"


def test_cached() -> None:
    assert place("Тверь") is place("Тверь")


def test_english() -> None:
    city = place("London", "en")
    assert {case: city[case] for case in CASES} == dict.fromkeys(CASES, "London")
    assert (city["in"], city["to"], city["from"]) == ("in London", "to London", "from London")


@pytest.mark.parametrize("language", ["ru", "en"])
def test_empty_name(language: str) -> None:
    city = place("", language)
    assert dict(city.forms) == dict.fromkeys(FORMS, "")
    assert city["nope"] == ""


def test_override_recomputes_the_preposition() -> None:
    city = with_overrides(place("Лиски"), {"loct": "Лисках"})
    assert (city.loct, city["in"]) == ("Лисках", "в Лисках")
    assert city.gent == place("Лиски").gent


def test_override_keeps_an_explicit_preposition() -> None:
    city = with_overrides(place("Камчатка"), {"loct": "Камчатке", "in": "на Камчатке"})
    assert (city["in"], city["to"]) == ("на Камчатке", "в Камчатку")


def test_override_uses_vo() -> None:
    city = with_overrides(place("Всеволожский район"), {"accs": "Всеволожский район"})
    assert city["to"] == "во Всеволожский район"


def test_override_ignores_unknown_keys() -> None:
    city = with_overrides(place("Москва"), {"lcot": "Москве"})
    assert dict(city.forms) == dict(place("Москва").forms)


def test_template_in_the_sandbox() -> None:
    template = SandboxedEnvironment().from_string(
        "{{ city.in }}, {{ city.loct }}, {{ city['from'] }}, {{ city.nope }}, {{ city }}"
    )
    rendered = template.render(city=place("Владимир"))
    assert rendered == "во Владимире, Владимире, из Владимира, Владимир, Владимир"


def test_known_places() -> None:
    names = known_places()
    assert names == sorted(set(names))
    assert {"Москва", "Санкт-Петербург", "Ростов-на-Дону", "Татарстан", "МО"} <= set(names)


def test_every_known_place_declines() -> None:
    for name in known_places():
        city = place(name)
        assert all(city.forms[key] for key in FORMS), name
        assert city["in"].startswith(("в ", "во ")), name
        assert city["from"].startswith("из "), name


def test_warm_fills_the_cache() -> None:
    place.cache_clear()
    warm(["Тула", "Тула", "Орёл"])
    assert place.cache_info().currsize == 2

"""Russia's regions and cities named as people write them (service.rules.regions), in texts and
in conditions, from GeoLite2's own records (the database the service ships with)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pycountry
import pytest

from service.front.decide import page_view
from service.rules.engine import decide
from service.rules.geo import Geo, GeoDB
from service.rules.places import CASES, PREPOSITIONS
from service.rules.regions import REGIONS, region_code
from tests.conftest import BROWSER, swaps_of
from tests.test_engine import compile_site


@pytest.fixture(scope="module")
def places() -> GeoDB:
    return GeoDB()


def test_every_federal_subject_is_in_the_table_in_every_case() -> None:
    russian = {subdivision.code for subdivision in pycountry.subdivisions.get(country_code="RU")}
    assert russian | {"UA-43", "UA-40"} == set(REGIONS)  # and Crimea and Sevastopol, as GeoIP codes them
    assert len(REGIONS) == 85
    for region in REGIONS.values():
        for place in {region.official, region.official.short}:
            assert set(place.forms) == {*CASES, *PREPOSITIONS} and all(place.forms.values()), region.code
            for key, case in PREPOSITIONS.items():
                preposition, _, rest = place.forms[key].partition(" ")
                if (region.code, key) != ("UA-43", "in"):  # «в Крыму»: the second locative, not «о Крыме»
                    assert rest == place.forms[case], (region.code, key)
                assert preposition in {"in": ("в", "во", "на"), "to": ("в", "во", "на"),
                                       "from": ("из", "с", "со")}[key]
        assert region.english and not re.search("[а-яё’']", region.english.lower()), region.english


@pytest.mark.parametrize(("city", "official", "short"), [
    ("Южно-Сахалинск", "в Сахалинской области", "на Сахалине"),  # GeoLite2: «Сахалин»
    ("Якутск", "в Республике Саха (Якутия)", "в Якутии"),  # GeoLite2: «Саха (Якутия)»
    ("Псков", "в Псковской области", "в Псковской области"),  # not «во Псковской»
    ("Челябинск", "в Челябинской области", "в Челябинской области"),  # GeoLite2: «Челябинская»
    ("Тюмень", "в Тюменской области", "в Тюменской области"),  # GeoLite2: «Тюмень»
    ("Пермь", "в Пермском крае", "в Пермском крае"),  # GeoLite2: «Пермская область», before 2005
    ("Чита", "в Забайкальском крае", "в Забайкальском крае"),  # GeoLite2: «Забайкальский Край»
    ("Петропавловск-Камчатский", "в Камчатском крае", "на Камчатке"),
    ("Одинцово", "в Московской области", "в Подмосковье"),  # GeoLite2: «МО»
])
def test_a_regions_name_is_its_official_one_and_its_short_one_as_usage_has_it(
        places: GeoDB, city: str, official: str, short: str, tmp_path: Path) -> None:
    site = compile_site({"site": "s", "rules": [{"id": "r", "swap": [
        {"selector": "h1", "text": "{{ region.in }}"}, {"selector": "h2", "text": "{{ region.short.in }}"}]}]},
        tmp_path)
    geo = places.city(city)
    assert geo is not None
    swaps = swaps_of(decide(site, page_view("/", None, "visitor-0000000001", geo, BROWSER)))
    assert (swaps["h1"], swaps["h2"]) == (official, short)


@pytest.mark.parametrize(("city", "english", "region"), [
    ("Санкт-Петербург", "Saint Petersburg", "Saint Petersburg"),  # GeoLite2: «St Petersburg», «St.-Petersburg»
    ("Казань", "Kazan", "Republic of Tatarstan"),  # «Kazan’», «Tatarstan Republic»
    ("Владивосток", "Vladivostok", "Primorsky Krai"),  # «Primorskiy (Maritime) Kray»
    ("Нижний Новгород", "Nizhny Novgorod", "Nizhny Novgorod Oblast"),  # «Nizhniy Novgorod»
    ("Тверь", "Tver", "Tver Oblast"),  # «Tver’», «Tver’ Oblast»
])
def test_english_names_are_those_of_english_usage(places: GeoDB, city: str, english: str, region: str) -> None:
    geo = places.city(city)
    assert geo is not None
    answered = orjson.loads(orjson.dumps(geo.answered("en")))  # as decisions answer it
    assert (geo.city, answered["city"], answered["region_name"]) == (english, english, region)


def test_an_english_site_says_in_and_the_english_name(places: GeoDB, tmp_path: Path) -> None:
    site = compile_site({"site": "s", "language": "en", "rules": [{"id": "r", "swap": [
        {"selector": "h1", "text": "Delivery {{ city.in }}, {{ region.in }}"}]}]}, tmp_path)
    geo = places.city("Владивосток")
    assert geo is not None
    swaps = swaps_of(decide(site, page_view("/", None, "visitor-0000000001", geo, BROWSER)))
    assert swaps["h1"] == "Delivery in Vladivostok, in Primorsky Krai"


@pytest.mark.parametrize("name", ["RU-KAM", "ru-kam", "Камчатский край", "Камчатка", "Kamchatka Krai", "камчатка"])
def test_a_region_condition_takes_a_code_or_a_name_in_either_language(
        places: GeoDB, name: str, tmp_path: Path) -> None:
    site = compile_site({"site": "s", "rules": [{"id": "r", "when": {"region": [name]},
                                                 "swap": [{"selector": "h1", "text": "x"}]}]}, tmp_path)
    kamchatka, moscow = places.city("Петропавловск-Камчатский"), places.city("Москва")
    assert kamchatka is not None and moscow is not None
    assert swaps_of(decide(site, page_view("/", None, "visitor-0000000001", kamchatka, BROWSER))) == {"h1": "x"}
    assert decide(site, page_view("/", None, "visitor-0000000001", moscow, BROWSER)).swaps == ()
    assert region_code(name) == "RU-KAM"


@pytest.mark.parametrize(("condition", "city"), [
    ("Saint Petersburg", "Санкт-Петербург"), ("St Petersburg", "Санкт-Петербург"),  # GeoLite2's spelling too
    ("Санкт-Петербург", "Санкт-Петербург"), ("Kazan’", "Казань"), ("Орел", "Орёл"), ("орёл", "Орёл"),
    ("Piter", "Санкт-Петербург"),  # as «Питер»: not GeoIP's village of that name
])
def test_a_city_condition_takes_either_language_and_either_spelling(
        places: GeoDB, condition: str, city: str, tmp_path: Path) -> None:
    site = compile_site({"site": "s", "rules": [{"id": "r", "when": {"city": [condition]},
                                                 "swap": [{"selector": "h1", "text": "x"}]}]}, tmp_path)
    geo = places.city(city)
    assert geo is not None
    assert swaps_of(decide(site, page_view("/", None, "visitor-0000000001", geo, BROWSER))) == {"h1": "x"}
    elsewhere = Geo("RU", "RU-MOW", "Moscow", {"en": {"city": "Moscow"}, "ru": {"city": "Москва"}})
    assert decide(site, page_view("/", None, "visitor-0000000001", elsewhere, BROWSER)).swaps == ()


@pytest.mark.parametrize(("name", "city"), [
    ("Saint Petersburg", "Saint Petersburg"), ("St Petersburg", "Saint Petersburg"), ("Piter", "Saint Petersburg"),
    ("Питер", "Saint Petersburg"), ("Nizhny Novgorod", "Nizhny Novgorod"), ("Нижний Новгород", "Nizhny Novgorod"),
])
def test_a_preview_finds_a_city_by_every_name_a_rule_may_give_it(places: GeoDB, name: str, city: str) -> None:
    geo = places.city(name)
    assert geo is not None and geo.city == city

"""The Russian cities rules may name, as GeoIP names them: a city no visitor is in («Масква»)
makes a rule that never fires, and a correction in `places` that never applies."""

from __future__ import annotations

from functools import cache

from service.rules.geo import cities, city_key
from service.rules.regions import city_meant, english_city
from service.rules.typos import budget, within


@cache
def _cities() -> dict[str, tuple[str, str]]:
    """Each city's names as `when: city` compares them → its names in Russian and in English,
    as decisions give them (GeoLite2's English cleaned: «Saint Petersburg»)."""
    found: dict[str, tuple[str, str]] = {}
    for city in cities():
        russian, english = city.city_ru, english_city(city.city_en)
        for name in filter(None, (russian, english)):
            found.setdefault(city_key(name), (russian, english))
    return found


def names(name: str) -> tuple[str, str] | None:
    """The Russian and English names of the city a rule's `name` means, None if no Russian city has it."""
    return _cities().get(city_key(english_city(city_meant(name))))


def meant(name: str) -> str | None:
    """The city a misspelt name most likely means, in the name's alphabet: a typo or two away,
    as keywords forgive them (`typos.budget`)."""
    key = city_key(name)
    near = [found for found in _cities() if within(key, found, budget(found))]
    if not near:
        return None
    russian, english = _cities()[min(near, key=lambda found: (abs(len(found) - len(key)), found))]
    return russian if russian and not name.isascii() else english or russian

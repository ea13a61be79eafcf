"""Russia's federal subjects by ISO 3166-2 code, and Russian places' names in English usage.

GeoIP databases carry raw names: «Сахалин» for the Sakhalin Oblast («в Сахалине»), «Primorskiy
(Maritime) Kray», «Пермская область» eighteen years after it became the Perm Krai, «Kazan’».
Here each subject has its official name in every case with the right preposition («на
Камчатке» is the short form's, «в Камчатском крае» the official one's), the short name usage
prefers where there is one («Подмосковье», «Якутия»), and its English name («Primorsky Krai»);
and each city GeoLite2 spells otherwise its English name («Saint Petersburg», «Kazan»).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from service.rules.places import CASES, PREPOSITIONS, Place, place

_DATA = Path(__file__).parent.parent / "data"


@dataclass(frozen=True, slots=True)
class Region:
    code: str  # ISO 3166-2: RU-KAM
    english: str
    official: Place  # «Камчатский край», with its short form as `.short`: «Камчатка»


def _rows(name: str) -> list[list[str]]:
    text = (_DATA / name).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]


def _regions() -> dict[str, Region]:
    forms: dict[tuple[str, str], dict[str, str]] = {}
    english: dict[str, str] = {}
    for code, kind, en, *declined in _rows("ru_regions.tsv"):
        forms[code, kind] = dict(zip((*CASES, *PREPOSITIONS), declined, strict=True))
        english[code] = english.get(code) or en
    regions = {}
    for code, en in english.items():
        short = forms.get((code, "short"))
        brief = Place(short["nomn"], MappingProxyType(short)) if short else None
        official = forms[code, "name"]
        regions[code] = Region(code, en, Place(official["nomn"], MappingProxyType(official), brief))
    return regions


REGIONS = MappingProxyType(_regions())
_CITIES_IN_ENGLISH = {raw.casefold(): clean for raw, clean in _rows("en_city_names.tsv")}
NICKNAMES = {"питер": "Санкт-Петербург", "спб": "Санкт-Петербург", "мск": "Москва", "екб": "Екатеринбург",
              "нск": "Новосибирск", "нижний": "Нижний Новгород", "spb": "Санкт-Петербург", "msk": "Москва",
              "piter": "Санкт-Петербург", "ekb": "Екатеринбург"}


def _key(name: str) -> str:
    return " ".join(name.casefold().replace("ё", "е").split())


# What a condition may call a region: its code, its names in either language, its short name.
_CODES = {_key(name): region.code for region in REGIONS.values()
          for name in (region.code, region.english, region.official.name, region.official.short.name)}


def region_code(name: str) -> str | None:
    """The code of the region a rule names: «RU-KAM», «Камчатский край», «Камчатка», «Kamchatka Krai»."""
    return _CODES.get(_key(name))


def region_place(code: str | None, language: str) -> Place | None:
    """The region's name to print, in Russian or English; None where the table does not know it."""
    region = REGIONS.get(code or "")
    if region is None or language not in ("ru", "en"):
        return None
    return region.official if language == "ru" else place(region.english, "en")


def region_name(code: str, language: str) -> str:
    """A region by its name in `language` (a report's row: «Республика Татарстан» for RU-TA);
    its code where the table does not know it (regions of other countries)."""
    named = region_place(code, language)
    return named.name if named is not None else code


def city_meant(name: str) -> str:
    """The city a name means: people write «Питер» for Saint Petersburg, which GeoIP knows as
    a village of that name too."""
    return NICKNAMES.get(name.strip().casefold().replace("ё", "е"), name)


def english_city(raw: str) -> str:
    """A Russian city's name in English usage, for GeoLite2's spelling of it (any letter case)."""
    return _CITIES_IN_ENGLISH.get(raw.casefold(), raw)


def renamed_region(name: str) -> str | None:
    """What a region GeoIP calls `name` (GeoLite2's Russian or English) is called now."""
    return _RENAMED.get(name)


def _renamed() -> dict[str, str]:
    renamed = {}
    for row in _rows("ru_cities.tsv"):  # GeoLite2's own names of each region, in both languages
        region = REGIONS.get(f"RU-{row[3]}")
        if region is not None:
            renamed.update({row[5]: region.official.name, row[4]: region.english})
    return renamed


_RENAMED = _renamed()

"""GeoIP: client IP → country, ISO 3166-2 region and city, from a MaxMind City database.

The reader memory-maps the file through maxminddb's C extension, so a lookup does no disk
I/O of its own and costs microseconds; results are cached per IP all the same, because the
same visitors come back within a visit. Addresses of one town share one `Geo`: a full cache
of separate copies held 116 MiB.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import maxminddb
import orjson

from service.fragments import kept
from service.ips import ip_address
from service.rules.regions import REGIONS, city_meant, english_city

Where = tuple[str | None, str | None, str | None]  # country, region, city: `Geo.where`


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Geo:
    country: str | None = None  # ISO 3166-1 alpha-2, "RU"
    region: str | None = None  # ISO 3166-2, "RU-SPE"
    city: str | None = None  # English name, stable for matching ("Saint Petersburg")
    # lang → {country, region, city}; hashed by the three above, as decision plans are keyed
    names: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)
    # The city's casefolded names in every language, for `when: city`; made once per lookup.
    city_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    _answers: dict[str, orjson.Fragment] = field(init=False, repr=False, compare=False)  # by language

    def __post_init__(self) -> None:
        keys = frozenset(city_key(by_kind["city"]) for by_kind in self.names.values() if "city" in by_kind)
        object.__setattr__(self, "city_keys", keys)
        object.__setattr__(self, "_answers", {})

    @property
    def where(self) -> Where:
        """What a visit's token carries of the place: `GeoDB.placed` finds it again."""
        return self.country, self.region, self.city

    def name(self, what: str, language: str) -> str | None:
        """The name of `what` (country/region/city) in `language`, else in English."""
        localised = self.names.get(language, {}).get(what)
        return localised or self.names.get("en", {}).get(what)

    def answered(self, language: str) -> orjson.Fragment:
        """The place as decisions answer it, in JSON; made once per language."""
        answer = self._answers.get(language)
        if answer is None:
            answer = self._answers[language] = kept({
                "country": self.country,
                "region": self.region,
                "city": self.name("city", language),
                "country_name": self.name("country", language),
                "region_name": self.name("region", language),
            })
        return answer


def city_key(name: str) -> str:
    """A city's name as `when: city` compares it: any letter case, «ё» or «е»."""
    return name.casefold().replace("ё", "е")


UNKNOWN = Geo()
CITIES = Path(__file__).parent.parent / "data" / "ru_cities.tsv"  # from GeoLite2 by scripts/extract_places.py


class City(NamedTuple):
    """A row of `CITIES`: a Russian city as GeoLite2 names it, and how many addresses it has."""

    country: str
    country_en: str
    country_ru: str
    region: str
    region_en: str
    region_ru: str
    city_en: str
    city_ru: str
    addresses: int


@functools.cache
def cities() -> tuple[City, ...]:
    """Russia's cities, the larger namesake first: what previews, rule checks and keyword
    insertion know of them."""
    rows = (line.split("\t") for line in CITIES.read_text(encoding="utf-8").splitlines())
    return tuple(City._make([*row[:8], int(row[8])]) for row in rows)


def _city_key(name: str) -> str:
    return "".join(c for c in name.casefold().replace("ё", "е") if c.isalnum())


def _city_records() -> dict[str, dict[str, Any]]:
    """Each city's names, as GeoIP records carry them, by `_city_key` of each name."""
    def names(en: str, ru: str) -> dict[str, str]:
        return {language: name for language, name in (("en", en), ("ru", ru)) if name}

    records: dict[str, dict[str, Any]] = {}
    for country, country_en, country_ru, region, region_en, region_ru, city_en, city_ru, _ in cities():
        record = {"country": {"iso_code": country, "names": names(country_en, country_ru)},
                  "subdivisions": [{"iso_code": region, "names": names(region_en, region_ru)}] if region else [],
                  "city": {"names": names(city_en, city_ru)}}
        for key in filter(None, map(_city_key, (city_en, english_city(city_en), city_ru))):
            records.setdefault(key, record)  # the file lists the larger namesake first
    return records


def default_database() -> Path:
    from _maxminddb_geolite2 import geolite2_database

    return Path(geolite2_database())


class GeoDB:
    def __init__(self, path: Path | None = None, languages: tuple[str, ...] = ("en", "ru")) -> None:
        self.path = path or default_database()
        self.languages = languages
        self._reader = maxminddb.open_database(str(self.path), maxminddb.MODE_MMAP_EXT)
        # One Geo per place for as long as a cached address refers to it.
        self._geos: weakref.WeakValueDictionary[tuple[Any, ...], Geo] = weakref.WeakValueDictionary()
        self._places: weakref.WeakValueDictionary[Where, Geo] = weakref.WeakValueDictionary()  # by `where`
        self.lookup = functools.lru_cache(maxsize=65536)(self._lookup)
        self._cities = _city_records()
        self._in_russian: dict[str, str] = {}  # of two namesakes, the larger's name, as `city` finds it
        for record in self._cities.values():
            if len(names := record["city"]["names"]) == 2:
                self._in_russian.setdefault(english_city(names["en"]), names["ru"])
        self._in_english: dict[str, str] = {}  # `learn`t names, by `_city_key`: Russian -> English

    def learned(self, geo: Geo) -> tuple[str, str] | None:
        """The English and Russian names of `geo`'s city when the database names it in Russian
        otherwise than the table reports go by (`city_in`): a town renamed since, or missing
        from it. Learnt here; the caller keeps them where every process learns them."""
        russian = geo.names.get("ru", {}).get("city")
        if geo.city is None or russian is None or self._in_russian.get(geo.city) == russian:
            return None
        self.learn({geo.city: russian})
        return geo.city, russian

    def learn(self, names: Mapping[str, str]) -> None:
        """Cities' Russian names by their English ones, as `learned` found them."""
        self._in_russian.update(names)
        self._in_english.update((_city_key(russian), english) for english, russian in names.items())

    def city(self, name: str) -> Geo | None:
        """The place of a Russian city named `name` in English or Russian (case, «ё» and
        punctuation aside), as a lookup of one of its addresses gives it: previews fake a
        visitor's city with it. Of two namesakes, the one with more addresses."""
        record = self._cities.get(_city_key(city_meant(name)))
        return self._geo(record) if record else None

    def city_in(self, name: str, language: str) -> str:
        """A city as visits keep it (`Geo.city`, GeoIP's English name) in the site's `language`:
        a Russian city in Russian on a Russian site, as its decisions name it."""
        return self._in_russian.get(name, name) if language == "ru" else name

    def city_kept(self, name: str) -> str:
        """The name visits keep of a Russian city named in Russian or English (a report's filter)."""
        if learned := self._in_english.get(_city_key(name)):
            return learned
        geo = self.city(name)
        return geo.city if geo is not None and geo.city else name

    def close(self) -> None:
        self._reader.close()

    def _lookup(self, ip: str) -> Geo:
        try:
            record = self._reader.get(ip_address(ip))  # IPv4-mapped as IPv4: not every database aliases them
        except ValueError:
            return UNKNOWN
        if not isinstance(record, dict):
            return UNKNOWN
        return self._geo(record)

    def _geo(self, record: dict[str, Any]) -> Geo:
        country = record.get("country") or {}
        subdivisions = record.get("subdivisions") or []
        region = subdivisions[0] if subdivisions else {}
        city = record.get("city") or {}
        country_code = country.get("iso_code")
        region_code = region.get("iso_code")
        names: dict[str, dict[str, str]] = {}
        for language in self.languages:
            by_kind = {
                kind: place["names"][language]
                for kind, place in (("country", country), ("region", region), ("city", city))
                if language in place.get("names", {})
            }
            if by_kind:
                names[language] = by_kind
        full_region = f"{country_code}-{region_code}" if country_code and region_code else None
        _clean(names, full_region)
        city_name = names.get("en", {}).get("city")
        key = (country_code, full_region, city_name, *((lang, *kinds.items()) for lang, kinds in names.items()))
        geo = self._geos.get(key)
        if geo is None:
            geo = self._geos[key] = self._places[country_code, full_region, city_name] = Geo(
                country_code, full_region, city_name, names)
        return geo

    def placed(self, where: Where) -> Geo | None:
        """The place a visit's token names (`Geo.where`), if an address this process looked up
        lately is there: a process of a deployment learns the places of its visitors within a
        few page views, and an address's own place stands in for one it has not seen."""
        return self._places.get(where)


def _clean(names: dict[str, dict[str, str]], region: str | None) -> None:
    """Russian places' names as people write them (service.rules.regions), not as GeoIP spells them."""
    known = REGIONS.get(region or "")
    for language, by_kind in names.items():
        if known is not None and language in ("ru", "en"):
            by_kind["region"] = known.official.name if language == "ru" else known.english
        if language == "en" and "city" in by_kind:
            by_kind["city"] = english_city(by_kind["city"])

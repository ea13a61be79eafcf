"""Write the Russian places of GeoLite2 City to service/data/: their names, and their cities.

Run from the repository root: ``python scripts/extract_places.py`` (about a minute).
``ru_places.txt``, the city and region names, feeds ``service.rules.places.warm`` and the test that
inflects every name. ``ru_cities.tsv`` is each city as a GeoIP lookup names it, with how
many IPv4 addresses it has (the larger of two namesakes wins): previews fake a visitor's
city by name with it (``GeoDB.city``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import maxminddb
from _maxminddb_geolite2 import geolite2_database

DATA = Path(__file__).resolve().parent.parent / "service" / "data"
LANGUAGES = ("en", "ru")


def russian_name(entry: dict[str, Any]) -> str | None:
    name = entry.get("names", {}).get("ru")
    return name.strip() if isinstance(name, str) and name.strip() else None


def extract() -> tuple[list[str], list[str]]:
    names: set[str] = set()
    cities: dict[tuple[str, ...], int] = {}
    with maxminddb.open_database(geolite2_database()) as reader:
        for network, record in reader:
            if not isinstance(record, dict):
                continue
            if record.get("country", {}).get("iso_code") != "RU":
                continue
            entries = [record.get("city", {}), *record.get("subdivisions", [])]
            names.update(n for n in map(russian_name, entries) if n is not None)
            if "names" in record.get("city", {}):
                row = _row(record)
                ipv4 = network.num_addresses if network.version == 4 else 0  # IPv6 blocks are sized by policy
                cities[row] = cities.get(row, 0) + ipv4
    by_size = sorted(cities.items(), key=lambda item: (-item[1], item[0]))
    return sorted(names), ["\t".join((*row, str(addresses))) for row, addresses in by_size]


def _row(record: dict[str, Any]) -> tuple[str, ...]:
    """country code and names, region code and names, city names: what `GeoDB` reads."""
    subdivisions = record.get("subdivisions") or [{}]
    row = []
    for place in (record["country"], subdivisions[0]):
        row.append(place.get("iso_code", ""))
        row.extend(place.get("names", {}).get(language, "") for language in LANGUAGES)
    row.extend(record["city"]["names"].get(language, "") for language in LANGUAGES)
    return tuple(row)


def main() -> None:
    names, cities = extract()
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "ru_places.txt").write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    (DATA / "ru_cities.tsv").write_text("".join(f"{city}\n" for city in cities), encoding="utf-8")
    print(f"wrote {len(names)} names and {len(cities)} cities to {DATA}")


if __name__ == "__main__":
    main()

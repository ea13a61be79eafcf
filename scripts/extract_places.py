"""Write the Russian city and region names from GeoLite2 City to service/data/ru_places.txt.

Run from the repository root: ``python scripts/extract_places.py`` (about 45 s).
The list feeds ``service.places.warm`` and the test that inflects every name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import maxminddb
from _maxminddb_geolite2 import geolite2_database

OUTPUT = Path(__file__).resolve().parent.parent / "service" / "data" / "ru_places.txt"


def russian_name(entry: dict[str, Any]) -> str | None:
    name = entry.get("names", {}).get("ru")
    return name.strip() if isinstance(name, str) and name.strip() else None


def extract() -> list[str]:
    names: set[str] = set()
    with maxminddb.open_database(geolite2_database()) as reader:
        for _network, record in reader:
            if not isinstance(record, dict):
                continue
            if record.get("country", {}).get("iso_code") != "RU":
                continue
            entries = [record.get("city", {}), *record.get("subdivisions", [])]
            names.update(n for n in map(russian_name, entries) if n is not None)
    return sorted(names)


def main() -> None:
    names = extract()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    print(f"wrote {len(names)} names to {OUTPUT}")


if __name__ == "__main__":
    main()

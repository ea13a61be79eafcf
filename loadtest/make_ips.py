"""Pick real client addresses from the GeoLite2 City database for the load test.

    python loadtest/make_ips.py            # writes loadtest/data/ips.json (about 45 s)

Walking the whole database takes most of a minute, so the result is kept in the repository
and the load test only reads it. Each address is the first host of a real GeoLite2 network,
grouped by what the service will make of it: Moscow, Saint Petersburg (city and oblast),
Moscow Oblast, the other Russian regions, and foreign countries.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
from pathlib import Path
from typing import Any

import maxminddb
from _maxminddb_geolite2 import geolite2_database

OUT = Path(__file__).with_name("data") / "ips.json"
PER_GROUP = {"RU-MOW": 120, "RU-SPE": 80, "RU-LEN": 20, "RU-MOS": 40, "RU-other": 240, "foreign": 200}
FOREIGN = ("US", "DE", "GB", "FR", "NL", "UA", "BY", "KZ", "TR", "CN", "PL", "FI")


def group(record: dict[str, Any]) -> str | None:
    country = (record.get("country") or {}).get("iso_code")
    if country == "RU":
        subdivisions = record.get("subdivisions") or []
        region = f"RU-{subdivisions[0]['iso_code']}" if subdivisions else None
        if region is None or not (record.get("city") or {}).get("names"):
            return None  # the load test wants visitors whose city the templates can name
        return region if region in PER_GROUP else "RU-other"
    return "foreign" if country in FOREIGN else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seen: dict[str, int] = dict.fromkeys(PER_GROUP, 0)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in PER_GROUP}
    reader = maxminddb.open_database(geolite2_database())
    for network, record in reader:
        if network.version != 4 or not isinstance(record, dict):
            continue
        name = group(record)
        if name is None:
            continue
        host = network.network_address + 1 if network.num_addresses > 2 else network.network_address
        subdivisions = record.get("subdivisions") or [{}]
        entry = {
            "ip": str(ipaddress.ip_address(host)),
            "country": record["country"]["iso_code"],
            "region": f"{record['country']['iso_code']}-{subdivisions[0].get('iso_code', '')}".rstrip("-"),
            "city": (record.get("city") or {}).get("names", {}).get("en"),
        }
        # Reservoir sampling: every network of the group is equally likely to be kept.
        seen[name] += 1
        if len(samples[name]) < PER_GROUP[name]:
            samples[name].append(entry)
        elif (slot := rng.randrange(seen[name])) < PER_GROUP[name]:
            samples[name][slot] = entry
    reader.close()
    for entries in samples.values():
        entries.sort(key=lambda entry: ipaddress.ip_address(entry["ip"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(samples), encoding="utf-8")
    print(f"{args.out}: " + ", ".join(f"{name} {len(entries)}/{seen[name]}" for name, entries in samples.items()))


def render(samples: dict[str, list[dict[str, Any]]]) -> str:
    """JSON with one address per line, so a diff of a re-run reads well."""
    groups = ",\n".join(
        f"  {json.dumps(name)}: [\n" + ",\n".join(f"   {json.dumps(e, ensure_ascii=False)}" for e in entries) + "\n  ]"
        for name, entries in samples.items()
    )
    return '{\n "source": "GeoLite2 City from maxminddb-geolite2",\n "groups": {\n' + groups + "\n }\n}\n"


if __name__ == "__main__":
    main()

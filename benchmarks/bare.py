"""The baseline: a bare Starlette app with the service's two hot endpoints and nothing else.

`benchmarks/decide.py` runs it under the same uvicorn settings as `swapline serve` (uvloop,
httptools, no access log, no proxy headers, one worker) and loads it with the same requests
as the service, so the ratio of the two throughputs is what the service's own work costs:

    uvicorn benchmarks.bare:app --loop uvloop --http httptools --no-access-log --no-proxy-headers --workers 1

`GET /v1/decide` answers a constant decision-shaped JSON object (about the size of a real
decision), `POST /v1/events` reads the body and answers 202, as Starlette apps usually do.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DECISION = {
    "site": "load", "vid": "qJ3xk2bq9WmVY1rVbq7g2A",
    "token": "eyJzIjoibG9hZCIsInYiOiJxSjN4azJicTlXbVZZMXJWYnE3ZzJBIiwicCI6Ii8iLCJ4Ijp7ImN0YS13b3JkaW5nIjoiZnJlZS12"
             "aXNpdCJ9LCJ0IjoxNzk1MDAwMDAwLCJuIjoibW9zY293IiwibyI6ZmFsc2V9.dGhpcy1pcy1hLW1hYw",
    "geo": {"country": "RU", "region": "RU-MOW", "city": "Москва", "country_name": "Россия", "region_name": "Москва"},
    "phrase": "купить кондиционер",
    "source": {"source": "yandex", "medium": "cpc", "campaign": "ac-search", "engine": None, "click_id": "yclid"},
    "swaps": [{"selector": selector, "text": text, "property": "textContent", "value": text} for selector, text in (
        ("h1.hero", "Купить кондиционер в Москве"), (".hero-lead", "Привезём и установим в Москве за один день"),
        (".delivery", "Доставка по Москве и области сегодня"))],
    "experiments": {"cta-wording": "free-visit"},
    "phone": {"pool": "moscow", "replaces": "+78005553535", "kind": "lease", "hold": 300, "number": "+74952000001",
              "international": "+7 495 200-00-01", "national": "8 (495) 200-00-01"},
    "bot": False, "degraded": False, "rules_version": "e08fea2698e2",
}


async def decide(request: Request) -> JSONResponse:
    return JSONResponse(DECISION)


async def events(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"accepted": "heartbeat", "number": None}, status_code=202)


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ready"})


app = Starlette(routes=[
    Route("/v1/decide", decide, methods=["GET"]),
    Route("/v1/events", events, methods=["POST"]),
    Route("/readyz", ready, methods=["GET"]),
])

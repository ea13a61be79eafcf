"""The decision endpoint: a page view in, what the visitor sees out.

`visit` and `answer` are shared with `swapline rules preview`, so the preview prints
exactly what the endpoint would answer, without the store and its side effects.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request

from service.cors import cors_headers
from service.engine import Outcome, Site, Visit, decide, normalise_path
from service.errors import BadRequest
from service.geo import Geo
from service.phrase import lemmas, normalise, parse_traffic
from service.responses import JSON
from service.runtime import Runtime
from service.visitors import device, is_bot, new_vid, valid_vid

MAX_URL = 4096
MAX_VID = 128
log = logging.getLogger("swapline")


def visit(url: str, ref: str | None, vid: str, geo: Geo, user_agent: str) -> Visit:
    try:
        path = urlsplit(url).path
    except ValueError:
        raise BadRequest("invalid_url", "url is not a valid URL") from None
    traffic = parse_traffic(url, ref)
    phrase = traffic.phrase or ""
    return Visit(
        vid=vid,
        path=normalise_path(unquote(path) or "/"),  # rules are written as people read paths
        traffic=traffic,
        lemmas=frozenset(lemmas(phrase)),
        phrase=normalise(phrase),
        geo=geo,
        device=device(user_agent),
        bot=is_bot(user_agent),
    )


def answer(site: Site, visit: Visit, outcome: Outcome, token: str | None, version: str,
           degraded: bool = False) -> dict[str, Any]:
    traffic = visit.traffic
    return {
        "site": site.id,
        "vid": visit.vid,
        "token": token,
        "geo": visit.geo.as_json(site.language),
        "phrase": traffic.phrase,
        "source": {
            "source": traffic.source,
            "medium": traffic.medium,
            "campaign": traffic.campaign,
            "engine": traffic.engine,
            "click_id": traffic.click_id,
        },
        "swaps": [{"selector": selector, "text": text} for selector, text in outcome.swaps],
        "experiments": outcome.experiments,
        "phone": None,
        "bot": visit.bot,
        "degraded": degraded,
        "rules_version": version,
    }


def token_payload(site: Site, visit: Visit, outcome: Outcome) -> dict[str, Any]:
    return {"s": site.id, "v": visit.vid, "p": visit.path, "x": outcome.experiments,
            "t": int(time.time())}


def _param(request: Request, name: str, limit: int, required: bool = False) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest("missing_parameter", f"the {name!r} parameter is required")
        return None
    if len(value) > limit:
        raise BadRequest("parameter_too_long", f"{name!r} is longer than {limit} characters")
    return value


async def decide_endpoint(request: Request) -> JSON:
    runtime: Runtime = request.app.state.runtime
    rules = runtime.rules
    site = runtime.site(_param(request, "site", 64, required=True))
    headers = cors_headers(site, request.headers.get("origin"))
    url = _param(request, "url", MAX_URL, required=True)
    assert url is not None
    if not url.startswith(("http://", "https://", "/")):
        raise BadRequest("invalid_url", "url must be an http(s) URL or a path")
    ref = _param(request, "ref", MAX_URL)
    vid = _param(request, "vid", MAX_VID)
    if not valid_vid(vid):
        vid = new_vid()  # a lost or mangled cookie must not cost the visitor their page
    assert vid is not None
    geo = runtime.geo.lookup(request.client.host if request.client else "")
    seen = visit(url, ref, vid, geo, request.headers.get("user-agent", ""))
    outcome = decide(site, seen)
    degraded = False
    if outcome.experiments:
        day = datetime.datetime.now(datetime.UTC).date().isoformat()
        try:
            await runtime.store.expose(site.id, vid, seen.path, day, outcome.experiments)
        except Exception as exc:  # the page must still get its answer
            log.warning("store unavailable, decision degraded: %s", exc)
            degraded = True
    token = runtime.signer.sign(token_payload(site, seen, outcome))
    return JSON(answer(site, seen, outcome, token, rules.version, degraded), headers=headers)

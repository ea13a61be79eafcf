"""Offline conversions for the ad platforms: Yandex Metrica and Google Ads.

Target calls and forms (the site's `exports.kinds`) that came from an ad click go back to the
platform that paid for the click, so it can see which clicks led to customers:

    Yandex Metrica   by the visit's `yclid`: conversions (`Target` = the kind) to
                     /offline_conversions/upload, calls to /offline_conversions/upload_calls
    Google Ads       by the visit's `gclid` (or, for clicks from iOS, its `wbraid` or `gbraid`): click
                     conversions, to customers/ID:uploadClickConversions (the file: `gclid` only)

Each is a CSV download (`GET /v1/exports/{site}/metrica.csv`, `metrica-calls.csv`,
`google-ads.csv`, report token) in the columns the platform's own upload form takes, and, for
a site with credentials in its rules, a scheduled upload through the platform's API: every
`SWAPLINE_EXPORT_EVERY` seconds one process (a lock in the store) sends what the conversion log
gained since the last upload that succeeded, and records how it went (`GET /v1/exports/{site}`,
the dashboard, `/metrics`). docs/EXPORTS.md says where the formats come from.
"""

from __future__ import annotations

import csv
import datetime
import io
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any, cast

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from service.analytics.sheets import csv_cell
from service.errors import NotFound
from service.front.auth import require_report_token
from service.front.responses import JSON
from service.observability import EXPORTS
from service.rules.engine import Site
from service.rules.phrase import valid_click_id
from service.rules.settings import Exports
from service.runtime import Runtime
from service.tracking.journal import Fields, LogQuery, bodies
from service.tracking.journal import key as log_key
from service.tracking.store import Store, repeat

BATCH = 5000  # log entries read at a time
KEPT_UPLOADS = 200  # of the upload log, per site
SHOWN = 300  # characters of what a platform said, kept with the upload
METRICA_COLUMNS = ("Yclid", "Target", "DateTime", "Price", "Currency")
METRICA_CALL_COLUMNS = ("Yclid", "DateTime", "StaticCall", "Price", "Currency", "PhoneNumber", "TalkDuration",
                        "CallMissed", "Tag", "FirstTimeCaller", "URL")
GOOGLE_COLUMNS = ("Google Click ID", "Conversion Name", "Conversion Time", "Conversion Value", "Conversion Currency")
# A click conversion names exactly one of these: Google Ads refuses two. Clicks from iOS 14 on
# may carry a `wbraid` (web) or `gbraid` (app) instead of a `gclid`.
GOOGLE_CLICK_IDS = ("gclid", "wbraid", "gbraid")


def kinds(entry: Mapping[str, Any], wanted: Collection[str]) -> list[str]:
    """What an entry is to an ad platform, of the kinds `wanted`: a target call is a `call` (every
    answered call, as the reports count them) and a `qualified_call`, a conversion of each."""
    call = entry.get("call") or {}
    its = ("call", "qualified_call") if entry["kind"] == "call" and call.get("qualified") else (entry["kind"],)
    return [kind for kind in its if kind in wanted]


def click_id(entry: Mapping[str, Any], name: str) -> str | None:
    """The visit's click id `name`, if well formed (visits recorded before ids were checked may hold others)."""
    value = ((entry.get("visit") or {}).get("click_ids") or {}).get(name)
    return value if isinstance(value, str) and valid_click_id(name, value) else None


def metrica_rows(entries: list[dict[str, Any]], exports: Exports) -> list[list[Any]]:
    """Metrica's offline conversions: one row per wanted conversion with a yclid."""
    return [[yclid, kind, entry["at"] // 1000, f"{exports.value:g}", exports.currency]
            for entry in entries if (yclid := click_id(entry, "yclid")) for kind in kinds(entry, exports.kinds)]


def metrica_call_rows(entries: list[dict[str, Any]], exports: Exports) -> list[list[Any]]:
    """Metrica's calls: every call with a yclid (a number the visitor alone held: dynamic)."""
    rows = []
    for entry in entries:
        call, yclid = entry.get("call"), click_id(entry, "yclid")
        if call and yclid:
            rows.append([yclid, entry["at"] // 1000, 0, f"{exports.value:g}" if call["qualified"] else "",
                         exports.currency if call["qualified"] else "", call["number"], call["talk_seconds"],
                         int(entry["kind"] == "missed_call"), "target" if call["qualified"] else "",
                         int(bool(call.get("unique"))), (entry.get("visit") or {}).get("landing") or ""])
    return rows


def google_clicks(entries: list[dict[str, Any]], exports: Exports) -> list[list[Any]]:
    """Google Ads' conversions from clicks: the click id's name first, then its value, the kind,
    the time in UTC, the value and the currency."""
    rows: list[list[Any]] = []
    for entry in entries:
        if click := google_click(entry):
            rows.extend([*click, kind, _utc(entry["at"]).strftime("%Y-%m-%d %H:%M:%S"), f"{exports.value:g}",
                         exports.currency] for kind in kinds(entry, exports.kinds))
    return rows


def google_click(entry: Mapping[str, Any]) -> tuple[str, str] | None:
    """The click Google Ads links a conversion to: the first of `GOOGLE_CLICK_IDS` the visit has."""
    return next(((name, value) for name in GOOGLE_CLICK_IDS if (value := click_id(entry, name))), None)


def google_rows(entries: list[dict[str, Any]], exports: Exports) -> list[list[Any]]:
    """The file's rows, times in UTC (its `Parameters:TimeZone=+0000`): Google's file template
    has a column for the `gclid` alone."""
    return [row for name, *row in google_clicks(entries, exports) if name == "gclid"]


def csv_file(columns: tuple[str, ...], rows: list[list[Any]], first_line: str = "") -> str:
    out = io.StringIO()
    out.write(first_line)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return out.getvalue()


FILES: dict[str, tuple[Callable[[list[dict[str, Any]], Exports], list[list[Any]]], tuple[str, ...], str]] = {
    "metrica": (metrica_rows, METRICA_COLUMNS, ""),
    "metrica-calls": (metrica_call_rows, METRICA_CALL_COLUMNS, ""),
    "google-ads": (google_rows, GOOGLE_COLUMNS, "Parameters:TimeZone=+0000\n"),
}


async def export_file_endpoint(request: Request) -> Response:
    """`GET /v1/exports/{site}/{target}.csv`: the file the platform's upload form takes, for
    `from` … `to` (the site's days)."""
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request)
    target = request.path_params["target"]
    if target not in FILES:
        raise NotFound("unknown_export", f"exports are {', '.join(f'{name}.csv' for name in FILES)}")
    query = LogQuery.parse({**request.query_params, "limit": "1000"}, site.time_zone)
    entries = [entry async for entry in _entries(runtime.store, site.id, query)]
    make, columns, first_line = FILES[target]
    return Response(csv_file(columns, make(entries, site.exports), first_line), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{site.id}-{target}.csv"'})


async def _entries(store: Store, site: str, query: LogQuery) -> AsyncIterator[dict[str, Any]]:
    """Every log entry of the query's days, oldest first."""
    lower = query.first_id
    while batch := cast(list[tuple[bytes, Fields]], await store.client.xrange(log_key(site), lower, "+", count=BATCH)):
        lower = f"({batch[-1][0].decode()}"
        for entry in await bodies(store, site, batch):
            if entry is not None and query.keeps_time(entry["at"]):
                yield entry


class Uploads:
    """The scheduled uploads, in whichever process takes a target's lock for the period."""

    def __init__(self, store: Store, sites: Callable[[], list[Site]], now_ms: Callable[[], int],
                 urls: Mapping[str, str], every: int = 3600) -> None:
        self.store, self.sites, self.now_ms, self.urls, self.every = store, sites, now_ms, urls, every
        self.client = httpx.AsyncClient(timeout=60, follow_redirects=False)
        self._google_tokens: dict[str, tuple[str, float]] = {}  # refresh token -> access token, and until when

    async def keep_uploading(self) -> None:
        try:
            await repeat(self.every, self.upload_due, "exports")
        finally:
            await self.client.aclose()

    async def upload_due(self) -> None:
        for site in self.sites():
            for target in targets(site.exports):
                lock = f"sw:{{{site.id}:log}}:export:{target}:lock"
                if await self.store.client.set(lock, 1, nx=True, ex=max(1, self.every - 1)):
                    await self._upload(site, target)

    async def _upload(self, site: Site, target: str) -> None:
        """What the log gained since the last upload that went through; the cursor moves only then."""
        client, cursor_key = self.store.client, f"sw:{{{site.id}:log}}:export:{target}"
        cursor = cast(bytes | None, await client.get(cursor_key))
        lower = f"({cursor.decode()}" if cursor else "-"
        batch = cast(list[tuple[bytes, Fields]], await client.xrange(log_key(site.id), lower, "+", count=BATCH))
        if not batch:
            return
        make = google_clicks if target == "google-ads" else FILES[target][0]
        rows = make([entry for entry in await bodies(self.store, site.id, batch) if entry is not None], site.exports)
        status, detail = "nothing to send", ""
        if rows:
            try:
                status, detail = await (self._google(site.exports, rows) if target == "google-ads"
                                        else self._metrica(site.exports, target, rows))
            except (httpx.HTTPError, ValueError, KeyError, Refused) as exc:
                status, detail = "failed", str(exc)[:SHOWN] or type(exc).__name__
        if status != "failed":
            await client.set(cursor_key, batch[-1][0])
        EXPORTS.labels(site.id, target, status).inc()
        await client.xadd(f"sw:{{{site.id}:log}}:uploads", {"u": orjson.dumps({
            "target": target, "at": self.now_ms(), "rows": len(rows), "status": status, "detail": detail})},
            maxlen=KEPT_UPLOADS, approximate=True)

    async def _metrica(self, exports: Exports, target: str, rows: list[list[Any]]) -> tuple[str, str]:
        """Metrica's upload: the CSV as the multipart part `file`, an OAuth token; its uploading id back."""
        metrica = exports.metrica
        assert metrica is not None
        _, columns, first_line = FILES[target]
        body = csv_file(columns, rows, first_line)
        method = "upload_calls" if target == "metrica-calls" else "upload"
        response = await self.client.post(
            f"{self.urls['metrica']}/management/v1/counter/{metrica.counter}/offline_conversions/{method}",
            params={"comment": "Swapline"}, headers={"authorization": f"OAuth {metrica.token}"},
            files={"file": ("swapline.csv", body.encode(), "text/csv")})
        uploading = _taken(response).json()["uploading"]
        return "sent", f"uploading {uploading['id']}: {uploading['status']}"

    async def _google(self, exports: Exports, rows: list[list[Any]]) -> tuple[str, str]:
        """Google Ads' uploadClickConversions, partial failure on (as it must be): what it took.
        Rows it refused are not sent again: its reasons (a click too old, an unknown gclid) stay."""
        google = exports.google_ads
        assert google is not None
        conversions = [{id_name: click, "conversionAction": f"customers/{google.customer}/conversionActions/{action}",
                        "conversionDateTime": f"{when}+00:00", "conversionValue": float(value),
                        "currencyCode": currency}
                       for id_name, click, conversion_kind, when, value, currency in rows
                       if (action := google.actions.get(conversion_kind))]
        if not conversions:
            return "nothing to send", "no conversion action for these kinds"
        headers = {"authorization": f"Bearer {await self._google_access(exports)}"}
        if google.developer_token:
            headers["developer-token"] = google.developer_token
        if google.login_customer:
            headers["login-customer-id"] = google.login_customer
        address = f"{self.urls['google_ads']}/customers/{google.customer}:uploadClickConversions"
        response = await self.client.post(address, json={"conversions": conversions, "partialFailure": True},
                                          headers=headers)
        answer = _taken(response).json()
        failed = answer.get("partialFailureError")
        taken = sum(1 for result in answer.get("results", []) if result)  # a refused row's result is {}
        status = "sent" if not failed else "partly refused" if taken else "refused"
        return status, f"{taken} of {len(conversions)} taken" + (f"; {_said(failed)}" if failed else "")

    async def _google_access(self, exports: Exports) -> str:
        """An access token from the site's refresh token, kept until a minute before it runs out."""
        google = exports.google_ads
        assert google is not None
        kept = self._google_tokens.get(google.refresh_token)
        if kept and kept[1] > time.monotonic():
            return kept[0]
        response = await self.client.post(self.urls["google_oauth"], data={
            "grant_type": "refresh_token", "client_id": google.client_id, "client_secret": google.client_secret,
            "refresh_token": google.refresh_token})
        grant = _taken(response).json()
        self._google_tokens[google.refresh_token] = (grant["access_token"],
                                                     time.monotonic() + int(grant.get("expires_in", 3600)) - 60)
        return str(grant["access_token"])


async def exports_endpoint(request: Request) -> JSON:
    """`GET /v1/exports/{site}`: which uploads the site has, and how the latest went."""
    runtime: Runtime = request.app.state.runtime
    site = runtime.site(request.path_params["site"])
    await require_report_token(runtime, site, request)
    return JSON({"site": site.id, "targets": targets(site.exports), "uploads": await latest(runtime.store, site.id)})


async def latest(store: Store, site: str, count: int = 20) -> list[dict[str, Any]]:
    uploads = await store.client.xrevrange(f"sw:{{{site}:log}}:uploads", count=count)
    return [orjson.loads(fields[b"u"]) for _, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], uploads)]


def targets(exports: Exports) -> list[str]:
    """The uploads a site's credentials allow."""
    return [*(("metrica", "metrica-calls") if exports.metrica else ()),
            *(("google-ads",) if exports.google_ads else ())]


class Refused(Exception):
    """A platform answered an error status; the message is what it said."""


def _taken(response: httpx.Response) -> httpx.Response:
    """The response, if a success; else `Refused` with the platform's own words (httpx's own
    message would say only the status, and point to a page about it)."""
    if response.is_success:
        return response
    try:
        answer = response.json()
    except ValueError:
        answer = None
    said = _said(answer) if isinstance(answer, dict) else ""
    raise Refused(f"{response.status_code}: {said or ' '.join(response.text.split())}"[:SHOWN])


def _said(answer: dict[str, Any]) -> str:
    """The message of a platform's error: Metrica's `errors` (each with its `error_type`) or
    `message`, Google's `error.message` (or a partial failure's `message`), OAuth's
    `error_description`."""
    error = answer.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or "")
    if isinstance(error, str):
        return f"{error}: {answer['error_description']}" if answer.get("error_description") else error
    errors = [f"{item.get('error_type')}: {item.get('message')}" if item.get("error_type") else str(item.get("message"))
              for item in answer.get("errors") or [] if isinstance(item, dict)]
    return "; ".join(errors) or str(answer.get("message") or "")


def _utc(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)

"""`swapline calls import FILE.csv`: calls a PBX kept in a file, sent to the running service.

The file is CSV with a header row and the fields of `POST /v1/calls` as columns (docs/CALLS.md):
`call_id`, `called`, `start` (unix seconds, or ISO 8601 with its zone), and if it has them
`caller`, `talk_seconds`, `status`; other columns are ignored. Each row goes to the service
signed with the site's `calls.secret`, so it is credited exactly as the webhook would credit
it, and a file sent twice counts each call once (by its `call_id`).
"""

from __future__ import annotations

import csv
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from service.calls import signature

COLUMNS = ("call_id", "called", "caller", "start", "talk_seconds", "status")


class Refused(NamedTuple):
    line: int
    reason: str


def rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each call of the file with its line number, as the webhook's JSON."""
    with path.open(newline="", encoding="utf-8-sig") as file:  # a spreadsheet's BOM is no column name
        reader = csv.DictReader(file)
        for row in reader:
            call: dict[str, Any] = {name: value.strip() for name, value in row.items()
                                    if name in COLUMNS and value and value.strip()}
            for name in ("start", "talk_seconds"):  # numbers as numbers; anything else is the service's to judge
                if call.get(name, "").isdigit():
                    call[name] = int(call[name])
            yield reader.line_num, call


def send(base: str, site: str, secret: bytes, calls: Iterator[tuple[int, dict[str, Any]]]) -> tuple[Counter[str],
                                                                                                    list[Refused]]:
    """Post each call; how they were taken (credited, not credited, already known) and which
    the service refused, with its reason."""
    taken: Counter[str] = Counter()
    refused = []
    for line, call in calls:
        body = orjson.dumps(call)
        request = urllib.request.Request(
            f"{base.rstrip('/')}/v1/calls?site={site}", data=body, method="POST",
            headers={"Content-Type": "application/json",
                     "X-Swapline-Signature": signature(secret, body)})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            refused.append(Refused(line, _reason(exc)))
            continue
        if answer.get("duplicate"):
            taken["already known"] += 1
        else:
            taken["credited" if answer.get("credited") else "not credited"] += 1
    return taken, refused


def _reason(refusal: urllib.error.HTTPError) -> str:
    """The service's own words (its JSON error), or the status of whatever answered instead."""
    try:
        message = orjson.loads(refusal.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {refusal.code}"
    return str(message)

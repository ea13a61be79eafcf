"""`swapline calls import FILE.csv`: calls a PBX kept in a file, sent to the running service.

Three kinds of file, told apart by their first row:

- Swapline's CSV: a header row and the fields of `POST /v1/calls` as columns (docs/CALLS.md):
  `call_id`, `called`, `start` (unix seconds, or ISO 8601, with its zone or in the site's
  `calls.time_zone`), and if it has them `caller`, `talk_seconds`, `status`; other columns
  are ignored.
- Asterisk's CDR, `Master.csv`: no header, 16 to 21 columns in the order of Asterisk's
  cdr_csv.c.
- A CDR that names its columns (FreePBX's CDR report): `calldate` for the start, and `did`
  for the number dialled where it has one.

Of a CDR, only calls to the site's own numbers are sent (it also holds internal and outgoing
calls); the call id is the CDR's `uniqueid` when it logs one, else a digest of the row, so a
file sent again counts each call once all the same. The rows of one call (a ring group's
phones, a queue's agents, a transfer, a Local channel's legs: one `linkedid`, else one
`uniqueid`, else one channel, caller, number and start) are one call, answered if a phone
answered it (a row answered with no channel bridged is the PBX's own voice menu or queue
music), and talked on for as long as its answered rows together.

Each call goes to the service signed with the site's `calls.secret`, so it is credited exactly
as the webhook would credit it.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import itertools
import math
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from service.integrations.calls import ended_as, signature, site_number
from service.rules.engine import Site

COLUMNS = ("call_id", "called", "caller", "start", "talk_seconds", "status")
# cdr_csv.c's columns, then those cdr.conf adds, in its order: loguniqueid, loguserfield,
# newcdrcolumns. A 17th or 18th of 20 is the uniqueid or the userfield: a uniqueid looks like one.
ASTERISK = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
            "start", "answer", "end", "duration", "billsec", "disposition", "amaflags")
NEW_COLUMNS = ("peeraccount", "linkedid", "sequence")
ADDED = {16: ((),), 17: (("uniqueid",), ("userfield",)), 18: (("uniqueid", "userfield"),),
         19: (NEW_COLUMNS,), 20: (("uniqueid", *NEW_COLUMNS), ("userfield", *NEW_COLUMNS)),
         21: (("uniqueid", "userfield", *NEW_COLUMNS),)}
UNIQUEID = re.compile(r"(?:[\w.-]+-)?[0-9]{9,11}\.[0-9]+")  # [systemname-]unix seconds.sequence


class Refused(NamedTuple):
    line: int
    reason: str


def rows(path: Path, site: Site, utc: bool = False, id_prefix: str = "") -> Iterator[
        tuple[int, dict[str, Any] | str | None]]:
    """Each call of the file with its line number, as the webhook's JSON; None for a CDR row
    that is no call to the site; the reason for a line that is no row of a CSV (which the
    others do not wait for). `utc`: the file's times without a zone are UTC (an Asterisk CDR's,
    with cdr.conf's `usegmtime`); `id_prefix` goes before every call id."""
    for line, call in _rows(path, site, utc):
        if isinstance(call, dict) and "call_id" in call:
            call["call_id"] = id_prefix + str(call["call_id"])
        yield line, call


def _rows(path: Path, site: Site, utc: bool) -> Iterator[tuple[int, dict[str, Any] | str | None]]:
    with path.open("rb") as file:
        lines = _decoded(file)
        header = next(lines, "")
        # Excel in Russian (and most of Europe) saves a CSV with «;» between the columns.
        reader = csv.reader(itertools.chain([header], lines),
                            delimiter=";" if header.count(";") > header.count(",") else ",")
        records = _records(reader)
        line, first = next(records, (0, None))
        if first is None:
            return
        if isinstance(first, str):
            raise ValueError(f"{path}:{line}: {first}")
        if "call_id" in first:
            yield from _swapline(records, first, utc)
            return
        if {"disposition", "billsec"} <= {name.strip().lower() for name in first}:
            cdrs = _headed(records, first)
        elif len(first) in ADDED:
            cdrs = _headless(itertools.chain([(line, first)], records))
        else:
            raise ValueError(f"{path}: neither Swapline's calls CSV (no call_id column) nor an Asterisk CDR "
                             f"(16 to 21 columns, or a header naming disposition and billsec; not {len(first)})")
        yield from _asterisk(cdrs, site, utc)


def _decoded(file: IO[bytes]) -> Iterator[str]:
    """The file's lines as text: UTF-8 (a spreadsheet's BOM is no column name), else cp1251, line
    by line, as a PBX writes each caller's name in the bytes it was given."""
    for number, raw in enumerate(file):
        try:
            line = raw.decode("utf-8-sig" if number == 0 else "utf-8")
        except UnicodeDecodeError:
            line = raw.decode("cp1251", "replace")
        yield line


def _records(reader: Any) -> Iterator[tuple[int, list[str] | str]]:
    """The reader's rows, each at its line; a line it cannot read (a field over the csv module's
    128 KB) as the reason, and the rows after it read all the same."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, f"not read as CSV: {exc}"
            continue
        yield reader.line_num, row


def _swapline(records: Iterator[tuple[int, list[str] | str]], header: list[str], utc: bool
              ) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line, row in records:
        if isinstance(row, str):
            yield line, row
            continue
        call: dict[str, Any] = {name: value.strip() for name, value in zip(header, row, strict=False)
                                if name in COLUMNS and value and value.strip()}
        for name in ("start", "talk_seconds"):  # numbers as numbers; anything else is the service's to judge
            if call.get(name, "").isdigit():
                call[name] = int(call[name])
        if utc and isinstance(call.get("start"), str):
            call["start"] = _in_utc(call["start"])
        yield line, call


def _in_utc(start: str) -> str:
    """A start written without a time zone, as UTC; one with its zone, as written."""
    try:
        zoneless = datetime.datetime.fromisoformat(start).tzinfo is None
    except ValueError:
        return start  # the service says what is wrong with it
    return start + "+00:00" if zoneless else start


def _headless(records: Iterable[tuple[int, list[str] | str]]) -> Iterator[tuple[int, dict[str, str] | str]]:
    """The rows of Asterisk's Master.csv, by its columns' names."""
    for line, row in records:
        yield line, row if isinstance(row, str) else _named(row)


def _headed(records: Iterable[tuple[int, list[str] | str]], header: list[str]
            ) -> Iterator[tuple[int, dict[str, str] | str]]:
    """The rows of a CDR that names its columns (FreePBX's CDR report): its `calldate` is the
    start, and its `did` the number dialled, where `dst` is the extension or group that rang."""
    names = [name.strip().lower() for name in header]
    for line, row in records:
        if isinstance(row, str):
            yield line, row
            continue
        cdr = dict(zip(names, row, strict=False))
        cdr.setdefault("start", cdr.get("calldate", ""))
        if cdr.get("did"):
            cdr["dst"] = cdr["did"]
        yield line, cdr


def _asterisk(records: Iterable[tuple[int, dict[str, str] | str]], site: Site, utc: bool
              ) -> Iterator[tuple[int, dict[str, Any] | str | None]]:
    """The calls of a CDR's rows, each at its first row's line and with its first row's id
    (what an earlier import sent): the rows of one call (a ring group's, a queue's agents', a
    transfer's, a Local channel's legs) as one, answered if a person answered any, talked on
    for as long as any of them talked."""
    calls: dict[str, tuple[int, dict[str, Any], list[tuple[str, int]]]] = {}
    for line, cdr in records:
        if isinstance(cdr, str):
            yield line, cdr
            continue
        called = cdr.get("dst", "")
        # The site's numbers, as the webhook knows them: a call to the overflow number or the
        # page's own is the site's, credited to nobody, and the log says why.
        if site_number(site, called) is None:  # internal, outgoing, or another site's
            yield line, None
            continue
        billsec = cdr.get("billsec", "")
        call: dict[str, Any] = {
            "call_id": cdr.get("uniqueid") or _digest(cdr),
            "called": called, "start": _in_utc(cdr.get("start", "")) if utc else cdr.get("start", ""),
            "talk_seconds": int(billsec) if billsec.isdigit() else billsec,  # else the service says what is wrong
            "status": ended_as(cdr.get("disposition", "")),
        }
        if call["status"] == "completed" and not cdr.get("dstchannel"):
            # The PBX itself picked up (a voice menu, a queue's music) and no phone did: nobody talked.
            call["status"], call["talk_seconds"] = "no-answer", 0
        if cdr.get("src"):
            call["caller"] = cdr["src"]
        one = cdr.get("linkedid") or cdr.get("uniqueid") or "\x1f".join(
            (cdr.get("channel", ""), cdr.get("src", ""), called, cdr.get("start", "")))
        at, so_far, talks = calls.setdefault(one, (line, call, []))
        if call["status"] == "completed" and isinstance(call["talk_seconds"], int):
            talks.append((cdr.get("end", ""), call["talk_seconds"]))
        if call["status"] == "completed" and so_far["status"] != "completed":
            calls[one] = at, {**call, "call_id": so_far["call_id"]}, talks
    for line, call, talks in calls.values():
        if len(talks) > 1:
            call["talk_seconds"] = _talked(talks)
        yield line, call


def _digest(cdr: dict[str, str]) -> str:
    """The id of a row that logs no uniqueid: the same row, the same id, whichever import sends it."""
    return "cdr-" + hashlib.sha256("\x1f".join(cdr.values()).encode()).hexdigest()[:24]


def _named(row: list[str]) -> dict[str, str]:
    """A CDR row's values by their column's name."""
    added = ADDED.get(len(row), ((),))
    columns = added[0] if len(added) == 1 or UNIQUEID.fullmatch(row[16]) else added[1]
    return dict(zip((*ASTERISK, *columns), row, strict=False))


def _talked(talks: list[tuple[str, int]]) -> int:
    """How long a call was talked on, of its answered rows (each ending at its `end`, after its
    `billsec`): agents one after another add up, two legs of one talk count once."""
    try:
        spans = sorted((end - seconds, end) for end, seconds in (
            (datetime.datetime.fromisoformat(end).timestamp(), seconds) for end, seconds in talks))
    except ValueError:  # an end that is no time: the longest row's talk
        return max(seconds for _, seconds in talks)
    total, reached = 0.0, -math.inf
    for begins, ends in spans:
        total += max(0.0, ends - max(begins, reached))
        reached = max(reached, ends)
    return round(total)


# Calls nobody held the number for, hours from any hold: a file read in the wrong zone.
ASTRAY, HOURS = "hours from any hold", 3_600_000


def send(base: str, site: str, secret: bytes, calls: Iterator[tuple[int, dict[str, Any] | str | None]]) -> tuple[
        Counter[str], list[Refused]]:
    """Post each call; how they were taken (credited, not credited and why, already known, or
    not a call to the site; and `ASTRAY`, those of them hours from any hold of their number) and
    which the service, or the file's reading, refused, with its reason."""
    taken: Counter[str] = Counter()
    refused = []
    for line, call in calls:
        if call is None:
            taken["not to the site's numbers"] += 1
            continue
        if isinstance(call, str):
            refused.append(Refused(line, call))
            continue
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
            taken["credited" if answer.get("credited") else f"not credited ({answer.get('reason')})"] += 1
            near = answer.get("holds_near") or {}
            gaps = [abs(answer["start"] - at) for at in (near.get("last_ended"), near.get("next_began")) if at]
            taken[ASTRAY] += answer.get("reason") == "no_holder" and min(gaps, default=HOURS) >= HOURS
    return taken, refused


def _reason(refusal: urllib.error.HTTPError) -> str:
    """The service's own words (its JSON error), or the status of whatever answered instead."""
    try:
        message = orjson.loads(refusal.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {refusal.code}"
    return str(message)

"""The `swapline` command: serve, rules check, rules preview, pools, report, number, show, forget,
sites erase, store repair, calls import."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import importlib.metadata
import ipaddress
import logging
import logging.config
import os
import signal
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zoneinfo
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from service.config import ConfigError, Settings, warnings
from service.integrations import callimport
from service.rules import rulefiles
from service.rules.engine import decide
from service.rules.lastgood import LastGood
from service.tracking.visitors import new_vid, valid_vid

VERSION = importlib.metadata.version("swapline")
WIDEST = 60  # characters of a cell in the tables `swapline report` prints
NUMBER_CALLS = 1000  # calls to a number `swapline number` reads from the log, of the days it shows
TOKEN_VARIABLE = "SWAPLINE_TOKEN"  # what the commands that ask the service ask with, over the rules' report token
PREVIEW_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


def _ranged(least: int, most: int) -> Callable[[str], int]:
    """An argparse type: a whole number from `least` to `most`, else one clear line."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"must be from {least} to {most}, got {value}")
        return value
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swapline", description=__doc__)
    parser.add_argument("--version", action="version", version=f"swapline {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service (embedded Valkey unless SWAPLINE_REDIS_URL)")
    serve.add_argument("--host", help="default: SWAPLINE_HOST or 127.0.0.1")
    serve.add_argument("--port", type=_ranged(1, 65535), help="default: SWAPLINE_PORT or 8000")
    serve.add_argument("--workers", type=_ranged(1, 256), help="default: SWAPLINE_WORKERS or 1")

    rules = commands.add_parser("rules", help="check or preview rule files")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rule_commands.add_parser("check", help="validate a rules directory")
    check.add_argument("directory", nargs="?", type=Path, help="default: SWAPLINE_RULES_DIR or ./rules")
    preview = rule_commands.add_parser("preview", help="print a decision, without side effects")
    preview.add_argument("--site", required=True)
    preview.add_argument("--url", required=True, help="page URL with its query string")
    preview.add_argument("--ref", help="referrer URL")
    preview.add_argument("--ip", default="", help="client IP for GeoIP")
    preview.add_argument("--city", help="a Russian city the visitor is in, by name (instead of --ip)")
    preview.add_argument("--vid", help="visitor id (default: a new one)")
    preview.add_argument("--ua", default=PREVIEW_AGENT, help="user agent")
    preview.add_argument("--dir", type=Path, help="rules directory")

    pools = commands.add_parser("pools", help="number pool utilisation and recommended sizes (asks the service)")
    pools.add_argument("--site", help="default: every site of the rules (SWAPLINE_RULES_DIR) that leases numbers, "
                                      "each asked with its report token, the pools that ran short first")
    pools.add_argument("--url", help="the running service (default: http://SWAPLINE_HOST:SWAPLINE_PORT)")
    pools.add_argument("--format", choices=("table", "json"), default="table")

    number = commands.add_parser("number", help="who held a tracking number around a moment, whom a call then "
                                                "goes to, and the calls to it (asks the service)")
    number.add_argument("number", help="the number, as the telephony or a client writes it")
    number.add_argument("--site", required=True)
    number.add_argument("--at", help="the moment: '2026-12-04 14:05' (the site's calls.time_zone), ISO 8601 with "
                                     "a zone, or unix seconds; default: now")
    number.add_argument("--url", help="the running service (default: http://SWAPLINE_HOST:SWAPLINE_PORT)")
    number.add_argument("--format", choices=("table", "json"), default="table")

    for name, does in (("show", "what the store keeps of one visitor or caller, as JSON: their right of access"),
                       ("forget", "erase one visitor's or caller's data")):
        person = commands.add_parser(name, help=f"{does} (152-FZ / GDPR; asks the service)")
        person.add_argument("--site", required=True)
        whom = person.add_mutually_exclusive_group(required=True)
        whom.add_argument("--vid", help="the visitor id (the swl_vid cookie)")
        whom.add_argument("--caller", help="a caller's phone number, as they or the telephony write it")
        person.add_argument("--url", help="the running service (default: http://SWAPLINE_HOST:SWAPLINE_PORT)")

    sites = commands.add_parser("sites", help="erase the data of a site no longer in the rules (in the store itself)")
    site_commands = sites.add_subparsers(dest="sites_command", required=True)
    erase = site_commands.add_parser("erase", help="erase everything the store keeps of a site no longer in the "
                                                   "rules (a client who left), before its id goes to another")
    erase.add_argument("site", help="the site id (data-site)")

    store = commands.add_parser("store", help="the embedded store")
    store_commands = store.add_subparsers(dest="store_command", required=True)
    store_commands.add_parser("repair", help="repair a damaged AOF of the embedded store (the service stopped)")

    calls = commands.add_parser("calls", help="calls a PBX kept in a file")
    call_commands = calls.add_subparsers(dest="calls_command", required=True)
    imported = call_commands.add_parser("import", help="send a CSV of calls to the service, credited as webhooks")
    imported.add_argument("file", type=Path, help="CSV: call_id, called, start[, caller, talk_seconds, status], "
                                                  "or Asterisk's Master.csv")
    imported.add_argument("--site", required=True)
    imported.add_argument("--utc", action="store_true",
                          help="the file's times without a zone are UTC (an Asterisk CDR's with usegmtime=yes)")
    imported.add_argument("--id-prefix", default="", metavar="PREFIX",
                          help="put before every call id: calls sent before, with a wrong time, go again as new ones")
    imported.add_argument("--url", help="the running service (default: http://SWAPLINE_HOST:SWAPLINE_PORT)")

    report = commands.add_parser("report", help="conversion per page and variant (asks the service)")
    report.add_argument("--site", required=True)
    report.add_argument("--url", help="the running service (default: http://SWAPLINE_HOST:SWAPLINE_PORT)")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    report.add_argument("--from", dest="since", help="first cohort day, YYYY-MM-DD")
    report.add_argument("--to", dest="until", help="last cohort day, YYYY-MM-DD")
    report.add_argument("--page")
    report.add_argument("--experiment")
    report.add_argument("--metric", help="conversion kind the statistics compare (default: any)")
    report.add_argument("--by", help="visits and conversions by one or two of: source, medium, campaign, phrase, "
                                     "landing, region, city, device, pool (e.g. --by source,campaign); "
                                     "or visitors by first page or experiment variant: --by page, --by variant")

    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"swapline: {exc}", file=sys.stderr)
        return 2
    try:
        done = _run(settings, args)
        sys.stdout.flush()  # here, where a reader gone is caught, not at exit
        return done
    except BrokenPipeError:  # `swapline … | head` read what it wanted: no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit would fail again
        return 1


def _run(settings: Settings, args: argparse.Namespace) -> int:
    """The command `args` name."""
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "pools":
        return _pools(settings, args)
    if args.command == "report":
        return _report(settings, args)
    if args.command in ("show", "forget"):
        return _person(settings, args)
    if args.command == "number":
        return _number(settings, args)
    if args.command == "sites":
        return _erase(settings, args.site)
    if args.command == "store":
        return _repair(settings)
    if args.command == "calls":
        return _import_calls(settings, args)
    if args.rules_command == "check":
        return _check(args.directory or settings.rules_dir)
    return _preview(settings, args)


def _load(directory: Path, load: Callable[[Path], rulefiles.RuleSet] = rulefiles.load) -> rulefiles.RuleSet | None:
    try:
        return load(directory)
    except rulefiles.RulesError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _check(directory: Path) -> int:
    rules = _load(directory)
    if rules is None:
        return 1
    for warning in rules.warnings:
        print(warning)
    print(f"{directory}: OK, {len(rules.sites)} site(s): {', '.join(sorted(rules.sites))}; "
          f"version {rules.version}")
    return 0


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _preview(settings: Settings, args: argparse.Namespace) -> int:
    from service.errors import HTTPError
    from service.front.decide import address, answer, page_view, preview_geo
    from service.rules.geo import GeoDB

    rules = _load(args.dir or settings.rules_dir)
    if rules is None:
        return 1
    site = rules.sites.get(args.site)
    if site is None:
        print(f"swapline: no site {args.site!r}; sites: {', '.join(sorted(rules.sites))}", file=sys.stderr)
        return 1
    if args.ip and not _is_address(args.ip):
        print(f"swapline: --ip {args.ip!r} is no IPv4 or IPv6 address", file=sys.stderr)
        return 1
    places = GeoDB(settings.geoip_db)
    if args.city and places.city(args.city) is None:  # named by the option given, not the URL's parameter
        print(f"swapline: --city: no Russian city is called {args.city!r}", file=sys.stderr)
        return 1
    try:
        city = args.city or address(args.url).city
        geo = preview_geo(places, city) if city else places.lookup(args.ip)
        seen = page_view(args.url, args.ref, args.vid or new_vid(), geo, args.ua)
    except HTTPError as exc:
        print(f"swapline: {exc.message}", file=sys.stderr)
        return 1
    outcome = decide(site, seen)
    body = answer(site, seen, outcome, token=None, version=rules.version, preview=True,
                  page=urllib.parse.quote_plus(args.url))
    sent = orjson.loads(orjson.dumps(body))  # as the endpoint sends it: its shared parts are JSON already
    sys.stdout.write(orjson.dumps(sent, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _import_calls(settings: Settings, args: argparse.Namespace) -> int:
    rules = _load(settings.rules_dir)  # the calls are signed with the site's calls.secret from there
    if rules is None:
        print("swapline: the calls are signed with the site's calls.secret from the rules: run this where "
              "`swapline serve` runs, or set SWAPLINE_RULES_DIR", file=sys.stderr)
        return 1
    site = rules.sites.get(args.site)
    if site is None or site.calls.secret is None:
        what = "no such site" if site is None else "no calls.secret (or the environment variable it names is not set)"
        print(f"swapline: site {args.site!r}: {what} in {settings.rules_dir}", file=sys.stderr)
        return 1
    base = _service(settings, args)
    try:
        taken, refused = callimport.send(base, site.id, site.calls.secret,
                                         callimport.rows(args.file, site, args.utc, args.id_prefix))
    except (OSError, ValueError) as exc:  # no such file, no calls file, no service there
        print(f"swapline: {exc}", file=sys.stderr)
        return 1
    for line, reason in refused:
        print(f"{args.file}:{line}: {reason}", file=sys.stderr)
    astray = taken.pop(callimport.ASTRAY, 0)
    print(", ".join(f"{count} {what}" for what, count in sorted(taken.items()) if count) or "no calls", end="")
    print(f"; {len(refused)} refused" if refused else "")
    if astray > 1:  # a zone written wrong credits nobody
        read_in = "UTC" if args.utc else site.calls.time_zone or site.time_zone
        mend = "without --utc" if args.utc else "with --utc if they are UTC (else set the site's calls.time_zone)"
        print(f"swapline: {astray} of these calls started hours from any hold of their number: are the file's times "
              f"in {read_in}, as read? If not, send the file again {mend}, and with --id-prefix: the calls sent keep "
              f"their times, and go again only under new ids; they stay their callers' first and target calls, so "
              f"the new ones count as repeats (docs/CALLS.md)", file=sys.stderr)
    if taken["already known"] and not args.id_prefix and set(taken) <= {"already known", "not to the site's numbers"}:
        read = "as read now (--utc)" if args.utc else "read otherwise (--utc)"
        print(f"swapline: every call of the file was sent before, and keeps what it was sent with: to send them "
              f"again {read}, add --id-prefix, and they go as new calls", file=sys.stderr)
    return 1 if refused else 0


def _service(settings: Settings, args: argparse.Namespace) -> str:
    """The running service the command talks to: `--url`, else where `serve` listens."""
    return str(args.url or f"http://{settings.host}:{settings.port}")


def _ask(settings: Settings, args: argparse.Namespace, path: str, raw: bool = False, method: str = "GET",
         sends: dict[str, Any] | None = None, token: str | None = None) -> Any:
    """Ask the running service for `path` with `token`, else `SWAPLINE_TOKEN` (a read token will
    do, but to erase), else the site's report token from the rules; POST what it `sends` as JSON,
    if anything."""
    token = token or os.environ.get(TOKEN_VARIABLE)
    rules = None
    if not token:
        rules = _load(settings.rules_dir)
        site = rules.sites.get(args.site) if rules else None
        token = site.report_token if site else None
    if not token:
        readers = "" if args.command == "forget" else " or a read token"  # which erases nothing
        sites = f": they have {', '.join(sorted(rules.sites))}" if rules and args.site not in rules.sites else ""
        raise SystemExit(f"swapline: no token for site {args.site!r}: set {TOKEN_VARIABLE} to its report token"
                         f"{readers}, or run it where SWAPLINE_RULES_DIR names the service's rules, which give "
                         f"the report token ({settings.rules_dir} do not{sites})")
    base = _service(settings, args)
    request = urllib.request.Request(base.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"},
                                     method=method)
    if sends is not None:
        request.method, request.data = "POST", orjson.dumps(sends)
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            return body.decode() if raw else orjson.loads(body)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"swapline: {base} answered {exc.code}: {exc.read().decode(errors='replace')}") from None
    except OSError as exc:
        raise SystemExit(f"swapline: cannot reach the service at {base}: {exc}") from None


def _person(settings: Settings, args: argparse.Namespace) -> int:
    """`show` or `forget` a visitor or a caller: what is kept of them, or what was erased."""
    erases = args.command == "forget"
    if args.caller is not None:
        answer = _ask(settings, args, f"/v1/callers/{args.site}{'/forget' if erases else ''}",
                      sends={"number": args.caller})
    elif valid_vid(args.vid):
        answer = _ask(settings, args, f"/v1/visitors/{args.site}/{args.vid}", method="DELETE" if erases else "GET")
    else:
        print(f"swapline: {args.vid!r} is no visitor id: the swl_vid cookie's value is letters, digits, _ and -",
              file=sys.stderr)
        return 2
    sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    kept = answer["erased"] if erases else {kind: held for kind, held in answer.items()
                                            if kind not in ("site", "vid", "time_zone")}
    if not any(kept.values()):  # a mistyped id, or one erased already
        print(f"swapline: the store keeps nothing of that {'number' if args.caller else 'visitor'} on site "
              f"{args.site!r}{', or it was erased already' if erases else ''}", file=sys.stderr)
    return 0


def _report(settings: Settings, args: argparse.Namespace) -> int:
    filters = {"from": args.since, "to": args.until, "page": args.page, "experiment": args.experiment,
               "metric": args.metric, "by": args.by}
    query = urllib.parse.urlencode({name: value for name, value in filters.items() if value})
    path = f"/v1/reports/{args.site}{'.csv' if args.format == 'csv' else ''}{'?' + query if query else ''}"
    body = _ask(settings, args, path, raw=args.format == "csv")
    if args.format == "csv":
        sys.stdout.write(body)
    elif args.format == "json":
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.by:
        _print_by(body)
    else:
        _print_report(body)
    return 0


def _print_by(report: dict[str, Any]) -> None:
    print(f"site {report['site']}, {report['from']} to {report['to']}, by {', '.join(report['by'])}")
    kinds = {"call": "calls", "qualified_call": "target calls", "form": "forms", "tel_click": "tel taps",
             "goal": "goals"}
    _table([(*report["by"], "visits", "visitors", *kinds.values(), "converted", "rate", "95% interval")], [
        (*row["values"], *("" if row[count] is None else row[count] for count in ("visits", "visitors")),
         *(row["conversions"][kind] for kind in kinds), row["converted"], _pct(row["rate"]),
         f"{_pct(row['interval'][0])}..{_pct(row['interval'][1])}" if row["interval"] else "")
        for row in report["rows"]])


def _print_report(report: dict[str, Any]) -> None:
    metric = report["metric"]
    print(f"site {report['site']}, metric {metric}")
    print("\npages")
    _table([("page", "visitors", "converted", "rate")],
           [(p["page"], p["visitors"], p["converted"].get(metric, 0), _pct(p["rate"]))
            for p in report["pages"]])
    for table in report["experiments"]:
        print(f"\nexperiment {table['experiment']} on {table['page']}")
        # With several variants against the control, the p-values the dashboard shows: Holm-adjusted.
        p, holm = ("p_value_holm", ", Holm") if table["correction"] else ("p_value", "")
        _table([("variant", "visitors", "converted", "rate", "95% interval", "lift", f"p (always valid{holm})",
                 f"p{holm and ' (Holm)'}", "beats control")], [
            (row["variant"], row["visitors"], row["converted"].get(metric, 0), _pct(row["rate"]),
             f"{_pct(row['interval'][0])}..{_pct(row['interval'][1])}" if row["interval"] else "",
             _pct((row["lift"] or {}).get("relative")),
             _num(((row["lift"] or {}).get("sequential") or {}).get(p)),
             _num((row["lift"] or {}).get(p)), _chance((row["lift"] or {}).get("chance_to_beat")))
            for row in table["variants"]])
        for warning in table["warnings"]:
            print(f"  ! {warning}")
        if table["verdict"]:
            print(f"  = {table['verdict']}")


def _table(header: list[tuple[str, ...]], rows: list[tuple[Any, ...]]) -> None:
    """Columns aligned for a terminal; a cell longer than `WIDEST` (a landing page's path of
    thousands of characters) is cut, or it would pad every row to its width."""
    lines = [[_cut(str(cell)) for cell in line] for line in [*header, *rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def _cut(cell: str) -> str:
    return cell if len(cell) <= WIDEST else cell[:WIDEST - 1] + "…"


def _chance(value: float | None) -> str:
    """A chance to beat control that would round to a certainty says it is all but one."""
    if value is not None and not 0.001 <= value <= 0.999:
        return ">99.9%" if value > 0.999 else "<0.1%"
    return _pct(value)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


def _pools(settings: Settings, args: argparse.Namespace) -> int:
    if args.site:
        answers = [_ask(settings, args, f"/v1/pools/{args.site}")]
    else:  # an agency's every client: each site asked with its own report token
        rules = _load(settings.rules_dir)
        if rules is None:
            print(f"swapline: name a --site, or run it where SWAPLINE_RULES_DIR names the service's rules "
                  f"({settings.rules_dir} do not load)", file=sys.stderr)
            return 1
        answers = [_ask(settings, argparse.Namespace(**{**vars(args), "site": site.id}), f"/v1/pools/{site.id}",
                        token=site.report_token)
                   for site in rules.sites.values() if site.report_token and any(pool.numbers for pool in site.pools)]
    if args.format == "json":
        sys.stdout.write(orjson.dumps(answers[0] if args.site else {"sites": answers},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    rows = [{"site": answer["site"], **pool} for answer in answers for pool in answer["pools"]]
    if not rows:
        print(f"site {args.site} has no pool that leases numbers: its rules list none" if args.site else
              "no site of the rules has a pool that leases numbers", "(docs/RULES.md, Number pools)")
        return 0
    days = rows[0]["days"]
    if args.site:
        print(f"site {args.site}: held now; the peaks, arrivals and overflows of {days[-1]['day']} to {days[0]['day']}")
    else:
        rows.sort(key=lambda pool: -pool["overflowed_visitors"])
        print(f"every site: held now; the peaks, arrivals and overflows of the last {len(days)} days, on each site's "
              f"clock; the pools that ran short first")
    columns = ("site",) * (not args.site) + (
        "pool", "numbers", "held", "utilisation", "peak_held", "peak_wanted", "arrivals_peak_hour",
        "overflowed_visitors", "capped_visitors", "average_hold_s", "recommended_size")
    for pool in rows:
        if not pool["holds_ended"]:
            pool["average_hold_s"] = f"{pool['average_hold_s']} (its hold: none ended yet)"
    _table([columns], [tuple(pool[column] for column in columns) for pool in rows])
    return 0


def _number(settings: Settings, args: argparse.Namespace) -> int:
    """`number`: the holds of a tracking number around a moment, and the calls to it those days."""
    query = f"?{urllib.parse.urlencode({'at': args.at})}" if args.at else ""
    view = _ask(settings, args, f"/v1/numbers/{args.site}/{urllib.parse.quote(args.number, safe='')}{query}")
    calls: list[dict[str, Any]] = []
    cursor: str | None = ""
    while cursor is not None and len(calls) < NUMBER_CALLS:  # the log's pages of those days
        page = _ask(settings, args, f"{view['calls']}&limit=1000{'&cursor=' + cursor if cursor else ''}")
        calls, cursor = calls + page["entries"], page["next"]
    calls = sorted(reversed(calls), key=lambda call: call["start"])  # the log's newest first: ties as they came
    if args.format == "json":
        sys.stdout.write(orjson.dumps({**view, "calls": calls}, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    zone = zoneinfo.ZoneInfo(view["time_zone"])

    def when(ms: int | None) -> str:
        return "" if ms is None else datetime.datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M:%S")

    then = view["a_call_then"]
    print(f"{view['number']} ({then['kind']}{', pool ' + then['pool'] if then['pool'] else ''}) at "
          f"{when(view['at'])} {view['time_zone']}")
    if then["credited"]:
        print(f"a call then, from a new caller, goes to visitor {then['visitor']}{_came(then['visit'])}")
    else:
        near = then["holds_near"] or {}
        print(f"a call then goes to nobody: {then['reason']}" + "".join(
            f"; {what} {when(near[name])}" for name, what in (("last_ended", "the last hold ended"),
                                                              ("next_began", "the next began")) if near.get(name)))
    print("\nholds, oldest first" if view["holds"] else "\nno holds of it near then")
    if view["holds"]:
        _table([("began", "until", "visitor", "pool", "page", "came")], [
            (when(hold["began"]), when(hold["until"]) + ("" if hold["over"] else " (holds)"),
             hold["visitor"] or "(erased)", hold["pool"], hold["page"] or "",
             _came(hold["visit"]).removeprefix(", from "))
            for hold in view["holds"]])
    # The calls from an hour before those holds to an hour after them (or the moment).
    first = min((hold["began"] for hold in view["holds"]), default=view["at"]) - 3_600_000
    last = max((hold["until"] for hold in view["holds"]), default=view["at"]) + 3_600_000
    near = [call for call in calls if first <= call["start"] <= last]
    print(f"\ncalls to it from {when(first)} to {when(last)}{'' if near else ': none'}")
    if near:
        _table([("start", "call_id", "talk_s", "status", "caller", "target", "visitor", "reason")], [
            (when(call["start"]), call["call_id"], call["talk_seconds"], call["status"],
             "…" + call["caller_last_digits"] if call["caller_last_digits"] else "hidden",
             "yes" if call["qualified"] else f"no ({call['not_target']})" if call.get("not_target") else "no",
             call["visitor"] or "", call["reason"] or "") for call in near])
    if len(calls) > len(near):
        print(f"{len(calls)}{'+' if cursor else ''} calls to it on those days in all: --format json lists them")
    return 0


def _came(visit: dict[str, Any] | None) -> str:
    """How a visitor came, in a few words: source, campaign and phrase."""
    said = [f"{name} {value}" for name in ("source", "campaign", "phrase") if (value := (visit or {}).get(name))]
    return f", from {', '.join(said)}" if said else ""


def _erase(settings: Settings, site: str) -> int:
    from redis.exceptions import RedisClusterException

    from service.embedded import StoreError, reach
    from service.rules.ruleschema import is_id
    from service.tracking import sites
    from service.tracking.store import STORE_ERRORS, Store, connect, why

    if not is_id(site):  # and so no key pattern's wildcard, no separator of a tag (service.tracking.sites)
        print(f"swapline: {site!r} is no site id: lower-case Latin letters, digits, '-' and '_', at most 63 "
              "characters", file=sys.stderr)
        return 2
    rules = _load(settings.rules_dir)
    if rules is None:
        print(f"swapline: the rules in {settings.rules_dir} do not load, so whether they still have site {site!r} "
              "is unknown: erase it where `swapline serve` runs, or set SWAPLINE_RULES_DIR", file=sys.stderr)
        return 1
    if site in rules.sites:
        print(f"swapline: site {site!r} is in the rules ({settings.rules_dir}): take its file out, let the service "
              "reload, then erase it", file=sys.stderr)
        return 1

    async def erased(url: str) -> Counter[str] | None:
        store = Store(connect(url, settings.redis_cluster))
        try:
            return None if await sites.served(store, site) else await sites.erase(store, site)
        finally:
            await store.close()

    try:
        with contextlib.ExitStack() as stack:
            kinds = asyncio.run(erased(settings.redis_url or stack.enter_context(reach(settings.data_dir))))
    except StoreError as exc:
        print(f"swapline: {exc}", file=sys.stderr)
        return 1
    except RedisClusterException as exc:  # not a RedisError: a standalone server, most likely
        print(_not_a_cluster(exc), file=sys.stderr)
        return 1
    except STORE_ERRORS as exc:
        print(f"swapline: {why(exc)}", file=sys.stderr)
        return 1
    if kinds is None:
        print(f"swapline: site {site!r} is among the sites the service last loaded (the store's list, {sites.KNOWN}), "
              f"though not in {settings.rules_dir}: if a service still serves it, take its file out of that "
              "service's rules and let it reload; if the service is stopped, start it once without the file; "
              "then erase it", file=sys.stderr)
        return 1
    if not kinds:
        print(f"swapline: the store holds nothing of site {site!r}: nothing erased", file=sys.stderr)
        return 1
    print(f"site {site}: {kinds.total()} keys erased ({', '.join(f'{kind} {count}' for kind, count in kinds.items())})")
    return 0


def _repair(settings: Settings) -> int:
    from service.embedded import StoreError, repair

    try:
        results = repair(settings.data_dir)
    except StoreError as exc:
        print(f"swapline: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(result.stdout.strip(), result.stderr.strip(), sep="\n")
    return max((result.returncode for result in results), default=0)


def _signing_secret(settings: Settings, url: str) -> str:
    """The secret the workers sign with: SWAPLINE_SECRET, else the store's own; checked against
    the fingerprint the store keeps of the secret other processes on it sign with. A refusal
    is one line and `SystemExit`."""
    from redis.exceptions import RedisClusterException

    from service.runtime import MISMATCH
    from service.tracking.store import STORE_ERRORS, Store, connect, fingerprint, refuses_us, why

    async def ask() -> tuple[str, bool, bool]:
        """The secret, whether the store vouches for it, and whether any process vouched before."""
        store = Store(connect(url, settings.redis_cluster))
        try:
            if not settings.redis_cluster and await store.in_a_cluster():
                raise _ClusterNode
            before = await store.vouched_before()
            secret = settings.secret or (await store.secret()).decode()
            return secret, await store.vouch(fingerprint(secret.encode())), before
        finally:
            await store.close()

    try:
        secret, vouched, before = asyncio.run(ask())
    except RedisClusterException as exc:  # not a RedisError: a standalone server, most likely
        print(_not_a_cluster(exc), file=sys.stderr)
        raise SystemExit(2) from None
    except _ClusterNode:  # else every page view's keys of other nodes' slots fail with a bare MOVED
        print("swapline: the store is a node of a Redis/Valkey Cluster: set SWAPLINE_REDIS_CLUSTER=1", file=sys.stderr)
        raise SystemExit(2) from None
    except STORE_ERRORS as exc:
        if refuses_us(exc):  # no outage to wait out
            print(f"swapline: {why(exc)}: give its password as "
                  "redis://:PASSWORD@host:6379/0 (redis://USER:PASSWORD@… for an ACL user)", file=sys.stderr)
            raise SystemExit(2) from None
        if settings.secret:  # the workers compare it once the store answers
            return settings.secret
        print(f"swapline: {why(exc)}. Without SWAPLINE_SECRET the service keeps its "
              "signing secret there, and cannot start: start the store, or set SWAPLINE_SECRET to start degraded "
              "until the store answers", file=sys.stderr)
        raise SystemExit(1) from None
    if not vouched:
        print(f"swapline: {MISMATCH}", file=sys.stderr)
        raise SystemExit(2)
    if not before and settings.redis_url:  # the embedded store of a first start holds nothing, as it should
        logging.getLogger("swapline").warning(
            "the store (SWAPLINE_REDIS_URL) holds nothing of Swapline's yet: the service's first start on it, or not "
            "the store or database its other replicas use, whose visitors, numbers and reports this one will not see")
    return secret


def _not_a_cluster(exc: Exception) -> str:
    """What a command says when SWAPLINE_REDIS_CLUSTER=1 names a store that is no cluster node."""
    return (f"swapline: SWAPLINE_REDIS_CLUSTER=1, but the store is no cluster node ({exc}): unset it for a "
            "standalone server")


class _ClusterNode(Exception):
    """The store is a cluster node, and SWAPLINE_REDIS_CLUSTER is unset."""


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from service.app import STORE_SECRET
    from service.embedded import StoreError, embedded_valkey
    from service.front.protocol import Protocol
    from service.observability import log_config
    from service.supervisor import Supervisor

    config = log_config(settings.log_level, settings.log_json)
    logging.config.dictConfig(config)
    logging.getLogger("swapline").info("swapline %s", VERSION)
    for warning in warnings(settings):
        logging.getLogger("swapline").warning(warning)
    # Broken rules serve the last good ones kept from before, where there are such.
    checked = _load(settings.rules_dir, LastGood(settings.data_dir).start)
    if checked is None:
        return 1
    workers = args.workers or settings.workers
    # uvicorn re-raises SIGTERM after its graceful shutdown, which would skip stopping the
    # embedded store below: turn it into a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.ExitStack() as stack:
        url = settings.redis_url
        if not url:
            try:
                url = stack.enter_context(embedded_valkey(settings.data_dir))
            except StoreError as exc:
                print(f"swapline: {exc}", file=sys.stderr)
                return 1
            os.environ["SWAPLINE_REDIS_URL"] = url  # worker processes read their settings from env
        secret = _signing_secret(settings, url)
        if not settings.secret:
            logging.getLogger("swapline").warning(STORE_SECRET)
            # Handed to the workers: one that replaces another while the store is away starts
            # degraded, as the first ones would have, instead of failing for want of the secret.
            os.environ["SWAPLINE_SECRET"] = secret
        app: Any
        if workers > 1:  # each worker's counters in files, so any worker's /metrics adds them all up
            metrics = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="swapline-metrics-")))
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
            app, checked = "service.app:create_app", None  # each worker loads the rules: none kept here
            gc.collect()
        else:  # uvicorn runs the one worker in this process: it starts on the rules just checked
            from service.app import create_app

            app = create_app(checked=checked)
        server = uvicorn.Config(
            app,
            factory=workers > 1,
            host=args.host or settings.host,
            port=args.port or settings.port,
            workers=workers,
            loop="uvloop",
            http=Protocol,  # httptools, with deadlines and a bound on request heads
            limit_concurrency=settings.max_connections,
            log_config=config,
            access_log=False,
            # X-Forwarded-For is trusted only from SWAPLINE_TRUSTED_PROXIES (ClientIPMiddleware);
            # uvicorn's own handling would trust it from localhost whatever that says.
            proxy_headers=False,
        )
        if workers > 1:
            supervisor = Supervisor(server, sockets=[server.bind_socket()])
            supervisor.run()
            return STARTUP_FAILURE if supervisor.failed else 0
        single = uvicorn.Server(server)

        def hang_up(signum: int, frame: FrameType | None) -> None:
            # Its default would end the process on the spot (a closed SSH session sends it),
            # leaving the embedded store running. One worker cannot be replaced in place, as
            # several are: stop as on SIGTERM.
            logging.getLogger("swapline").warning("SIGHUP: stopping, as on SIGTERM (with one worker; several "
                                                  "are restarted one by one)")
            single.handle_exit(signal.SIGTERM, frame)

        signal.signal(signal.SIGHUP, hang_up)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises SIGINT after its graceful shutdown
            single.run()
        return 0 if single.started else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())

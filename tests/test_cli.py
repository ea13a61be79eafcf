"""The `swapline` command: preview without side effects, and `serve` on its embedded store."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
import redis

from service.cli import main
from service.integrations import callimport
from service.rules import rulefiles
from service.rules.lastgood import FILE
from tests.cluster import local_cluster
from tests.conftest import (
    BROWSER_HEADERS,
    CLUSTER,
    DEMO_RULES,
    POOL_SITE,
    free_port,
    output,
    proc_stat,
    start,
    stop,
    wait_for,
    wait_for_server,
)
from tests.test_outage import valkey

DEMO_SITE = rulefiles.load(DEMO_RULES).sites["demo"]


def demo_command(*args: str) -> subprocess.CompletedProcess[str]:
    """`swapline ARGS` as an operator runs it beside the demo's rules."""
    return subprocess.run(["swapline", *args], capture_output=True, text=True,
                          env={**os.environ, "SWAPLINE_RULES_DIR": str(DEMO_RULES)})


def test_a_command_whose_reader_stopped_reading_ends_without_a_traceback() -> None:
    process = subprocess.Popen(["swapline", "rules", "preview", "--site", "demo", "--url", "/", "--dir",
                                str(DEMO_RULES)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `swapline … | head` does once it has read what it wanted
    assert process.wait(timeout=60) == 1
    assert process.stderr.read() == b""


def test_preview_prints_the_decision_without_side_effects(
    capsys: pytest.CaptureFixture[str], store: redis.Redis
) -> None:
    code = main(["rules", "preview", "--site", "demo", "--url", "/?utm_term=купить+кондиционер",
                 "--ip", "95.161.0.1", "--vid", "preview-visitor-000001", "--dir", str(DEMO_RULES)])
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["geo"]["region"] == "RU-SPE"
    swaps = {swap["selector"]: swap["text"] for swap in body["swaps"]}
    assert swaps["h1.hero"] == "Купить кондиционер в Санкт-Петербурге"
    assert body["experiments"]["cta-wording"] in {"control", "install-tomorrow", "free-visit"}
    assert body["token"] is None
    assert store.dbsize() == 0


def test_preview_puts_the_visitor_in_a_city_by_name(capsys: pytest.CaptureFixture[str], store: redis.Redis) -> None:
    code = main(["rules", "preview", "--site", "demo", "--url", "/", "--city", "Москва", "--dir", str(DEMO_RULES)])
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["geo"]["region"] == "RU-MOW" and body["phone"]["kind"] == "preview"
    assert body["phone"]["number"] == "+74951200001" and store.dbsize() == 0  # the pool's first: nobody's
    assert main(["rules", "preview", "--site", "demo", "--url", "/?swapline_preview_city=Атлантида",
                 "--dir", str(DEMO_RULES)]) == 1
    assert "swapline_preview_city: no Russian city is called 'Атлантида'" in capsys.readouterr().err
    assert main(["rules", "preview", "--site", "demo", "--url", "/", "--city", "Масква", "--dir", str(DEMO_RULES)]) == 1
    assert capsys.readouterr().err == "swapline: --city: no Russian city is called 'Масква'\n"
    assert main(["rules", "preview", "--site", "demo", "--url", "/", "--city", "Питер", "--dir", str(DEMO_RULES)]) == 0
    assert json.loads(capsys.readouterr().out)["geo"]["region"] == "RU-SPE"  # not the village of that name


def test_preview_asks_as_a_browser_and_a_script_gets_what_bots_get(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/RULES.md: rules never apply to crawlers and scripts (curl, httpx), and the preview
    says so for a script's user agent."""
    for agent, bot in ((None, False), ("curl/8.5.0", True), ("python-httpx/0.28.1", True)):
        ua = ["--ua", agent] if agent else []
        assert main(["rules", "preview", "--site", "demo", "--url", "/?utm_term=купить+кондиционер",
                     "--city", "Москва", "--dir", str(DEMO_RULES), *ua]) == 0
        body = json.loads(capsys.readouterr().out)
        assert body["bot"] is bot and bool(body["swaps"]) is not bot, agent


def test_preview_reports_an_unknown_site(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "preview", "--site", "nope", "--url", "/", "--dir", str(DEMO_RULES)]) == 1
    assert "no site 'nope'" in capsys.readouterr().err


def test_preview_refuses_an_address_that_is_none(capsys: pytest.CaptureFixture[str]) -> None:
    """Else the visitor is silently from nowhere, and the preview shows what nobody sees."""
    assert main(["rules", "preview", "--site", "demo", "--url", "/", "--ip", "999.1.1.1", "--dir",
                 str(DEMO_RULES)]) == 1
    assert capsys.readouterr().err == "swapline: --ip '999.1.1.1' is no IPv4 or IPv6 address\n"
    assert main(["rules", "preview", "--site", "demo", "--url", "/", "--ip", "2a00:1370::1", "--dir",
                 str(DEMO_RULES)]) == 0


def embedded_store(data_dir: Path) -> redis.Redis:
    """A client of the embedded store: on its unix socket, the only way in."""
    return redis.Redis(unix_socket_path=str(data_dir / "valkey" / "valkey.sock"), socket_connect_timeout=5)


def store_answers(data_dir: Path) -> bool:
    try:
        return bool(embedded_store(data_dir).ping())
    except redis.ConnectionError:
        return False


def embedded_store_process(data_dir: Path, service_pid: int) -> tuple[int, str]:
    """The embedded Valkey's process id, as it says, and its start time; it is the service's child."""
    pid = int(embedded_store(data_dir).info("server")["process_id"])
    stat = proc_stat(pid)
    assert stat is not None and int(stat[1]) == service_pid
    return pid, stat[19]


def still_runs(pid: int, started: str) -> bool:
    """Whether that process runs: the port it listened on may be anyone's by now, and its id may
    be another process's (another start time); a zombie has ended."""
    stat = proc_stat(pid)
    return stat is not None and stat[19] == started and stat[0] != "Z"


def test_serve_runs_on_an_embedded_valkey_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process, base = start(tmp_path)
    try:
        body = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/"},
                         headers=BROWSER_HEADERS).json()
        assert body["experiments"]
        assert store_answers(tmp_path / "data")
        conf = (tmp_path / "data" / "valkey" / "valkey.conf").read_text()
        assert "port 0" in conf.splitlines()  # no TCP port: no other server can pose as it
        store = embedded_store_process(tmp_path / "data", process.pid)
    finally:
        stop(process)
    assert process.returncode == 0, output(process)
    assert "embedded valkey stopped" in output(process)
    assert list((tmp_path / "data" / "valkey" / "appendonlydir").glob("*.aof")), "AOF files expected"
    assert not still_runs(*store)


def test_redis_url_switches_to_an_external_store(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url)
    try:
        httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/", "vid": "external-store-000001"},
                  headers=BROWSER_HEADERS)
        assert store.hexists("sw:{demo/cta-wording}:assign", "external-store-000001")
    finally:
        stop(process)
    assert not (tmp_path / "data" / "valkey").exists()


def test_pools_command_reports_from_the_running_service(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        for n in range(4):  # four Moscow visitors
            httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/", "vid": f"pools-cli-{n:012d}"},
                      headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"})
        table = demo_command("pools", "--site", "demo", "--url", base)
        as_json = demo_command("pools", "--site", "demo", "--url", base, "--format", "json")
        elsewhere = {**os.environ, "SWAPLINE_RULES_DIR": str(tmp_path / "no-rules-here")}  # a client's laptop
        untold = subprocess.run(["swapline", "pools", "--site", "demo", "--url", base], capture_output=True,
                                text=True, env=elsewhere)
        told = subprocess.run(["swapline", "pools", "--site", "demo", "--url", base], capture_output=True, text=True,
                              env={**elsewhere, "SWAPLINE_TOKEN": "demo-report-token-change-me"})
    finally:
        stop(process)
    assert untold.returncode == 1 and "set SWAPLINE_TOKEN to its report token or a read token" in untold.stderr
    assert told.returncode == 0 and told.stdout == table.stdout, told.stderr
    assert table.returncode == 0, table.stderr
    period, header, *rows = table.stdout.splitlines()
    today = datetime.datetime.now(ZoneInfo("Europe/Moscow")).date()  # the site's days
    assert period == (f"site demo: held now; the peaks, arrivals and overflows of "
                      f"{today - datetime.timedelta(days=29)} to {today}")
    assert header.split()[:3] == ["pool", "numbers", "held"]
    assert all("  900.0 (its hold: none ended yet)  " in row for row in rows), rows  # none over, in a new store
    pools = {pool["pool"]: pool for pool in json.loads(as_json.stdout)["pools"]}
    assert set(pools) == {"moscow", "saint-petersburg"}
    assert (pools["moscow"]["numbers"], pools["moscow"]["held"], pools["saint-petersburg"]["held"]) == (5, 4, 0)
    assert [row.split()[:3] for row in rows] == [["moscow", "5", "4"], ["saint-petersburg", "3", "0"]]


def test_pools_command_without_a_site_lists_every_clients_pools_those_that_ran_short_first(
        tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """An agency's operator asks which client needs numbers, each site asked with its own token."""
    rules = tmp_path / "rules"
    shutil.copytree(DEMO_RULES, rules)
    (rules / "pooltest.yaml").write_text(POOL_SITE)
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32",
                          SWAPLINE_RULES_DIR=str(rules))
    try:
        for n in range(5):  # five networks for three numbers: two visitors get the overflow number
            httpx.get(f"{base}/v1/decide", params={"site": "pooltest", "url": "/", "vid": f"agency-pools-{n:07d}"},
                      headers={**BROWSER_HEADERS, "origin": "http://localhost:8000",
                               "x-forwarded-for": f"203.0.113.{n + 1}"})
        everyone = {**os.environ, "SWAPLINE_RULES_DIR": str(rules), "SWAPLINE_TOKEN": "one-sites-token-only"}
        table = subprocess.run(["swapline", "pools", "--url", base], capture_output=True, text=True, env=everyone)
        as_json = subprocess.run(["swapline", "pools", "--url", base, "--format", "json"], capture_output=True,
                                 text=True, env=everyone)
    finally:
        stop(process)
    assert table.returncode == 0, table.stderr
    period, header, *rows = table.stdout.splitlines()
    assert period.startswith("every site: held now;") and header.split()[:2] == ["site", "pool"]
    assert [row.split()[:2] for row in rows] == [["pooltest", "small"], ["demo", "moscow"],
                                                 ["demo", "saint-petersburg"]]
    assert [[pool["overflowed_visitors"] for pool in site["pools"]] for site in json.loads(as_json.stdout)["sites"]
            ] == [[0, 0], [2]]


def test_pools_command_without_a_site_says_when_no_site_leases_numbers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plain.yaml").write_text("site: plain\norigins: [https://plain.example]\n")
    monkeypatch.setenv("SWAPLINE_RULES_DIR", str(tmp_path))
    assert main(["pools", "--url", "http://127.0.0.1:9"]) == 0  # nothing to ask the service
    said = capsys.readouterr().out
    assert said == "no site of the rules has a pool that leases numbers (docs/RULES.md, Number pools)\n"


def test_show_and_forget_commands_show_and_erase_through_the_running_service(
        tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    vid = "forget-cli-000000001"
    try:
        shown = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/", "vid": vid},
                          headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}).json()
        raw = orjson.dumps({"call_id": "forget-cli-call", "called": shown["phone"]["number"], "caller": "89161234567",
                            "start": int(time.time()), "talk_seconds": 40})
        signature = "sha256=" + hmac.new(b"demo-calls-secret-change-me", raw, hashlib.sha256).hexdigest()
        credited = httpx.post(f"{base}/v1/calls?site=demo", content=raw, headers={"x-swapline-signature": signature})
        access = demo_command("show", "--site", "demo", "--vid", vid, "--url", base)
        caller_access = demo_command("show", "--site", "demo", "--caller", "89161234567", "--url", base)
        caller = demo_command("forget", "--site", "demo", "--caller", "+7 916 123-45-67", "--url", base)
        forgot = demo_command("forget", "--site", "demo", "--vid", vid, "--url", base)
        again = demo_command("forget", "--site", "demo", "--vid", vid, "--url", base)
        odd = demo_command("forget", "--site", "demo", "--vid", "../../x", "--url", base)
        nobody = demo_command("show", "--site", "demo", "--vid", vid, "--url", base)
    finally:
        stop(process)
    assert credited.json()["visitor"] == vid
    assert access.returncode == 0, access.stderr
    kept = json.loads(access.stdout)
    assert [visit["landing"] for visit in kept["visits"]] == ["/"] and kept["calls"][0]["call_id"] == "forget-cli-call"
    assert caller_access.returncode == 0, caller_access.stderr
    assert [call["call_id"] for call in json.loads(caller_access.stdout)["calls"]] == ["forget-cli-call"]
    assert caller.returncode == 0, caller.stderr
    assert json.loads(caller.stdout) == {"site": "demo", "erased": {"calls": 1, "calls_ending_alike": 0, "log": 1},
                                         "credited_to": [vid]}
    assert forgot.returncode == 0, forgot.stderr
    assert json.loads(forgot.stdout)["erased"]["visits"] == 1 and not forgot.stderr
    assert again.returncode == 0 and not any(json.loads(again.stdout)["erased"].values())
    nothing = "swapline: the store keeps nothing of that visitor on site 'demo'"
    assert again.stderr == nothing + ", or it was erased already\n"
    assert odd.returncode == 2 and "'../../x' is no visitor id" in odd.stderr
    assert nobody.returncode == 0 and nobody.stderr == nothing + "\n"
    untold = subprocess.run(["swapline", "forget", "--site", "demo", "--vid", vid, "--url", base], capture_output=True,
                            text=True, env={**os.environ, "SWAPLINE_RULES_DIR": str(tmp_path / "no-rules-here")})
    assert untold.returncode == 1 and "set SWAPLINE_TOKEN to its report token, or run it" in untold.stderr
    assert not [key for key in store.scan_iter("sw:*") if vid.encode() in key]
    assert not any(store.hexists(key, vid) for key in store.scan_iter("sw:*:assign"))


def test_the_number_command_shows_who_held_a_number_whom_a_call_goes_to_and_the_calls_to_it(
        tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    vid = "number-cli-00000001"
    try:
        shown = httpx.get(f"{base}/v1/decide", params={"site": "demo", "vid": vid,
                                                       "url": "/?utm_source=google&utm_campaign=brand"},
                          headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}).json()
        number, now = shown["phone"]["number"], int(time.time())
        for call_id, at, talk in (("number-cli-call", now, 40), ("number-cli-earlier", now - 3, 10)):  # heard late
            raw = orjson.dumps({"call_id": call_id, "called": number, "caller": "89161234567", "start": at,
                                "talk_seconds": talk})
            signature = "sha256=" + hmac.new(b"demo-calls-secret-change-me", raw, hashlib.sha256).hexdigest()
            httpx.post(f"{base}/v1/calls?site=demo", content=raw, headers={"x-swapline-signature": signature})
        table = demo_command("number", f"8{number[2:]}", "--site", "demo", "--url", base)
        as_json = demo_command("number", number, "--site", "demo", "--at", str(now), "--format", "json", "--url", base)
        odd = demo_command("number", "twelve", "--site", "demo", "--url", base)
    finally:
        stop(process)
    assert table.returncode == 0, table.stderr
    head, holds, calls = re.split(r"\nholds, oldest first\n|\ncalls to it from [-0-9 :]+ to [-0-9 :]+\n", table.stdout)
    assert head.startswith(f"{number} (lease, pool moscow) at ") and " Europe/Moscow\n" in head
    assert head.endswith(f"a call then, from a new caller, goes to visitor {vid}, from source google, campaign brand\n")
    assert vid in holds and "(holds)" in holds, table.stdout
    header, *rows = calls.splitlines()  # by start, the call heard of later first
    assert header.split() == ["start", "call_id", "talk_s", "status", "caller", "target", "visitor", "reason"]
    assert [row.split()[2:7] for row in rows] == [["number-cli-earlier", "10", "completed", "…4567", "no"],
                                                 ["number-cli-call", "40", "completed", "…4567", "yes"]]
    assert "no (short)" in rows[0]
    body = json.loads(as_json.stdout)
    assert [hold["visitor"] for hold in body["holds"]] == [vid] and body["a_call_then"]["visitor"] == vid
    assert [call["call_id"] for call in body["calls"]] == ["number-cli-earlier", "number-cli-call"]
    assert odd.returncode == 1 and "answered 400" in odd.stderr and "not a phone number: 'twelve'" in odd.stderr


def test_calls_import_credits_a_pbx_file_once_and_names_the_rows_it_could_not(tmp_path: Path, valkey_url: str,
                                                                               store: redis.Redis) -> None:
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        shown = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/", "vid": "import-cli-00000001"},
                          headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}).json()
        now = int(time.time()) + 5  # the visitor dials after the page view
        held = shown["phone"]["number"][1:]  # as PBXs write it, without the +
        calls = tmp_path / "calls.csv"
        calls.write_text("\ufeffcall_id,called,caller,start,talk_seconds,status,line\n"  # a spreadsheet's BOM
                         f"pbx-1,{held},89161234567,{now},45,completed,sales\n"
                         f"pbx-2,84951200005,89161234568,{now},0,busy,sales\n"
                         f"pbx-3,74951200003,,{now * 1000},30,completed,sales\n"  # milliseconds
                         f"pbx-4,not a number,,{now},30,completed,sales\n", encoding="utf-8")
        first = demo_command("calls", "import", str(calls), "--site", "demo", "--url", base)
        again = demo_command("calls", "import", str(calls), "--site", "demo", "--url", base)
    finally:
        stop(process)
    assert first.returncode == 1 and first.stdout == "1 credited, 1 not credited (no_holder); 2 refused\n", first
    assert first.stderr.splitlines() == [
        f"{calls}:4: start must be a moment from 2000 to 2099 in unix seconds (this looks like milliseconds)",
        f"{calls}:5: called is not a valid phone number: 'not a number'",
    ]
    assert again.stdout == "2 already known; 2 refused\n"  # each call counts once
    record = orjson.loads(store.hget("sw:{demo:calls}:calls", "pbx-1"))
    assert record["visitor"] == "import-cli-00000001" and record["qualified"] is True


def test_calls_import_reads_an_asterisk_cdr_and_sends_only_calls_to_the_sites_numbers(
        tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """Master.csv as Asterisk's cdr_csv.c writes it with loguniqueid (17 columns, no header,
    local times): the incoming call is credited, internal and outgoing calls are not sent."""
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        shown = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/", "vid": "import-cdr-00000001"},
                          headers={**BROWSER_HEADERS, "x-forwarded-for": "46.242.0.1"}).json()
        local = datetime.datetime.now(ZoneInfo("Europe/Moscow")) + datetime.timedelta(seconds=5)  # demo's time_zone
        at = local.strftime("%Y-%m-%d %H:%M:%S")
        held = "8" + shown["phone"]["number"][2:]  # as the trunk delivers it: 8 495 …
        cdr = tmp_path / "Master.csv"
        cdr.write_text(
            f'"","89161234567","{held}","from-trunk","""Ivan"" <89161234567>","SIP/trunk-0001","SIP/101-0002",'
            f'"Dial","SIP/101,30","{at}","{at}","{at}",50,45,"ANSWERED","DOCUMENTATION","1795000000.1"\n'
            f'"","101","102","from-internal","""Desk"" <101>","SIP/101-0003","SIP/102-0004","Dial","SIP/102",'
            f'"{at}","{at}","{at}",12,10,"ANSWERED","DOCUMENTATION","1795000000.2"\n'
            f'"","101","89161234567","from-internal","""Desk"" <101>","SIP/101-0005","SIP/trunk-0006","Dial",'
            f'"SIP/trunk/89161234567","{at}","{at}","{at}",40,35,"ANSWERED","DOCUMENTATION","1795000000.3"\n'
            f'"","89161234568","84951200005","from-trunk","","SIP/trunk-0007","","Dial","SIP/101,30","{at}",,'
            f'"{at}",20,0,"NO ANSWER","DOCUMENTATION","1795000000.4"\n', encoding="utf-8")
        first = demo_command("calls", "import", str(cdr), "--site", "demo", "--url", base)
        again = demo_command("calls", "import", str(cdr), "--site", "demo", "--url", base)
        # A PBX whose clock is UTC, its file read as Moscow's: three hours early, nobody's calls.
        # Its trunk writes the number dialled after its own prefix (9 8 495 …): the site's all the same.
        early = (local - datetime.timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")
        utc = tmp_path / "utc.csv"
        utc.write_text("".join(f'"","8916123457{n}","9{held}","from-trunk","","SIP/trunk-00{n}","SIP/101-00{n}",'
                               f'"Dial","SIP/101,30","{early}","{early}","{early}",50,45,"ANSWERED","DOCUMENTATION",'
                               f'"1795000100.{n}"\n' for n in range(2)))
        zoned = demo_command("calls", "import", str(utc), "--site", "demo", "--url", base)
        mended = demo_command("calls", "import", str(utc), "--site", "demo", "--url", base, "--utc",
                              "--id-prefix", "utc-")  # sent again as what they were, under new ids
    finally:
        stop(process)
    assert first.returncode == 0, first
    assert first.stdout == "1 credited, 1 not credited (no_holder), 2 not to the site's numbers\n"
    assert again.stdout == "2 already known, 2 not to the site's numbers\n"
    record = orjson.loads(store.hget("sw:{demo:calls}:calls", "1795000000.1"))
    assert record["visitor"] == "import-cdr-00000001" and record["talk_seconds"] == 45 and record["qualified"] is True
    assert record["start"] == int(local.replace(microsecond=0).timestamp()) * 1000  # read in Moscow time
    assert zoned.stdout == "2 not credited (no_holder)\n"
    assert zoned.stderr == ("swapline: 2 of these calls started hours from any hold of their number: are the file's "
                            "times in Europe/Moscow, as read? If not, send the file again with --utc if they are UTC "
                            "(else set the site's calls.time_zone), and with --id-prefix: the calls sent keep their "
                            "times, and go again only under new ids; they stay their callers' first and target calls, "
                            "so the new ones count as repeats (docs/CALLS.md)\n")
    assert "sent before, and keeps what it was sent with: to send them again read otherwise (--utc), add --id-prefix" \
        in again.stderr and not mended.stderr
    assert mended.stdout == "2 credited\n" and store.hexists("sw:{demo:calls}:calls", "utc-1795000100.0")
    missed = orjson.loads(store.hget("sw:{demo:calls}:calls", "1795000000.4"))
    assert missed["status"] == "no-answer" and missed["credited"] is False


def test_calls_import_away_from_the_rules_says_where_the_secret_comes_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls.csv"
    calls.write_text("call_id,called,start\npbx-1,84951200001,1795000000\n")
    monkeypatch.setenv("SWAPLINE_RULES_DIR", str(tmp_path / "rules"))
    assert main(["calls", "import", str(calls), "--site", "demo"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'rules'}:1: no such rules directory",
        "swapline: the calls are signed with the site's calls.secret from the rules: run this where "
        "`swapline serve` runs, or set SWAPLINE_RULES_DIR"]
    monkeypatch.setenv("SWAPLINE_RULES_DIR", str(DEMO_RULES))
    assert main(["calls", "import", str(calls), "--site", "shop"]) == 1
    assert capsys.readouterr().err == f"swapline: site 'shop': no such site in {DEMO_RULES}\n"


def test_calls_import_reads_a_csv_as_excel_in_russian_saves_it(tmp_path: Path) -> None:
    """«;» between the columns, a byte order mark, the names in quotes."""
    calls = tmp_path / "calls.csv"
    calls.write_text('\ufeff"call_id";"called";"caller";"start";"talk_seconds";"status"\n'
                     '"pbx-1";"8 (495) 120-00-01";"89161234567";"1795000000";"45";"completed"\n', encoding="utf-8")
    (line, call), = callimport.rows(calls, DEMO_SITE)
    assert line == 2 and call == {"call_id": "pbx-1", "called": "8 (495) 120-00-01", "caller": "89161234567",
                                  "start": 1795000000, "talk_seconds": 45, "status": "completed"}


def test_calls_import_reads_a_files_times_without_a_zone_as_utc_when_told(tmp_path: Path) -> None:
    """`--utc` was read for Asterisk's CDR only: a file of Swapline's columns with UTC times was
    read in the site's zone, three hours early for Moscow, while the warning asked whether its
    times were UTC "as read"."""
    calls = tmp_path / "calls.csv"
    calls.write_text("call_id,called,start\n"
                     "a,84951200001,2026-12-04 09:05:53\n"  # as a spreadsheet writes a moment
                     "b,84951200001,2026-12-04T09:05:53\n"
                     "c,84951200001,2026-12-04T12:05:53+03:00\n"  # a zone of its own stays
                     "d,84951200001,1796288753\n"  # unix seconds are UTC anyway
                     "e,84951200001,yesterday\n", encoding="utf-8")  # the service's to refuse
    starts = [call["start"] for _, call in callimport.rows(calls, DEMO_SITE, utc=True)]  # type: ignore[index]
    assert starts == ["2026-12-04 09:05:53+00:00", "2026-12-04T09:05:53+00:00", "2026-12-04T12:05:53+03:00",
                      1796288753, "yesterday"]
    assert [call["start"] for _, call in callimport.rows(calls, DEMO_SITE)][:2] == [  # type: ignore[index]
        "2026-12-04 09:05:53", "2026-12-04T09:05:53"]  # the site's zone, as the webhook reads them


def cdr_row(src: str, dst: str, disposition: str, billsec: int, *added: str, channel: str = "SIP/trunk-1",
            dstchannel: str = "SIP/101-2", lastapp: str = "Dial", end: str = "2026-11-18 10:01:00") -> str:
    """A Master.csv row as cdr_csv.c writes it, with what cdr.conf adds after its 16 columns."""
    start = "2026-11-18 10:00:00"
    row = ["", src, dst, "from-trunk", f'"{src}" <{src}>', channel, dstchannel, lastapp, "SIP/101,30",
           start, start if billsec else "", end, "60", str(billsec), disposition,
           "DOCUMENTATION", *added]
    return ",".join(f'"{value}"' if value else "" for value in row) + "\n"


@pytest.mark.parametrize(("added", "ids"), [
    ((), None),                                                                    # 16 columns
    (("inbound",), None),                                                          # loguserfield: no uniqueid
    (("1796235790.{n}",), "1796235790.{n}"),                                       # loguniqueid
    (("pbx-1-1796235790.{n}", "inbound"), "pbx-1-1796235790.{n}"),                # both; a systemname first
    (("", "1796235790.{n}", "7"), None),                                           # newcdrcolumns: 19
    (("inbound", "", "1796235790.{n}", "7"), None),                                # loguserfield too: 20
    (("1796235790.{n}", "", "", "1796235790.{n}", "7"), "1796235790.{n}"),         # loguniqueid instead: 20
    (("1796235790.{n}", "inbound", "", "1796235790.{n}", "7"), "1796235790.{n}"),  # all of them: 21
])
def test_calls_import_reads_every_width_cdr_conf_writes(tmp_path: Path, added: tuple[str, ...],
                                                        ids: str | None) -> None:
    """Three calls from three callers: as many calls, whatever cdr.conf adds to each row, each
    by its uniqueid when the row has one."""
    cdr = tmp_path / "Master.csv"
    cdr.write_text("".join(cdr_row(f"8916123456{n}", "84951200001", "ANSWERED", 40, *(a.format(n=n) for a in added))
                           for n in range(3)))
    sent = [call for _, call in callimport.rows(cdr, DEMO_SITE) if call]
    assert [call["caller"] for call in sent] == [f"8916123456{n}" for n in range(3)]
    assert len({call["call_id"] for call in sent}) == 3
    if ids:
        assert [call["call_id"] for call in sent] == [ids.format(n=n) for n in range(3)]
    assert all(call["talk_seconds"] == 40 and call["status"] == "completed" for call in sent)


@pytest.mark.parametrize("uniqueid", [("1796235790.50",), ()])
def test_a_ring_groups_rows_are_one_call_answered_by_the_phone_that_answered(tmp_path: Path,
                                                                            uniqueid: tuple[str, ...]) -> None:
    cdr = tmp_path / "Master.csv"
    cdr.write_text(cdr_row("89161234567", "84951200001", "NO ANSWER", 0, *uniqueid)
                   + cdr_row("89161234567", "84951200001", "ANSWERED", 120, *uniqueid)
                   + cdr_row("89161234567", "84951200001", "NO ANSWER", 0, *uniqueid))
    (line, call), = callimport.rows(cdr, DEMO_SITE)
    first_alone = tmp_path / "first.csv"
    first_alone.write_text(cdr.read_text().splitlines(keepends=True)[0])
    (_, as_sent_before), = callimport.rows(first_alone, DEMO_SITE)
    assert line == 1 and (call["status"], call["talk_seconds"]) == ("completed", 120)
    assert call["call_id"] == as_sent_before["call_id"]  # an earlier import of the file sent the first row's


def imported(tmp_path: Path, *rows: str) -> list[dict[str, Any]]:
    cdr = tmp_path / "Master.csv"
    cdr.write_text("".join(rows))
    return [call for _, call in callimport.rows(cdr, DEMO_SITE) if isinstance(call, dict)]


def test_a_call_the_pbx_itself_picked_up_and_no_phone_answered_is_a_missed_call(tmp_path: Path) -> None:
    """Asterisk writes ANSWERED when a voice menu or a queue's music picks up the line: with no
    channel it was bridged to, nobody talked, however long the caller listened."""
    (queue,) = imported(tmp_path, cdr_row("89161234567", "84951200001", "ANSWERED", 150, "1796235790.1",
                                          dstchannel="", lastapp="Queue"))
    (menu,) = imported(tmp_path, cdr_row("89161234567", "84951200001", "ANSWERED", 12, "1796235790.4",
                                         dstchannel="", lastapp="Playback"),
                       cdr_row("89161234567", "84951200001", "NO ANSWER", 0, "1796235790.4"))
    assert (queue["status"], queue["talk_seconds"]) == (menu["status"], menu["talk_seconds"]) == ("no-answer", 0)


def test_one_calls_answered_rows_add_up_to_how_long_it_was_talked_on(tmp_path: Path) -> None:
    """A queue's two agents one after another (20 s, then 25 s) talked 45 s, a target call; a
    Local channel's two legs of one talk (same linkedid, uniqueids of their own) are one call of
    its 40 s."""
    (queue,) = imported(tmp_path, cdr_row("89161234567", "84951200001", "ANSWERED", 20, "1796235790.3",
                                          end="2026-11-18 10:00:30"),
                        cdr_row("89161234567", "84951200001", "ANSWERED", 25, "1796235790.3",
                                end="2026-11-18 10:00:56"))
    assert (queue["call_id"], queue["status"], queue["talk_seconds"]) == ("1796235790.3", "completed", 45)
    (legs,) = imported(tmp_path, *(cdr_row("89161234567", "84951200001", "ANSWERED", 40, f"1796235790.30{n}", "",
                                           "", "1796235790.300", str(n)) for n in range(2)))
    assert (legs["call_id"], legs["talk_seconds"]) == ("1796235790.300", 40)


def test_two_callers_in_one_second_without_uniqueids_are_two_calls(tmp_path: Path) -> None:
    """Master.csv's default 16 columns log no uniqueid: two withheld callers who reached the
    number in the same second came on channels of their own."""
    calls = imported(tmp_path, *(cdr_row("", "84951200001", "ANSWERED", 40 + n, channel=f"SIP/trunk-000000a{n}")
                                 for n in range(2)))
    assert sorted(call["talk_seconds"] for call in calls) == [40, 41]


FREEPBX = ("calldate,clid,src,dst,dcontext,channel,dstchannel,lastapp,lastdata,duration,billsec,disposition,"
           "amaflags,accountcode,uniqueid,userfield,did,recordingfile,cnum,cnam,outbound_cnum,outbound_cnam,"
           "dst_cnam,linkedid,peeraccount,sequence\n")


def test_freepbxs_cdr_report_is_read_by_its_header_and_its_did_is_the_number_dialled(tmp_path: Path) -> None:
    """FreePBX's CDR report names its columns; an incoming call's `dst` is the extension or ring
    group that rang, and the number the caller dialled is its `did`."""
    cdr = tmp_path / "cdr.csv"
    cdr.write_text(FREEPBX + '"2026-11-18 10:00:00","""Ivan"" <89161234567>",89161234567,101,ext-local,'
                   'PJSIP/trunk-00000001,PJSIP/101-00000002,Dial,"PJSIP/101,30",60,45,ANSWERED,3,,1796235790.7,,'
                   '84951200001,,89161234567,Ivan,,,,1796235790.7,,12\n'
                   '"2026-11-18 10:05:00",,101,102,from-internal,PJSIP/101-3,PJSIP/102-4,Dial,PJSIP/102,20,15,'
                   'ANSWERED,3,,1796235790.8,,,,101,,,,,1796235790.8,,13\n')
    (line, call), (_, internal) = sorted(callimport.rows(cdr, DEMO_SITE, id_prefix="freepbx-"), key=lambda r: r[0])
    assert line == 2 and internal is None
    assert call == {"call_id": "freepbx-1796235790.7", "called": "84951200001", "caller": "89161234567",
                    "start": "2026-11-18 10:00:00", "talk_seconds": 45, "status": "completed"}


def test_a_cdr_in_cp1251_and_a_line_too_long_to_read_spoil_no_other_row(tmp_path: Path) -> None:
    """Asterisk writes a caller's name in the bytes it was given: a line in cp1251 is read as
    such; a line the csv module cannot read (a field over 128 KB) is named with its line, and
    the rows after it are sent all the same."""
    cdr = tmp_path / "Master.csv"
    cdr.write_bytes(cdr_row("89161234560", "84951200001", "ANSWERED", 40, "1796235790.1").encode()
                    + cdr_row("89161234561", "84951200001", "ANSWERED", 40, "1796235790.2").replace(
                        '"89161234561" <', '"Иван Петров" <').encode("cp1251")
                    + b'"","' + b"9" * 200_000 + b'"\n'
                    + cdr_row("89161234562", "84951200001", "NO ANSWER", 0, "1796235790.3").encode())
    read = sorted(callimport.rows(cdr, DEMO_SITE), key=lambda item: item[0])
    assert [(line, call["call_id"] if isinstance(call, dict) else call) for line, call in read] == [
        (1, "1796235790.1"), (2, "1796235790.2"),
        (3, "not read as CSV: field larger than field limit (131072)"), (4, "1796235790.3")]
    taken, refused = callimport.send("http://127.0.0.1:9", "demo", b"unused", iter(read[2:3]))
    assert (taken, refused) == (Counter(), [callimport.Refused(3, read[2][1])])


def test_pools_command_explains_an_unreachable_service() -> None:
    result = demo_command("pools", "--site", "demo", "--url", "http://127.0.0.1:9")
    assert result.returncode != 0 and "cannot reach the service" in result.stderr


def test_a_report_for_a_site_other_rules_hold_says_where_the_token_is_read() -> None:
    """The command takes the token from the rules it is given, not from the service: a load
    tester in another directory got a message that did not say so."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")},
           "SWAPLINE_RULES_DIR": str(DEMO_RULES)}
    refused = subprocess.run(["swapline", "report", "--site", "load"], capture_output=True, text=True, timeout=60,
                             env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "swapline: no token for site 'load': set SWAPLINE_TOKEN to its report token or a read token, or run it where "
        f"SWAPLINE_RULES_DIR names the service's rules, which give the report token ({DEMO_RULES} do not: they have "
        "demo)")


def test_report_command_prints_table_csv_and_json(tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    import orjson

    rules = tmp_path / "rules"
    rules.mkdir()
    from tests.test_reports import SHOP

    (rules / "shop.yaml").write_text(SHOP)
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(rules))
    env = {**os.environ, "SWAPLINE_RULES_DIR": str(rules)}
    try:
        for n in range(10):
            body = httpx.get(f"{base}/v1/decide", params={"site": "shop", "url": "/", "vid": f"report-cli-{n:08d}"},
                             headers=BROWSER_HEADERS).json()
            if n % 2:
                httpx.post(f"{base}/v1/events", content=orjson.dumps({"type": "form", "id": f"f{n}",
                                                                       "token": body["token"]}),
                           headers=BROWSER_HEADERS)
        outputs = {fmt: subprocess.run(["swapline", "report", "--site", "shop", "--url", base, "--format", fmt],
                                       capture_output=True, text=True, env=env) for fmt in ("table", "csv", "json")}
        by_source = subprocess.run(["swapline", "report", "--site", "shop", "--url", base, "--by", "source,device"],
                                   capture_output=True, text=True, env=env)
        long_path = "/catalog/" + "x" * 3000  # a landing page of thousands of characters pads no row
        httpx.get(f"{base}/v1/decide", params={"site": "shop", "url": long_path, "vid": "report-cli-long-path"},
                  headers=BROWSER_HEADERS)
        by_landing = subprocess.run(["swapline", "report", "--site", "shop", "--url", base, "--by", "landing"],
                                    capture_output=True, text=True, env=env)
    finally:
        stop(process)
    assert all(result.returncode == 0 for result in outputs.values()), outputs
    report = json.loads(outputs["json"].stdout)
    assert sum(row["visitors"] for t in report["experiments"] for row in t["variants"]) == 10
    assert sum(row["converted"]["form"] for t in report["experiments"] for row in t["variants"]) == 5
    assert outputs["csv"].stdout.startswith("section,experiment,page,variant")
    table = outputs["table"].stdout
    assert "experiment hero on /" in table and "control" in table and "beats control" in table
    assert by_source.returncode == 0, by_source.stderr
    header, row = by_source.stdout.splitlines()[1:3]  # the direct visits of a desktop browser
    assert header.split()[:4] == ["source", "device", "visits", "visitors"]
    assert "tel taps" in header and "goals" in header  # what the JSON and the dashboard count too
    assert row.split()[:3] == ["(none)", "desktop", "10"] and "50.0%" in row
    assert by_landing.returncode == 0 and "/catalog/xxx" in by_landing.stdout, by_landing.stderr
    assert max(map(len, by_landing.stdout.splitlines())) < 200 and "…" in by_landing.stdout


def test_a_chance_to_beat_control_is_never_printed_as_a_certainty() -> None:
    """0.99999999 printed as 100.0% told an analyst the variant could not lose."""
    from service.cli import _chance

    assert [_chance(value) for value in (0.99999999, 0.9989, 0.5, 0.0004, None)] == [
        ">99.9%", "99.9%", "50.0%", "<0.1%", ""]


# SIGTERM: what container runtimes and systemd send; SIGHUP: a closed SSH session's.
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGHUP])
def test_serve_stops_its_store_on_sigterm_and_sighup_too(tmp_path: Path, how: signal.Signals) -> None:
    process, _ = start(tmp_path)
    store = embedded_store_process(tmp_path / "data", process.pid)
    assert stop(process, how) == 0, output(process)
    assert not still_runs(*store)
    assert "embedded valkey stopped" in output(process)


@pytest.mark.parametrize(("argv", "env", "named"), [
    (["serve", "--workers", "0"], {}, "--workers"),
    (["serve", "--port", "99999"], {}, "--port"),
    (["serve"], {"SWAPLINE_WORKERS": "0"}, "SWAPLINE_WORKERS"),
    (["serve"], {"SWAPLINE_PORT": "70000"}, "SWAPLINE_PORT"),
    (["serve"], {"SWAPLINE_VISIT_DAYS": "-1"}, "SWAPLINE_VISIT_DAYS"),
    (["serve"], {"SWAPLINE_TRUSTED_PROXIES": "10.0.0.0/33"}, "SWAPLINE_TRUSTED_PROXIES"),
    (["serve"], {"SWAPLINE_LOG_LEVEL": "loud"}, "SWAPLINE_LOG_LEVEL"),
    (["serve"], {"SWAPLINE_REDIS_URL": "localhost:6379"}, "SWAPLINE_REDIS_URL"),
    (["serve"], {"SWAPLINE_GEOIP_DB": "/no/such/City.mmdb"}, "SWAPLINE_GEOIP_DB"),
    (["serve"], {"SWAPLINE_NETWORK_SHARE": "150"}, "SWAPLINE_NETWORK_SHARE"),
    (["serve"], {"SWAPLINE_SECRET": "x"}, "SWAPLINE_SECRET"),
    (["serve"], {"SWAPLINE_REDIS_URL": "redis://127.0.0.1:abc/0"}, "SWAPLINE_REDIS_URL"),
    (["serve"], {"SWAPLINE_GEOIP_DB": "/etc/passwd"}, "SWAPLINE_GEOIP_DB"),
])
def test_serve_refuses_nonsense_settings_in_one_line_naming_them(argv: list[str], env: dict[str, str],
                                                                 named: str) -> None:
    refused = subprocess.run(["swapline", *argv], capture_output=True, text=True, timeout=60,
                             env={**{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")}, **env})
    assert refused.returncode == 2 and refused.stdout == ""
    complaint = [line for line in refused.stderr.splitlines() if not line.startswith("usage:")]
    assert len(complaint) == 1 and named in complaint[0], refused.stderr


def test_serve_without_a_secret_or_a_store_says_so_in_one_line(tmp_path: Path) -> None:
    """The signing secret lives in the store unless SWAPLINE_SECRET is set: a store that does
    not answer then stops the start, with a sentence rather than a traceback."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")},
           "SWAPLINE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "SWAPLINE_DATA_DIR": str(tmp_path)}
    refused = subprocess.run(["swapline", "serve"], capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    (complaint,) = [line for line in refused.stderr.splitlines() if line.startswith("swapline:")]
    assert "the store does not answer: Error 111 connecting to 127.0.0.1" in complaint
    assert "set SWAPLINE_SECRET to start degraded" in complaint


def workers_of(pid: int) -> list[int]:
    """The live worker processes of the `swapline serve` whose id is `pid` (its children that
    multiprocessing spawned, not its resource tracker)."""
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        stat = proc_stat(int(stat_file.parent.name))
        with contextlib.suppress(FileNotFoundError):
            if stat and int(stat[1]) == pid and stat[0] != "Z" and \
                    b"spawn_main" in (stat_file.parent / "cmdline").read_bytes():
                children.append(int(stat_file.parent.name))
    return children


def started_workers(process: subprocess.Popen[bytes]) -> int:
    return output(process).count("Application startup complete")


def test_a_worker_that_fails_to_start_fails_serve_with_several_workers(tmp_path: Path, valkey_url: str,
                                                                       store: redis.Redis) -> None:
    """uvicorn stops every worker when one fails to start (here a replacement, on rules broken
    since, with no good rules kept): the exit code says so, as it does with one worker, for
    systemd or Docker to see."""
    rules = tmp_path / "rules"
    shutil.copytree(DEMO_RULES, rules)
    process, _ = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_WORKERS="2", SWAPLINE_RULES_DIR=str(rules),
                       SWAPLINE_RELOAD_RULES="0", SWAPLINE_SECRET="workers-test-secret")
    try:
        wait_for("both workers", lambda: started_workers(process) == 2)
        (rules / "demo.yaml").write_text("site: [")
        (tmp_path / "data" / FILE).unlink()
        os.kill(workers_of(process.pid)[0], signal.SIGKILL)
        assert process.wait(timeout=60) == 3, output(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "failed to start" in output(process)


def test_serve_with_a_broken_rules_file_starts_on_the_last_good_rules(tmp_path: Path, valkey_url: str,
                                                                     store: redis.Redis) -> None:
    """A reboot while one client's file waits to be fixed: `swapline serve` starts on the rules
    it last loaded from that directory, says why in its log, and refuses only with none kept."""
    rules = tmp_path / "rules"
    shutil.copytree(DEMO_RULES, rules)
    settings = {"SWAPLINE_REDIS_URL": valkey_url, "SWAPLINE_RULES_DIR": str(rules)}
    process, base = start(tmp_path, **settings)
    good = httpx.get(f"{base}/readyz").json()["rules_version"]
    assert stop(process) == 0
    (rules / "demo.yaml").write_text((rules / "demo.yaml").read_text().replace("origins:", "origin:", 1))
    process, base = start(tmp_path, **settings)
    try:
        ready = httpx.get(f"{base}/readyz").json()
        answer = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/"}, headers=BROWSER_HEADERS)
    finally:
        stop(process)
    assert ready["rules_version"] == good and ready["rules_change_refused"] is True, ready
    assert answer.status_code == 200 and answer.json()["rules_version"] == good
    (said,) = [json.loads(line) for line in output(process).splitlines() if "refused at start" in line]
    assert said["level"] == "error" and "the last good rules, kept from it at" in said["message"]
    assert f"{rules / 'demo.yaml'}:10: unknown key 'origin'" in said["message"]

    (tmp_path / "data" / FILE).unlink()  # a new machine: nothing kept
    refused = subprocess.run(["swapline", "serve"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "SWAPLINE_DATA_DIR": str(tmp_path / "data"), **settings})
    assert refused.returncode == 1 and "unknown key 'origin'" in refused.stderr, refused.stderr
    assert refused.stderr.splitlines()[-1] == f"{tmp_path / 'data' / FILE}:1: no last good rules are kept here to " \
                                              "serve instead (a new data directory)"  # why it does not start


def test_a_worker_replaced_while_the_store_is_away_starts_degraded(tmp_path: Path) -> None:
    """Without SWAPLINE_SECRET the signing secret is the store's: `serve` hands it to its workers,
    so one that replaces another during an outage starts as the first ones did, degraded."""
    port = free_port()
    server = valkey(port, tmp_path / "valkey")
    process, base = start(tmp_path, SWAPLINE_REDIS_URL=f"redis://127.0.0.1:{port}", SWAPLINE_WORKERS="2",
                          SWAPLINE_SECRET="")
    try:
        wait_for("both workers", lambda: started_workers(process) == 2)
        server.stop()
        os.kill(workers_of(process.pid)[0], signal.SIGKILL)
        wait_for("the replacement", lambda: started_workers(process) == 3 or process.poll() is not None)
        assert process.poll() is None, output(process)
        answer = httpx.get(f"{base}/v1/decide", params={"site": "demo", "url": "/"}, headers=BROWSER_HEADERS)
        assert answer.status_code == 200 and answer.json()["degraded"] is True
        server = valkey(port, tmp_path / "valkey")
        wait_for("ready again", lambda: all(httpx.get(f"{base}/readyz").status_code == 200 for _ in range(4)))
    finally:
        stop(process)
        server.stop()
    assert process.returncode == 0, output(process)


@pytest.mark.parametrize("second", ["another-replicas-secret", ""])
def test_a_replica_with_another_secret_on_the_same_store_is_refused_in_one_line(
        tmp_path: Path, valkey_url: str, store: redis.Redis, second: str) -> None:
    """Replicas that sign with different secrets refuse each other's tokens (beacons 401): the
    store keeps a fingerprint of the first one's, never the secret itself, and another secret
    is refused at start, the store's own too (SWAPLINE_SECRET unset)."""
    first = "the-first-replicas-secret"
    process, _ = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_SECRET=first)
    try:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")},
               "SWAPLINE_REDIS_URL": valkey_url, "SWAPLINE_SECRET": second, "SWAPLINE_PORT": str(free_port()),
               "SWAPLINE_RULES_DIR": str(DEMO_RULES), "SWAPLINE_DATA_DIR": str(tmp_path / "second"),
               **({"SWAPLINE_REDIS_CLUSTER": "1"} if CLUSTER else {})}
        refused = subprocess.run(["swapline", "serve"], capture_output=True, text=True, timeout=60, env=env)
    finally:
        stop(process)
    assert refused.returncode == 2, refused.stderr
    (complaint,) = [line for line in refused.stderr.splitlines() if line.startswith("swapline:")]
    assert "not the one other processes on this store sign with" in complaint
    mark = store.get("sw:secret:fingerprint")
    assert mark and first.encode() not in mark


@pytest.mark.skipif(CLUSTER, reason="the store of the run is a cluster")
def test_serve_told_of_a_cluster_that_is_a_standalone_server_says_so_in_one_line(valkey_url: str) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")},
           "SWAPLINE_REDIS_URL": valkey_url, "SWAPLINE_REDIS_CLUSTER": "1", "SWAPLINE_RULES_DIR": str(DEMO_RULES)}
    refused = subprocess.run(["swapline", "serve"], capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    (complaint,) = [line for line in refused.stderr.splitlines() if line.startswith("swapline:")]
    assert "SWAPLINE_REDIS_CLUSTER=1, but the store is no cluster node" in complaint


def test_serve_on_a_cluster_node_without_the_cluster_setting_says_so_in_one_line(tmp_path: Path) -> None:
    """A plain client reaches only the node's own slots: every other key failed with a bare
    MOVED, and the service ran degraded without saying why."""
    with local_cluster(tmp_path / "cluster", masters=1) as seed:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")},
               "SWAPLINE_REDIS_URL": seed, "SWAPLINE_RULES_DIR": str(DEMO_RULES), "SWAPLINE_PORT": str(free_port()),
               "SWAPLINE_DATA_DIR": str(tmp_path / "data")}
        refused = subprocess.run(["swapline", "serve"], capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    (complaint,) = [line for line in refused.stderr.splitlines() if line.startswith("swapline:")]
    assert complaint == "swapline: the store is a node of a Redis/Valkey Cluster: set SWAPLINE_REDIS_CLUSTER=1"


def test_a_replica_on_a_store_no_service_has_used_says_it_may_be_the_wrong_one(
        tmp_path: Path, valkey_url: str, store: redis.Redis) -> None:
    """A replica given another database of a live store (`/1` for `/0`) split the visitors and
    the numbers between two stores without a word: the first start on a store now says what
    that start may mean; the next replica on it says nothing."""
    warned = []
    for replica in ("first", "second"):
        (tmp_path / replica).mkdir()
        process, _ = start(tmp_path / replica, SWAPLINE_REDIS_URL=valkey_url)
        stop(process)
        log = Path(process.log.name).read_text()  # type: ignore[attr-defined]
        warned.append("holds nothing of Swapline's yet" in log)
    assert warned == [True, False]


@pytest.fixture
def guarded_store(tmp_path: Path) -> Iterator[str]:
    """A redis-server that asks for a password; the host and port of its URL."""
    port = free_port()
    with open(tmp_path / "redis.log", "wb") as log:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--requirepass", "the-right-password", "--dir", str(tmp_path)],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_server("redis-server", redis.Redis(port=port, password="the-right-password"), server,
                        tmp_path / "redis.log")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.parametrize("credentials", [":a-wrong-password@", "", "someone:a-wrong-password@"])
def test_serve_on_a_store_that_refuses_its_password_says_so_in_one_line(guarded_store: str,
                                                                        credentials: str) -> None:
    """Not "the store does not answer… start the store": it answers, and nothing will change
    until the URL does."""
    for secret in ("", "a-secret-of-the-operators"):  # with its own secret too: no degraded start to wait in
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SWAPLINE_")},
               "SWAPLINE_REDIS_URL": f"redis://{credentials}{guarded_store}/0", "SWAPLINE_SECRET": secret,
               "SWAPLINE_RULES_DIR": str(DEMO_RULES)}
        refused = subprocess.run(["swapline", "serve"], capture_output=True, text=True, timeout=60, env=env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        (complaint,) = [line for line in refused.stderr.splitlines() if line.startswith("swapline:")]
        assert "the store refuses the password of SWAPLINE_REDIS_URL" in complaint
        assert "start the store" not in complaint


def test_help_names_every_command_and_version_says_which() -> None:
    helped = demo_command("--help").stdout
    for command in ("serve", "rules", "pools", "report", "show", "forget", "sites", "store", "calls"):
        assert command in helped.split("positional arguments")[0] and f"    {command} " in helped
    assert demo_command("--version").stdout == f"swapline {importlib.metadata.version('swapline')}\n"

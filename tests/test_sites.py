"""A site's data as a whole: `swapline sites erase` for a client who left, and the warning when a
site id the store holds data of comes back to the rules (service.tracking.sites)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from service.app import create_app
from service.tracking import sites
from service.tracking.store import Store, connect
from tests.conftest import (
    BROWSER_HEADERS,
    CLUSTER,
    DEMO_RULES,
    POOL_SITE,
    Clock,
    make_settings,
    site_client,
    start,
    stop,
    until_the_watcher_sees,
    wait_for,
)
from tests.sentinel import local_sentinel
from tests.test_calls import call, post_call
from tests.test_reports import beacon

REPORT = {"authorization": "Bearer test-report-token-0001"}
# A neighbour whose id extends the erased one's, with a pool, an experiment and calls of its own.
NEIGHBOUR = (POOL_SITE.replace("site: pooltest", "site: pooltest-2").replace("190-00-0", "191-00-0")
             .replace("555-35-36", "555-35-37").replace("-0001", "-0002"))
NEIGHBOUR_REPORT = {"authorization": "Bearer test-report-token-0002"}
# Keys a site whose id extends `pooltest` with a slash would have, were ids allowed one: no key of pooltest's.
SLASHED = {b"sw:{pooltest/b:small}:numbers", b"sw:{pooltest/b/e}:assign", b"sw:{pooltest/b|someone}:visit:1"}


def traffic(client: TestClient, clock: Clock, site: str) -> None:
    """Two visitors of a campaign: decisions (exposures, a number each), a form, a call."""
    answers = [client.get("/v1/decide", params={"site": site, "vid": f"{site}-visitor-{n:04d}",
                                                "url": "/?utm_source=google&utm_campaign=spring"}).json()
               for n in range(2)]
    beacon(client, answers[0]["token"], "form", f"{site}-form-1")
    clock.advance(30)
    secret = f"test-calls-secret-000{2 if site.endswith('-2') else 1}".encode()
    answer = post_call(client, call(f"{site}-call-1", answers[1]["phone"]["number"], clock.now), secret, site)
    assert answer.json()["credited"], answer.text


def seen(client: TestClient, site: str, token: dict[str, str]) -> dict[str, Any]:
    """What the site's report token reads: the conversion log, the call log, the report by campaign, the pools."""
    def read(path: str, **params: str) -> Any:
        response = client.get(path, params=params, headers=token)
        assert response.status_code == 200, response.text
        return response.json()

    return {"conversions": read(f"/v1/conversions/{site}")["entries"], "calls": read(f"/v1/calls/{site}")["entries"],
            "by campaign": read(f"/v1/reports/{site}", by="campaign")["rows"],
            "pools held": [pool["held"] for pool in read(f"/v1/pools/{site}")["pools"]]}


def dumped(store: redis.Redis) -> dict[bytes, bytes]:
    """Every key of the store with its value, serialized as Redis does (DUMP): byte for byte."""
    return {key: store.dump(key) for key in store.scan_iter("*")}  # type: ignore[misc]


def swapline(rules_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`swapline ARGS` as an operator runs it where the service runs: its rules, its store."""
    return subprocess.run(["swapline", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SWAPLINE_RULES_DIR": str(rules_dir),
                               "SWAPLINE_REDIS_CLUSTER": "1" if CLUSTER else "0", **env})


def test_erasing_a_site_that_left_leaves_its_id_empty_and_every_other_key_as_it_was(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    (rules_dir / "pooltest-2.yaml").write_text(NEIGHBOUR)
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE) as client:
        traffic(client, clock, "pooltest")
        traffic(client, clock, "pooltest-2")
        before = seen(client, "pooltest", REPORT)
        neighbour = seen(client, "pooltest-2", NEIGHBOUR_REPORT)
    assert all(before.values()) and all(neighbour.values())  # both sites' history shows
    assert len(before["conversions"]) == 2 and before["pools held"] == [2]  # a form and a call; two numbers

    (rules_dir / "pooltest.yaml").unlink()  # the client leaves: the service goes on without its file
    with TestClient(create_app(make_settings(valkey_url, rules_dir))):
        pass
    # What webhooks and exports keep beside the log: a delivery queue (a consumer group of its stream), a cursor.
    store.xgroup_create("sw:{pooltest:log}:entries", "hook:0123456789abcdef", id="0")
    store.set("sw:{pooltest:log}:export:metrica", b"0-0")
    for key in SLASHED:
        store.set(key, b"kept")
    kept = dumped(store)
    theirs = {key for key in kept if re.match(rb"sw:\{pooltest[/:|]", key)} - SLASHED
    erased = swapline(rules_dir, "sites", "erase", "pooltest", SWAPLINE_REDIS_URL=valkey_url)
    assert erased.returncode == 0, erased.stderr
    assert re.fullmatch(rf"site pooltest: {len(theirs)} keys erased \(ledgers \d+, pools \d+, visits \d+, calls \d+, "
                        r"log \d+\)\n", erased.stdout), erased.stdout
    after = dumped(store)
    assert store.smembers("sw:sites") == {b"demo", b"pooltest-2"}  # the store's list of sites served
    del kept[b"sw:sites"], after[b"sw:sites"]
    assert after == {key: value for key, value in kept.items() if key not in theirs}

    # The id goes to a new client: their token reads nothing of the first one's; the neighbour's reads it all.
    caplog.set_level(logging.WARNING, logger="swapline")
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE) as client:
        assert seen(client, "pooltest", REPORT) == {"conversions": [], "calls": [], "by campaign": [],
                                                    "pools held": [0]}
        assert seen(client, "pooltest-2", NEIGHBOUR_REPORT) == neighbour
    assert "new to the rules" not in caplog.text  # nothing left to warn of


def test_a_site_still_in_the_rules_is_refused_in_one_line(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                          clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE) as client:
        traffic(client, clock, "pooltest")
    kept = dumped(store)
    refused = swapline(rules_dir, "sites", "erase", "pooltest", SWAPLINE_REDIS_URL=valkey_url)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (f"swapline: site 'pooltest' is in the rules ({rules_dir}): take its file out, let the "
                              "service reload, then erase it\n")
    assert dumped(store) == kept


def test_a_site_the_service_serves_from_other_rules_is_refused(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                               clock: Clock) -> None:
    """The agency's slip: the command run in a shell without the service's SWAPLINE_RULES_DIR
    reads other rules, which lack the live client; the store says the service loaded it."""
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE) as client:
        traffic(client, clock, "pooltest")
        kept = dumped(store)
        refused = swapline(DEMO_RULES, "sites", "erase", "pooltest", SWAPLINE_REDIS_URL=valkey_url)  # the repo's
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"swapline: site 'pooltest' is among the sites the service last loaded (the "
                                     f"store's list, sw:sites), though not in {DEMO_RULES}: if a service still serves")
    assert dumped(store) == kept


@pytest.mark.parametrize(("site", "code", "says"), [
    ("Shop", 2, "'Shop' is no site id: lower-case Latin letters, digits, '-' and '_', at most 63 characters"),
    ("shop/msk", 2, "'shop/msk' is no site id: lower-case Latin letters, digits, '-' and '_', at most 63 characters"),
    ("sh*p", 2, "'sh*p' is no site id: lower-case Latin letters, digits, '-' and '_', at most 63 characters"),
    ("gone-long-ago", 1, "the store holds nothing of site 'gone-long-ago': nothing erased"),
])
def test_a_site_id_that_is_none_or_unknown_is_said_in_one_line(site: str, code: int, says: str, valkey_url: str,
                                                              rules_dir: Path, store: redis.Redis) -> None:
    store.set("sw:{demo:log}:last_call", 1)  # a store with something in it, of another site
    answered = swapline(rules_dir, "sites", "erase", site, SWAPLINE_REDIS_URL=valkey_url)
    assert (answered.returncode, answered.stdout, answered.stderr) == (code, "", f"swapline: {says}\n")
    assert store.get("sw:{demo:log}:last_call") == b"1"


def test_a_site_id_whose_data_the_store_holds_is_warned_of_once_as_it_comes_back(
        valkey_url: str, rules_dir: Path, store: redis.Redis, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="swapline")
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE) as client:
        traffic(client, clock, "pooltest")
    assert "new to the rules" not in caplog.text  # the first start learns the sites it has

    (rules_dir / "pooltest.yaml").unlink()  # the client leaves while no service runs
    with site_client(valkey_url, rules_dir, clock, "pooltest-2", NEIGHBOUR):
        pass
    assert ("sites gone from the rules since they were last loaded: pooltest; their data stays in the store "
            "(`swapline sites erase SITE` erases it)") in caplog.text
    assert "new to the rules" not in caplog.text  # pooltest-2 is new, and the store holds nothing of it

    caplog.clear()
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE):  # the id goes to another client
        pass
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE):  # and the service restarts
        pass
    (warning,) = [record.getMessage() for record in caplog.records if "new to the rules" in record.getMessage()]
    assert warning.startswith("site pooltest is new to the rules, but the store holds data of a site of that id from "
                              "before (reports, calls, the conversion log), which its report token now reads")
    assert "run `swapline sites erase pooltest`" in warning


def test_a_reload_warns_of_a_site_id_the_store_holds_data_of(valkey_url: str, rules_dir: Path, store: redis.Redis,
                                                             clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swapline")
    with site_client(valkey_url, rules_dir, clock, "pooltest", POOL_SITE, reload_rules=True) as client:
        traffic(client, clock, "pooltest")
        until_the_watcher_sees(rules_dir / "demo.yaml", caplog)
        (rules_dir / "pooltest.yaml").rename(rules_dir / "pooltest.yaml.bak")
        wait_for("the site's going", lambda: "sites no longer in the rules: pooltest;" in caplog.text)
        assert "`swapline sites erase SITE` erases it" in caplog.text
        (rules_dir / "pooltest.yaml").write_text(POOL_SITE)  # another client, the same id
        wait_for("the warning", lambda: "site pooltest is new to the rules" in caplog.text)
        assert "run `swapline sites erase pooltest`" in caplog.text


def test_a_thousand_sites_new_to_the_rules_are_checked_in_a_few_round_trips(
        valkey_url: str, store: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="swapline")
    used = {"client-17", "client-500", "client-999"}
    for site in used:
        store.xadd(f"sw:{{{site}:log}}:entries", {"c": "{}"})

    async def reload() -> tuple[list[str], int, float]:
        checked = Store(connect(valkey_url, CLUSTER))
        await checked.batcher.prepare()  # as a service has, before its first reload
        began = time.perf_counter()
        again = await sites.arrived(checked, [f"client-{n}" for n in range(1000)])
        took = time.perf_counter() - began
        trips = checked.batcher.round_trips
        await checked.close()
        return again, trips, took

    again, trips, took = asyncio.run(reload())
    assert set(again) == used and caplog.text.count("is new to the rules") == 3
    assert trips == 4 and took < 1.0  # 4,000 commands, 1,000 at a time: a reload waits for none of them


def test_the_embedded_store_is_erased_with_the_service_stopped_or_running(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for site in ("left", "left-too"):
        (rules / f"{site}.yaml").write_text(f"site: {site}\n")
    embedded = {"SWAPLINE_DATA_DIR": str(tmp_path / "data"), "SWAPLINE_REDIS_URL": "", "SWAPLINE_REDIS_CLUSTER": "0"}
    nowhere = swapline(rules, "sites", "erase", "gone", **embedded)  # before the service ever ran
    assert nowhere.stderr == (f"swapline: no embedded store in {tmp_path / 'data' / 'valkey'}: set SWAPLINE_DATA_DIR "
                              "as the service has it, or SWAPLINE_REDIS_URL to its store\n")
    process, base = start(tmp_path, SWAPLINE_RULES_DIR=str(rules))
    try:
        for site in ("left", "left-too"):
            answer = httpx.get(f"{base}/v1/decide", params={"site": site, "url": "/"}, headers=BROWSER_HEADERS)
            assert answer.status_code == 200 and not answer.json()["degraded"]
    finally:
        stop(process)
    (rules / "left.yaml").unlink()
    (rules / "left-too.yaml").unlink()
    (rules / "other.yaml").write_text("site: other\n")

    # The command starts the store for the while; the service, stopped, last loaded the site.
    unsure = swapline(rules, "sites", "erase", "left", **embedded)
    assert unsure.returncode == 1 and "if the service is stopped, start it once without the file" in unsure.stderr
    process, base = start(tmp_path, SWAPLINE_RULES_DIR=str(rules))  # it learns the sites left
    try:
        running = swapline(rules, "sites", "erase", "left-too", **embedded)  # on the running service's store
        assert running.returncode == 0 and running.stdout.startswith("site left-too: "), running.stderr
        assert httpx.get(f"{base}/readyz").status_code == 200
    finally:
        stop(process)
    stopped = swapline(rules, "sites", "erase", "left", **embedded)
    assert stopped.returncode == 0 and stopped.stdout.startswith("site left: "), stopped.stderr
    again = swapline(rules, "sites", "erase", "left", **embedded)  # as the store kept it on disk
    assert again.stderr == "swapline: the store holds nothing of site 'left': nothing erased\n"


def test_a_store_behind_sentinel_is_erased_on_its_primary_and_the_replicas_follow(tmp_path: Path) -> None:
    with local_sentinel(tmp_path / "store") as deployment:
        primary = deployment.node(deployment.primary())
        for site in ("left", "left-2"):
            primary.hset(f"sw:{{{site}:calls}}:calls", "call-1", b"{}")
            primary.xadd(f"sw:{{{site}:log}}:entries", {"c": b"{}"})
        erased = swapline(DEMO_RULES, "sites", "erase", "left", SWAPLINE_REDIS_URL=deployment.url,
                          SWAPLINE_REDIS_CLUSTER="0")
        assert erased.stdout == "site left: 2 keys erased (calls 1, log 1)\n", erased.stderr
        wait_for("the replicas have every write", deployment.caught_up)
        for port in deployment.nodes:
            assert sorted(deployment.node(port).scan_iter("sw:*")) == [b"sw:{left-2:calls}:calls",
                                                                      b"sw:{left-2:log}:entries"]

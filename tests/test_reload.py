"""Editing a rules file takes effect without restart; a broken edit is refused whole, and a
restart with it serves the last good rules."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import weakref
from pathlib import Path

import pytest
import redis
from markupsafe import escape
from starlette.testclient import TestClient

from service.app import create_app
from service.rules import rulefiles
from service.rules.lastgood import FILE, LastGood
from service.rules.reload import resplit, site_list
from tests.conftest import BROWSER_HEADERS, UNCHANGED, make_settings, until_the_watcher_sees

NEW_HEADLINE = "Кондиционеры со скидкой {{ city.in }}"


def headline(client: TestClient) -> str | None:
    body = client.get("/v1/decide", params={"site": "demo", "url": "/"},
                      headers={"x-forwarded-for": "46.242.0.1"}).json()
    # A refusal (429: a test that waits long asks more often than a network may) has no swaps.
    return {swap["selector"]: swap["text"] for swap in body.get("swaps", [])}.get("h1.hero")


def wait_for(predicate: object, seconds: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def test_one_worker_starts_on_the_rules_serve_checked_without_loading_them_again(
    valkey_url: str, rules_dir: Path, store: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # `swapline serve` checks the rules, then runs its one worker in the same process: loading
    # 10,000 rules once instead of twice halves its start. The worker gets the checked rules:
    # a file broken after the check is not read (the watcher refuses such edits later too).
    checked = rulefiles.load(rules_dir)
    good = (rules_dir / "demo.yaml").read_text()
    (rules_dir / "demo.yaml").write_text("site: [not, a, site")
    app = create_app(make_settings(valkey_url, rules_dir, reload_rules=True), checked=checked)
    with TestClient(app, client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        assert client.get("/readyz").json()["rules_version"] == checked.version
        assert headline(client) == "Кондиционеры с установкой в Москве"
        # Once a reload replaces them, the first rules go: 10,000 rules kept for nothing are 40 MB.
        first = weakref.ref(checked.sites["demo"])
        del checked
        (rules_dir / "demo.yaml").write_text(good)  # as checked: no change to the rules
        until_the_watcher_sees(rules_dir / "demo.yaml", caplog)
        (rules_dir / "demo.yaml").write_text(good.replace("Кондиционеры с установкой {{ city.in }}", NEW_HEADLINE))
        assert wait_for(lambda: headline(client) == "Кондиционеры со скидкой в Москве", 60.0) is not None
        assert first() is None
    (rules_dir / "demo.yaml").write_text("site: [not, a, site")
    # What a worker that loads the rules itself meets, where no good rules were kept before:
    fresh = make_settings(valkey_url, rules_dir, data_dir=rules_dir.parent / "fresh")
    with pytest.raises(rulefiles.RulesError), TestClient(create_app(fresh)):
        pass


def test_an_edit_applies_without_restart_and_a_broken_edit_is_refused(
    valkey_url: str, rules_dir: Path, store: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    demo = rules_dir / "demo.yaml"
    app = create_app(make_settings(valkey_url, rules_dir, reload_rules=True))
    with TestClient(app, client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        assert headline(client) == "Кондиционеры с установкой в Москве"
        until_the_watcher_sees(demo, caplog)
        # The same files, or a file the loader does not read (an upload's dot file before its
        # rename): the rules and their memos stay as they are, and nothing says "reloaded".
        serving, seen = app.state.runtime.rules, caplog.text.count(UNCHANGED)
        (rules_dir / ".demo.yaml.part").write_text(demo.read_text()[:100])
        assert wait_for(lambda: caplog.text.count(UNCHANGED) > seen, 60.0) is not None
        assert app.state.runtime.rules is serving and "rules reloaded" not in caplog.text
        del serving  # the old rules must go with their last reference (below)
        (rules_dir / ".demo.yaml.part").unlink()
        before = weakref.ref(app.state.runtime.rules.sites["demo"])
        demo.write_text(demo.read_text().replace("Кондиционеры с установкой {{ city.in }}", NEW_HEADLINE))
        took = wait_for(lambda: headline(client) == "Кондиционеры со скидкой в Москве", 60.0)
        assert took is not None, "the edit did not take effect"
        # The old rules went as their last reference did, frozen out of the collector's view or
        # not: nothing of them waits for a full collection, which would pause serving.
        assert before() is None

        caplog.set_level(logging.ERROR, logger="swapline")
        good_version = client.get("/readyz").json()["rules_version"]
        broken = demo.read_text().replace("selector: h1.hero", "selector: h1..hero", 1)
        broken = broken.replace("weight: 34", "weight: 40")
        demo.write_text(broken)
        assert wait_for(lambda: "rules change refused" in caplog.text, 60.0) is not None
        assert "bad CSS selector" in caplog.text and "add up to 106" in caplog.text
        assert headline(client) == "Кондиционеры со скидкой в Москве"
        ready = client.get("/readyz").json()
        assert ready["rules_version"] == good_version and ready["rules_change_refused"] is True
        # An operator sees it without reading the log: the metrics (an alert) and the home page;
        # a marketer sees whose file and why there too, among many clients' files.
        assert "swapline_rules_refused 1" in client.get("/metrics").text
        assert 'swapline_rules_changes_total{outcome="refused"}' in client.get("/metrics").text
        home = client.get("/").text
        assert "a later change to the rules was refused" in home
        assert [problem.split(":")[0] for problem in ready["rules_problems"]] == ["demo.yaml", "demo.yaml"]
        assert any("bad CSS selector" in problem for problem in ready["rules_problems"])
        assert all(str(escape(problem)) in home for problem in ready["rules_problems"])  # as Jinja writes it
        caplog.set_level(logging.INFO, logger="swapline")
        demo.write_text(broken.replace("h1..hero", "h1.hero").replace("weight: 40", "weight: 34"))
        assert wait_for(lambda: not client.get("/readyz").json()["rules_change_refused"], 60.0) is not None
        assert "the refused rules change is undone" in caplog.text
        assert "rules_problems" not in client.get("/readyz").json()
        assert "swapline_rules_refused 0" in client.get("/metrics").text
        assert "was refused" not in client.get("/").text

        # A site whose file goes (deleted, or renamed to demo.yaml.bak) is said to go, not just gone.
        caplog.set_level(logging.WARNING, logger="swapline")
        (rules_dir / "extra.yaml").write_text("site: extra\n")
        assert wait_for(lambda: "extra" in app.state.runtime.rules.sites, 60.0) is not None
        scraped = client.get("/metrics").text
        assert "swapline_sites 2" in scraped and 'swapline_site_served{site="extra"} 1' in scraped
        (rules_dir / "extra.yaml").rename(rules_dir / "extra.yaml.bak")
        assert wait_for(lambda: "sites no longer in the rules: extra;" in caplog.text, 60.0) is not None
        scraped = client.get("/metrics").text  # SwaplineSiteGone names the one that went
        assert "swapline_sites 1" in scraped and 'swapline_site_served{site="extra"}' not in scraped
        assert 'swapline_site_served{site="demo"} 1' in scraped


def test_a_restart_with_a_broken_file_serves_the_last_good_rules_and_says_so(
    valkey_url: str, rules_dir: Path, tmp_path: Path, store: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """One client's mistake, waiting to be fixed, took every site of the directory down at the
    next restart (a reboot, an upgrade). The rules that loaded last are kept in the data
    directory, and serve then, loudly, until the directory loads."""
    demo = rules_dir / "demo.yaml"
    (rules_dir / "client.yaml").write_text("site: client\norigins: [https://client.example]\n")
    settings = make_settings(valkey_url, rules_dir, data_dir=tmp_path / "data", reload_rules=True)
    with TestClient(create_app(settings), client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        good = client.get("/readyz").json()["rules_version"]
    kept = tmp_path / "data" / FILE
    assert kept.stat().st_mode & 0o777 == 0o600  # a rules file may hold a literal token
    demo.write_text(demo.read_text().replace("weight: 34", "weight: 40"))
    with pytest.raises(rulefiles.RulesError):  # what `swapline rules check` says
        rulefiles.load(rules_dir)

    caplog.set_level(logging.INFO, logger="swapline")
    with TestClient(create_app(settings), client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        assert headline(client) == "Кондиционеры с установкой в Москве"
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["rules_version"] == good
        assert ready["rules_change_refused"] is True and len(ready["rules_problems"]) == 1
        assert time.time() - 600 < ready["rules_kept_at"] / 1000 <= time.time()  # when they were kept
        assert ready["rules_problems"][0].startswith("demo.yaml:") and "add up to 106" in ready["rules_problems"][0]
        assert "swapline_rules_refused 1" in client.get("/metrics").text
        home = client.get("/").text  # which rules serve, and since when they were kept
        assert "the rules directory was refused when the service started, at " in home
        assert re.search(r"these are the last good rules, kept from it at \d{4}-\d\d-\d\d \d\d:\d\d UTC", home)
        assert "the last good rules, kept from it at" in caplog.text and f"(version {good}), serve" in caplog.text
        assert set(client.app.state.runtime.rules.sites) == {"demo", "client"}  # every client's site serves
        # The fix applies as any edit does, and the refusal is gone: once the watcher runs (it
        # reads the directory, still refused, for a file it does not load).
        seen, touch = caplog.text.count("rules change refused"), rules_dir / ".touched"
        assert wait_for(lambda: touch.write_text(str(time.monotonic())) and
                        caplog.text.count("rules change refused") > seen, 60.0) is not None
        demo.write_text(demo.read_text().replace("weight: 40", "weight: 34").replace(
            "Кондиционеры с установкой {{ city.in }}", NEW_HEADLINE))
        assert wait_for(lambda: headline(client) == "Кондиционеры со скидкой в Москве", 60.0) is not None
        assert client.get("/readyz").json()["rules_change_refused"] is False
        assert "refused" not in client.get("/").text
    # What now serves is kept in its turn: broken again, a restart serves the fix.
    demo.write_text("site: [not, a, site")
    with TestClient(create_app(settings), client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        assert headline(client) == "Кондиционеры со скидкой в Москве"


def test_a_rules_directory_mounted_late_or_replaced_is_watched_once_it_is_there(
    valkey_url: str, rules_dir: Path, tmp_path: Path, store: redis.Redis
) -> None:
    """After a reboot whose volume came after the service (which then started on the last good
    rules), edits were never seen; so were those to a directory deleted and made again."""
    settings = make_settings(valkey_url, rules_dir, data_dir=tmp_path / "data", reload_rules=True)
    with TestClient(create_app(settings)):
        pass
    away = rules_dir.rename(tmp_path / "away")
    edited = (away / "demo.yaml").read_text().replace("Кондиционеры с установкой {{ city.in }}", NEW_HEADLINE)
    with TestClient(create_app(settings), client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        assert "no such rules directory" in client.get("/readyz").json()["rules_problems"][0]
        (away / "demo.yaml").write_text(edited)
        away.rename(rules_dir)  # the volume is mounted
        assert wait_for(lambda: headline(client) == "Кондиционеры со скидкой в Москве", 60.0) is not None
        assert client.get("/readyz").json()["rules_change_refused"] is False
        shutil.rmtree(rules_dir)  # a deploy that makes the directory anew
        rules_dir.mkdir()
        (rules_dir / "demo.yaml").write_text(edited.replace(NEW_HEADLINE, "Кондиционеры в рассрочку"))
        assert wait_for(lambda: headline(client) == "Кондиционеры в рассрочку", 60.0) is not None
    # Mounted after `swapline serve` (or a worker) loaded the rules, and before its watch began:
    # one of two workers stayed on the kept rules.
    rules_dir.rename(away)
    (away / "demo.yaml").write_text(edited.replace(NEW_HEADLINE, "Кондиционеры без переплаты"))
    checked = LastGood(tmp_path / "data").start(rules_dir)
    away.rename(rules_dir)
    with TestClient(create_app(settings, checked=checked), client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        assert wait_for(lambda: headline(client) == "Кондиционеры без переплаты", 60.0) is not None


def test_rules_that_cannot_be_kept_take_the_older_ones_kept_out(
    valkey_url: str, rules_dir: Path, tmp_path: Path, store: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A data directory that takes no more writes left the older rules kept: a start with a
    broken file then served them, and a number moved from one client to another since went
    back to the first."""
    demo = rules_dir / "demo.yaml"
    settings = make_settings(valkey_url, rules_dir, data_dir=tmp_path / "data", reload_rules=True)
    with TestClient(create_app(settings), client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as client:
        (tmp_path / "data" / f".{FILE}.{os.getpid()}").mkdir()  # where the new rules would be written
        until_the_watcher_sees(demo, caplog)
        demo.write_text(demo.read_text().replace("Кондиционеры с установкой {{ city.in }}", NEW_HEADLINE))
        assert wait_for(lambda: headline(client) == "Кондиционеры со скидкой в Москве", 60.0) is not None
    assert "cannot keep the rules as the last good ones" in caplog.text
    assert not (tmp_path / "data" / FILE).exists()
    demo.write_text("site: [")
    with pytest.raises(rulefiles.RulesError), TestClient(create_app(settings)):
        pass


def test_rules_kept_from_another_directory_or_that_no_longer_load_do_not_serve(
    valkey_url: str, rules_dir: Path, tmp_path: Path, store: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SWAPLINE_RULES_DIR changed or mistyped is not the last good of the one kept; kept rules
    that fail now (here a token in the environment cut short) refuse the start, naming both."""
    demo = rules_dir / "demo.yaml"
    monkeypatch.setenv("DEMO_REPORT_TOKEN", "a-report-token-long-enough")
    demo.write_text(re.sub(r"(?m)^(  token:).*$", r"\1 ${DEMO_REPORT_TOKEN}", demo.read_text(), count=1))
    settings = make_settings(valkey_url, rules_dir, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)):
        pass
    other = tmp_path / "other"
    shutil.copytree(rules_dir, other)
    (other / "demo.yaml").write_text("site: [")
    with pytest.raises(rulefiles.RulesError) as refused, \
            TestClient(create_app(make_settings(valkey_url, other, data_dir=tmp_path / "data"))):
        pass
    problems = [str(problem) for problem in refused.value.problems]  # the last says why nothing serves instead
    assert problems[0].startswith(f"{other / 'demo.yaml'}:1: ") and problems[1:] == [
        f"{tmp_path / 'data' / FILE}:1: the last good rules kept here are those of {rules_dir}, not of {other}"]

    demo.write_text("site: [")
    monkeypatch.setenv("DEMO_REPORT_TOKEN", "short")
    with pytest.raises(rulefiles.RulesError) as refused, TestClient(create_app(settings)):
        pass
    problems = [str(problem) for problem in refused.value.problems]
    assert problems[0].startswith(f"{demo}:1: ")
    assert problems[1] == f"{tmp_path / 'data' / FILE}:1: the last good rules kept here do not load either:"
    assert problems[2].startswith(f"{tmp_path / 'data' / FILE / 'demo.yaml'}:")
    assert "fewer than 16 characters" in problems[2]


def test_the_log_line_of_a_load_names_twenty_sites_and_counts_the_rest(tmp_path: Path) -> None:
    """An agency's thousand clients made each reload's line 10 KB."""
    for n in range(1, 26):
        (tmp_path / f"client-{n:02d}.yaml").write_text(f"site: client-{n:02d}\norigins: [https://c{n}.example.ru]\n")
    line = site_list(rulefiles.load(tmp_path))
    assert line.startswith("client-01, client-02, ") and line.endswith("client-20 and 5 more")
    (tmp_path / "client-25.yaml").unlink()
    assert site_list(rulefiles.load(tmp_path)).endswith("client-20 and 4 more")
    for n in range(2, 25):
        (tmp_path / f"client-{n:02d}.yaml").unlink()
    assert site_list(rulefiles.load(tmp_path)) == "client-01"


def test_a_reload_that_splits_a_running_experiment_anew_names_it(rules_dir: Path) -> None:
    """A new salt, weights or variants move visitors to other variants while the reports count
    each where they were first: an analyst then reads mixed arms. The log names each such
    experiment; texts edited, or an experiment ended, are no new split."""
    demo = rules_dir / "demo.yaml"
    before = rulefiles.load(rules_dir)
    source = demo.read_text()
    edits = {
        "salt": source.replace("  - id: cta-wording\n", "  - id: cta-wording\n    salt: \"2\"\n"),
        "weights": source.replace("weight: 34", "weight: 40").replace("weight: 33\n        swap",
                                                                        "weight: 27\n        swap", 1),
        "variants": source.replace("- id: free-visit", "- id: free-visit-2"),
        "": source.replace("text: Установим завтра", "text: Установим послезавтра"),
    }
    for what, text in edits.items():
        demo.write_text(text)
        assert resplit(before, rulefiles.load(rules_dir)) == ([f"demo/cta-wording ({what})"] if what else []), what
    ended = "  - id: cta-wording\n    winner: control\n    salt: \"3\"\n"  # what every visitor sees now
    demo.write_text(source.replace("  - id: cta-wording\n", ended))
    assert resplit(before, rulefiles.load(rules_dir)) == []

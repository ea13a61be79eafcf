"""The shell commands of README.md and docs/*.md run here as a newcomer runs them, in order:
the README's first command installs and starts the service, the others run "in a second
shell" against it. A command that cannot run here is listed in `NOT_HERE` with the reason,
so a command added to the docs is run or explained, and the docs cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import NamedTuple

import httpx
import pytest

from tests.conftest import ROOT, free_port, output

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT = "127.0.0.1:8000"  # where the docs say the service listens

# The start of a block's first command → why the block does not run in the tests.
NOT_HERE = {
    "scripts/test": "the test suite itself",
    "curl -sI -H 'Accept-Encoding: identity' https://swapline.example.com": "the reader's own production host",
    "SWAPLINE_RULES_DIR=loadtest/rules": "a service and 30 s of Locust load: tests/test_loadtest.py runs the same "
                                         "locustfile against the same rules",
    "docker ": "no Docker here: tests/test_dockerfile.py checks the Dockerfile and the compose file",
    "python3 benchmarks/": "benchmarks: seconds to minutes of load, some with wrk, py-spy or valgrind, and figures "
                           "for a person to read on a quiet machine, not for a test to assert",
    "mkdir -p /tmp/base": "a benchmark recipe: checkouts of two commits, minutes of load",
    "git worktree add": "a benchmark recipe: a checkout of another commit, minutes of load",
    "swapline sites erase client15": "a site of the reader's that left the rules: tests/test_sites.py erases one "
                                     "after its traffic, on a standalone store, Sentinel and the embedded one",
    "swapline rules check broken": "the output for a broken directory of the reader's: tests/test_rules_check.py "
                                   "checks each message",
}
# The start of a block's first command → what its output shows when it worked.
SHOWS = {
    "curl -G http://127.0.0.1:8000/v1/decide": "Купить кондиционер в",  # the keyword headline, then the curl's city
    "body='{\"call_id\"": '"call_id":"c-1"',
    "printf 'call_id,called": "1 not credited",
    "cat > /tmp/swapline-call": '"status":"completed"',  # the caller ID's own "status" is no field
    "curl -H 'Authorization: Bearer demo-report-token-change-me'": '"experiments"',
    "curl -s -H 'Authorization: Bearer demo-report-token-change-me' 'http://127.0.0.1:8000/v1/calls": '"entries"',
    "swapline rules check": "rules: OK, 1 site(s): demo; version ",
    "swapline report --site demo --by": "campaign  visits",
    "swapline rules preview": '"h1.hero"',
    "swapline forget --site demo --caller": '"credited_to"',
    "swapline show --site demo": '"conversions": []',
    "swapline number +74951200001 --site demo": "(lease, pool moscow) at",
    "curl -s -o /tmp/demo-sources.xlsx": "xl/worksheets/sheet1.xml",
}


class Block(NamedTuple):
    source: str  # file:line
    script: str  # its commands, run as one script: variables carry from line to line

    @property
    def first(self) -> str:
        return next(line for line in self.script.splitlines() if line.strip() and not line.startswith("#"))


def blocks() -> list[Block]:
    """Each ```sh block, and each `$ command` line of the other code blocks, in the docs' order."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for fence in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            line = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, fence.start()) + 1}"
            if fence.group(1) == "sh":
                found.append(Block(line, fence.group(2)))
            else:
                found += [Block(line, command[2:]) for command in fence.group(2).splitlines()
                          if command.startswith("$ ")]
    return found


def reason(block: Block) -> str | None:
    return next((why for start, why in NOT_HERE.items() if block.first.startswith(start)), None)


def shows(block: Block) -> str | None:
    return next((shown for start, shown in SHOWS.items() if block.first.startswith(start)), None)


RUN_HERE = [block for block in blocks()[1:] if reason(block) is None]


def test_every_command_runs_here_or_says_why_not() -> None:
    """A command new to the docs needs what its output shows (`SHOWS`) or why it cannot run
    here (`NOT_HERE`); a reason whose command is gone goes too."""
    assert [block.source for block in RUN_HERE if shows(block) is None] == []
    firsts = [block.first for block in blocks()]
    assert [start for start in NOT_HERE if not any(first.startswith(start) for first in firsts)] == []
    assert len(RUN_HERE) >= 5


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The README's first command, as written: a virtualenv, the install, `swapline serve` on
    the embedded store; on a free port and a data directory of the test's own."""
    first = blocks()[0]
    assert first.source == "README.md:10" and first.script.rstrip().endswith("swapline serve"), first
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SWAPLINE_", "VIRTUAL_ENV"))},
           "SWAPLINE_PORT": str(port), "SWAPLINE_DATA_DIR": str(tmp_path_factory.mktemp("docs") / "data")}
    log = tmp_path_factory.mktemp("docs-log") / "serve.log"
    with log.open("w+b") as sink:
        process = subprocess.Popen(["bash", "-c", first.script], cwd=ROOT, env=env, stdout=sink,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        process.log = sink  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600  # a safety net only: the install downloads what pip has not cached
        while process.poll() is None and not _ready(base):
            assert time.monotonic() < deadline, output(process)
            time.sleep(0.2)
        assert process.poll() is None, output(process)
        yield base, env
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as the README says
        assert process.wait(timeout=60) == 0, output(process)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("block", RUN_HERE, ids=lambda block: block.source)
def test_the_command_runs_as_the_docs_say(block: Block, installed: tuple[str, dict[str, str]]) -> None:
    base, env = installed
    script = ". .venv/bin/activate\n" + block.script.replace(DEFAULT, base.removeprefix("http://"))  # a second shell
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{block.source}: {done.stderr}"
    assert (shows(block) or "") in done.stdout, f"{block.source}: {done.stdout}"

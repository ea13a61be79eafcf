"""Rules reload without restart: a valid edit replaces the rules whole, a broken one is refused."""

from __future__ import annotations

import asyncio
import functools
import logging
import stat
from collections.abc import Callable
from pathlib import Path

from watchfiles import awatch

from service.rules import places
from service.rules.rulefiles import RulesError, RuleSet

log = logging.getLogger("swapline")
# The threads here run Python while the loop serves. Whenever the loop lets go of the GIL (a
# socket, an RE2 search), such a thread takes it for up to Python's switch interval before the
# loop gets it back: 1 ms, not Python's 5, so that requests served meanwhile wait less.
SWITCH_INTERVAL = 0.001
LOOK_AGAIN = 2  # seconds between looks for a rules directory that is not there, or was replaced
SITES_NAMED = 20  # in the log line of a load: an agency's thousand sites would make it 10 KB


async def watch_rules(directory: Path, load: Callable[[Path], RuleSet], apply: Callable[[RuleSet], bool],
                      refuse: Callable[[RulesError], None], stale: bool = False) -> None:
    """Reload `directory` with `load` after every change; runs until cancelled. `apply` says whether the
    rules changed: a write to a file the loader does not read (an upload's dot file, an
    editor's backup) changes nothing. Such changes still reload: Kubernetes swaps a ConfigMap's
    files by a dot directory's link.

    A directory not there (yet: a volume mounted after the service started, on the last good
    rules) is waited for; one replaced (deleted and made again, a `current` link switched to
    another release) is watched anew. Either reloads once it is found. `stale`: the service
    started on the last good rules kept from before, so the directory is loaded again as soon
    as it is there, in case it came, or was fixed, before the watch began."""
    reload = functools.partial(_reload, directory, load, apply, refuse)
    found = await asyncio.to_thread(_identity, directory)
    if found is not None and stale:
        await reload(again=True)
    while True:
        if found is None:
            await asyncio.sleep(LOOK_AGAIN)
            if (found := await asyncio.to_thread(_identity, directory)) is not None:
                await reload()
            continue
        try:
            async for changes in awatch(directory, debounce=200, step=50, rust_timeout=LOOK_AGAIN * 1000,
                                        yield_on_timeout=True):
                if (now := await asyncio.to_thread(_identity, directory)) != found:
                    found = now
                    if now is not None:
                        await reload()
                    break
                if changes:
                    await reload()
        except OSError as exc:  # gone between the look and the watch
            log.debug("rules directory not watched: %s", exc)
            found = None


async def _reload(directory: Path, load: Callable[[Path], RuleSet], apply: Callable[[RuleSet], bool],
                  refuse: Callable[[RulesError], None], again: bool = False) -> None:
    """`again`: a look at what the start refused, which says nothing while it is refused still."""
    try:
        rules = await asyncio.to_thread(load, directory)  # file I/O stays off the loop
    except RulesError as exc:
        if again:
            return
        log.error(
            "rules change refused, the last good rules keep serving:\n%s",
            "\n".join(map(str, exc.problems)),
        )
        refuse(exc)
        return
    if apply(rules):
        log.info("rules reloaded: version %s, sites %s", rules.version, site_list(rules))
        log_warnings(rules)
    else:
        log.debug("rules directory changed, rules unchanged: version %s", rules.version)


def _identity(directory: Path) -> tuple[int, int] | None:
    """Which directory `directory` names now (its device and inode, through any link), or None."""
    try:
        found = directory.stat()
    except OSError:
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISDIR(found.st_mode) else None


def site_list(rules: RuleSet) -> str:
    """The rules' sites for a log line: the first `SITES_NAMED`, then how many more."""
    ids = list(rules.sites)
    more = len(ids) - SITES_NAMED
    return ", ".join(ids[:SITES_NAMED]) + (f" and {more} more" if more > 0 else "")


def resplit(old: RuleSet, new: RuleSet) -> list[str]:
    """The running experiments whose split the new rules change (a salt, weights, variants added,
    renamed or taken out), as `site/experiment (what)`: their visitors move to other variants
    while the reports count each in the variant they were first exposed to."""
    changed = []
    for site_id, site in new.sites.items():
        before = {experiment.id: experiment for experiment in old.sites[site_id].experiments} \
            if site_id in old.sites else {}
        for experiment in site.experiments:
            was = before.get(experiment.id)
            if was is None or was.winner is not None or experiment.winner is not None:
                continue
            what = [name for name, differs in (
                ("salt", was.salt != experiment.salt),
                ("variants", [v.id for v in was.variants] != [v.id for v in experiment.variants]),
                ("weights", was.bounds != experiment.bounds)) if differs]
            if what:
                changed.append(f"{site_id}/{experiment.id} ({', '.join(what)})")
    return changed


def log_warnings(rules: RuleSet) -> None:
    for warning in rules.warnings:
        log.warning("%s", warning)


async def warm_places() -> None:
    """Inflect the known Russian place names in a thread, before visitors ask for them."""
    await asyncio.to_thread(places.warm, places.known_places())

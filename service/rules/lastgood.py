"""The last good rules, kept in the data directory, so that a restart with a broken rules file
serves them instead of taking every site down.

A reload refuses a broken change and the rules in memory keep serving; a process that starts has
none in memory. So each time a rules directory loads, its files are kept whole in one file,
replaced at once (several workers may write it together). A start whose directory is refused
serves what was last kept from that directory, and says so everywhere a refused reload does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import time
from pathlib import Path

import orjson

from service.rules.rulefiles import Kept, Problem, RulesError, RuleSet, Sources, compile_rules, read

log = logging.getLogger("swapline")
FILE = "last-good-rules.json"  # in the data directory


class LastGood:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE
        self.version: str | None = None  # last kept by this process: the same rules are not written again

    def load(self, directory: Path) -> RuleSet:
        """The rules of `directory` (`RulesError` if refused), kept as the last good ones."""
        sources = read(directory)
        rules = compile_rules(sources)
        if rules.version != self.version:
            self._keep(directory, sources, rules.version)
        return rules

    def start(self, directory: Path) -> RuleSet:
        """The rules of `directory`; if they are refused, those last kept from it, which carry its
        problems (`RuleSet.kept`). `RulesError` if none were kept, or those kept do not load now (an
        upgrade that checks more, a `${VAR}` now too short): its last problem says why none serve."""
        try:
            return self.load(directory)
        except RulesError as refused:
            kept = self._kept(directory)
            if isinstance(kept, str):
                raise RulesError([*refused.problems, Problem(str(self.path), 1, kept)]) from None
            at, sources = kept
            try:
                rules = compile_rules(sources)
            except RulesError as also:
                raise RulesError([*refused.problems, Problem(str(self.path), 1, "the last good rules kept here "
                                                                                "do not load either:"),
                                  *also.problems]) from None
            log.error("rules directory refused at start; the last good rules, kept from it at %s UTC (version %s), "
                      "serve until it loads:\n%s",
                      datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M"), rules.version,
                      "\n".join(map(str, refused.problems)))
            return dataclasses.replace(rules, kept=Kept(at, tuple(refused.problems)))

    def _keep(self, directory: Path, sources: Sources, version: str) -> None:
        kept = {"directory": _named(directory), "version": version, "at": time.time(),
                "files": {path.name: text for path, text in sources.items()}}
        partial = self.path.with_name(f".{FILE}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Only the owner reads it: a rules file may hold a literal token or secret.
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(descriptor, "wb") as file:
                file.write(orjson.dumps(kept))
                file.flush()
                os.fsync(descriptor)  # a power cut leaves the old file or the new one, never an empty one
            os.replace(partial, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            # Older rules, kept still, would serve at a start with a broken file: a number moved
            # from one client to another since would go back to the first.
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                log.error("cannot keep the rules as the last good ones in %s (%s), nor take out the older ones kept "
                          "there: a start with a broken rules file would serve those", self.path, exc.strerror or exc)
            else:
                log.warning("cannot keep the rules as the last good ones in %s (%s): a start with a broken rules "
                            "file would not start", self.path, exc.strerror or exc)
            return
        self.version = version

    def _kept(self, directory: Path) -> tuple[float, Sources] | str:
        """When the rules last kept from `directory` were kept, and their files; or why none serve."""
        try:
            kept = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return "no last good rules are kept here to serve instead (a new data directory)"
        except (OSError, orjson.JSONDecodeError) as exc:
            return f"the last good rules kept here cannot be read: {exc}"
        if not isinstance(kept, dict) or not isinstance(kept.get("at"), float) or \
                not isinstance(files := kept.get("files"), dict) or \
                not all(isinstance(text, str) for text in files.values()):
            return "the last good rules kept here are not as this version keeps them"
        # Another directory's (SWAPLINE_RULES_DIR changed, or mistyped) are not this one's last good.
        if kept.get("directory") != _named(directory):
            return f"the last good rules kept here are those of {kept.get('directory')}, not of {_named(directory)}"
        return kept["at"], {self.path / name: text for name, text in files.items()}


def _named(directory: Path) -> str:
    """A rules directory as the settings name it, absolute: a `current` link switched to another
    release names the same one."""
    return os.path.abspath(directory)

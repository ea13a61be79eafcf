"""Rule files → compiled `RuleSet`, or every mistake as `file:line: message`.

A rules directory holds one YAML file per site. Loading is all-or-nothing: one mistake in
any file refuses the whole change, so a half-edited directory never serves.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cssselect
import pycountry

from service.analytics.stats import EXPECTED_VISITORS
from service.config import repetitive
from service.rules import cities, phones, places
from service.rules.claims import Claims
from service.rules.conditions import When
from service.rules.engine import BUCKETS, Experiment, Pool, Site, Variant
from service.rules.geo import city_key
from service.rules.index import TARGETS, Rule, RuleIndex, Slot, Swap
from service.rules.links import CHECKS
from service.rules.pageview import Pages
from service.rules.patterns import Linear, PatternError
from service.rules.phrase import Keyword, unicode_host
from service.rules.places import PREPOSITIONS
from service.rules.regions import city_meant, english_city, region_code, region_place, renamed_region
from service.rules.ruleschema import dotted, least_length, schema_problems
from service.rules.settings import (
    VENDOR_CREDENTIALS,
    AlertSettings,
    CallSettings,
    Exports,
    GoogleAds,
    Metrica,
    VisitSettings,
    Webhook,
    refused_address,
)
from service.rules.templates import MAX_OUTPUT, TemplateError, Text, compile_text
from service.rules.words import KeywordTerms, keyword_terms
from service.rules.yamlsource import Document, YAMLProblem, parse

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# What a text shows a visitor from nowhere GeoIP knows, with every other name filled in.
_UNPLACED = {"keyword": Keyword("x"), "phrase": "x", "source": "x", "medium": "x", "campaign": "x",
             "city": places.place(""), "region": places.place(""), "country": places.place("")}
# What a text is given for a visitor from a Yandex ad in Moscow, by the site's language: each
# text is rendered with it once as rules load.
_PLACED = {language: {"keyword": Keyword("купить кондиционер"), "phrase": "купить кондиционер", "source": "yandex",
                      "medium": "cpc", "campaign": "spring", "city": places.place(city, language),
                      "region": region_place("RU-MOW", language), "country": places.place(country, language)}
           for language, city, country in (("ru", "Москва", "Россия"), ("en", "Moscow", "Russia"))}
_COUNTRIES = {"ru": ("Россия",), "en": ("Russia",)}  # the one country whose name the service knows
_TAGS = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.DOTALL)  # a text's Jinja, for what it writes itself
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RulesError(Exception):
    """The rules directory cannot be served; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class RuleSet:
    sites: dict[str, Site]
    version: str  # a digest of the files: tells which rules answered a decision
    warnings: tuple[Problem, ...] = ()  # what serves, but likely not as meant
    kept: Kept | None = None  # these are the last good rules, kept from a directory refused at start


class Kept(NamedTuple):
    """Why a service started on the last good rules (`service.rules.lastgood`), and when those
    were kept."""

    at: float  # unix seconds
    refused: tuple[Problem, ...]  # the rules directory's problems


Sources = dict[Path, str | Problem]  # each rules file's text, or why it cannot be read


def load(directory: Path) -> RuleSet:
    return compile_rules(read(directory))


def read(directory: Path) -> Sources:
    """The rules files of `directory`, in order, for `compile_rules`."""
    if directory.is_file():
        raise RulesError([Problem(str(directory), 1, f"a file, not a rules directory: give the directory that holds "
                                                     f"it ({directory.parent}), whose files are checked together")])
    if not directory.is_dir():
        raise RulesError([Problem(str(directory), 1, "no such rules directory")])
    # Dot files are editors' locks and backups (Emacs' `.#demo.yaml`), not rules.
    files = sorted(
        p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
    )
    if not files:  # a wrong directory, or one a deploy is replacing: the last good rules go on
        raise RulesError([Problem(str(directory), 1, "no rules files (SITE.yaml) in this directory")])
    sources: Sources = {}
    for path in files:
        # A file that cannot be read is a problem like any other, never a crash: the reloader
        # only survives RulesError.
        try:
            sources[path] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            sources[path] = Problem(str(path), line, "the file is not UTF-8 text: save it as UTF-8")
        except OSError as exc:
            sources[path] = Problem(str(path), 1, f"cannot read the file: {exc.strerror or exc}")
    return sources


def compile_rules(sources: Sources) -> RuleSet:
    """The rules of `sources`, checked together: one mistake in any file refuses them all."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    sites: dict[str, Site] = {}
    defined_in: dict[str, tuple[str, int]] = {}  # site id -> the first file that defines it, and the line
    claims = Claims()
    digest = hashlib.sha256()
    for path, text in sources.items():
        if isinstance(text, Problem):
            problems.append(text)
            continue
        digest.update(path.name.encode() + b"\0" + text.encode())
        compiler = _Compiler(str(path))
        site = compiler.compile(text)
        if site is not None:
            if site.id in sites:  # named in both files: which is the copy is the user's to say
                first, line = defined_in[site.id]
                compiler.problem(("site",), f"site {site.id!r} is already defined in {first}")
                problems.append(Problem(first, line, f"site {site.id!r} is defined again in {path}"))
            for finding in claims.check(site, str(path)):
                (compiler.warn if finding.warning else compiler.problem)(finding.path, finding.message)
            sites[site.id] = site
            defined_in.setdefault(site.id, (str(path), compiler.document.line(("site",))))
        problems.extend(sorted(compiler.problems, key=lambda problem: problem.line))
        warnings.extend(sorted(compiler.warnings, key=lambda warning: warning.line))
    if problems:
        raise RulesError(problems)
    return RuleSet(sites, digest.hexdigest()[:12], tuple(warnings))


class _Compiler:
    """Compiles one file, collecting problems instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.spellings: set[str] = set()  # the keywords' words as written (`Site.spellings`)
        self.pairs: set[str] = set()  # their neighbouring nouns (`Site.pairs`)
        self.slots: dict[Slot, Slot] = {}  # each once: 10,000 rules name a few slots of the page
        self.document = Document(None)
        self.language = "ru"
        self.tried: dict[str, Exception | None] = {}  # a text's source → what rendering it raised

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(Problem(self.file, self.document.line(path), message))

    def warn(self, path: tuple[str | int, ...], message: str) -> None:
        self.warnings.append(Problem(self.file, self.document.line(path), f"warning: {message}"))

    def compile(self, text: str) -> Site | None:
        try:
            self.document = parse(text)
        except YAMLProblem as exc:
            self.problems.append(Problem(self.file, exc.line, exc.message))
            return None
        data = self.document.data
        if data is None:
            self.problems.append(Problem(self.file, 1, "the file is empty: it needs at least 'site: ...'"))
            return None
        for path, message in schema_problems(data):
            self.problem(path, message)
        if self.problems:
            return None  # the structure is off: semantic checks would only add noise
        site = self._site(data)
        return None if self.problems else site

    def _site(self, data: dict[str, Any]) -> Site:
        language = self.language = data.get("language", "ru")
        if data["site"] in RESERVED_IDS:
            self.problem(("site",), f"{data['site']!r} is the address of a telephony webhook "
                                    f"(/v1/calls/{data['site']}): choose another site id")
        self._unique(data, ("rules", "experiments", "pools"))
        rules = [self._rule(i, rule) for i, rule in enumerate(data.get("rules", []))]
        experiments = [self._experiment(i, e) for i, e in enumerate(data.get("experiments", []))]
        pools = [self._pool(i, pool) for i, pool in enumerate(data.get("pools", []))]
        self._numbers_once(data)
        texts = [s.text for r in rules for s in r.swaps]
        texts += [s.text for e in experiments for v in e.variants for s in v.swaps]
        zone = self._zone(("time_zone",), data["time_zone"]) if "time_zone" in data else None
        calls = self._calls(data.get("calls", {}), zone, "time_zone" in data)
        if pools and not calls.posted:
            self.warn(("pools",), "the pools give visitors tracking numbers, but nothing can post this site's calls: "
                                  "none is ever credited until calls.secret, or a telephony vendor's credentials, "
                                  "are set (docs/CALLS.md)")
        return Site(
            id=data["site"],
            name=data.get("name", data["site"]),
            language=language,
            origins=frozenset(data.get("origins", [])),
            phone=self._phone(("phone",), data["phone"]) if "phone" in data else None,
            places=self._places(data.get("places", {}), language),
            rules=RuleIndex(rules),
            experiments=tuple(experiments),
            pools=tuple(pools),
            uses_places=any(text.uses_places for text in texts),
            time_zone=zone or datetime.UTC,
            calls=calls,
            visits=_visits(data.get("visits", {})),
            report_token=self._credential(("reports", "token"), data.get("reports", {}).get("token")),
            read_tokens=tuple(token for index, given in enumerate(data.get("reports", {}).get("read_tokens", []))
                              if (token := self._credential(("reports", "read_tokens", index), given))),
            webhooks=self._webhooks(data.get("webhooks", [])),
            exports=self._exports(data.get("exports", {}), str(data.get("phone", ""))),
            alerts=_alerts(data.get("alerts", {})),
            spellings=frozenset(self.spellings),
            pairs=frozenset(self.pairs),
        )

    def _unique(self, data: dict[str, Any], sections: tuple[str, ...]) -> None:
        for section in sections:
            seen: set[str] = set()
            for index, item in enumerate(data.get(section, [])):
                if item["id"] in seen:
                    self.problem((section, index, "id"), f"duplicate id {item['id']!r} in {section}")
                seen.add(item["id"])

    def _rule(self, index: int, data: dict[str, Any]) -> Rule:
        path = ("rules", index)
        return Rule(
            id=data["id"],
            order=index,
            priority=data.get("priority", 0),
            pages=_pages(data),
            when=self._when((*path, "when"), data.get("when", {})),
            swaps=self._swaps((*path, "swap"), data["swap"]),
        )

    def _experiment(self, index: int, data: dict[str, Any]) -> Experiment:
        path = ("experiments", index)
        variants = []
        ids: set[str] = set()
        for i, variant in enumerate(data["variants"]):
            if variant["id"] in ids:
                self.problem((*path, "variants", i, "id"), f"duplicate variant {variant['id']!r}")
            ids.add(variant["id"])
            swaps = self._swaps((*path, "variants", i, "swap"), variant.get("swap", []))
            variants.append(Variant(variant["id"], float(variant["weight"]), swaps))
        if "control" not in ids:
            self.problem((*path, "variants"), "an experiment needs a variant with id 'control'")
        if any(v["id"] == "control" and v.get("swap") for v in data["variants"]):
            self.problem((*path, "variants"), "'control' shows the page unchanged: no swap")
        total = sum(variant.weight for variant in variants)
        if abs(total - 100) > 1e-9:  # the sum of the weights as written: 100.0000001, never a rounded "100"
            written = sum((Decimal(str(variant.weight)) for variant in variants), Decimal(0))
            self.problem((*path, "variants"), f"variant weights add up to {written.normalize():f}, not 100")
        bounds, running = [], 0.0
        for variant in variants:
            running += variant.weight
            bounds.append(round(running * BUCKETS / 100))
        winner = next((variant for variant in variants if variant.id == data.get("winner")), None)
        if "winner" in data and winner is None:
            self.problem((*path, "winner"), f"winner {data['winner']!r} is none of the variants: "
                                            f"{', '.join(variant.id for variant in variants)}")
        return Experiment(
            id=data["id"],
            salt=data.get("salt", data["id"]),
            pages=_pages(data),
            when=self._when((*path, "when"), data.get("when", {})),
            variants=tuple(variants),
            bounds=tuple(bounds),
            expected_visitors=data.get("expected_visitors", EXPECTED_VISITORS),
            winner=winner,
        )

    def _pool(self, index: int, data: dict[str, Any]) -> Pool:
        path = ("pools", index)
        if ("numbers" in data) == ("static" in data):
            self.problem(path, f"pool {data['id']!r} needs either 'numbers' or 'static'")
        if "overflow" in data and "static" in data:
            self.problem((*path, "overflow"), "a static pool has no overflow number")
        hold = data.get("hold", "15m")
        seconds = _seconds(hold)
        if seconds < 1:  # the schema refuses 0 but not "0m"
            self.problem((*path, "hold"), f"hold {hold!r} is too short: a number stays with a visitor at least 1s")
        return Pool(
            id=data["id"],
            pages=_pages(data),
            when=self._when((*path, "when"), data.get("when", {})),
            numbers=tuple(
                self._phone((*path, "numbers", i), number)
                for i, number in enumerate(data.get("numbers", []))
            ),
            hold=seconds,
            overflow=self._phone((*path, "overflow"), data["overflow"]) if "overflow" in data else None,
            static=self._phone((*path, "static"), data["static"]) if "static" in data else None,
        )

    def _numbers_once(self, data: dict[str, Any]) -> None:
        """A tracking number in two pools, or also used as a fixed number, would make its
        calls ambiguous: a call to it is credited to whoever holds its lease."""
        owner: dict[str, str] = {}
        pools = data.get("pools", [])
        for index, pool in enumerate(pools):
            for i, number in enumerate(pool.get("numbers", [])):
                e164 = phones.e164(number)
                if e164 and e164 in owner:
                    self.problem(("pools", index, "numbers", i),
                                 f"{number} is already in pool {owner[e164]!r}")
                if e164:
                    owner[e164] = pool["id"]
        page_phone = phones.e164(data.get("phone", ""))
        if page_phone:  # the snippet swaps digits in place: a number of another length would not fit
            length = len(phones.formats(page_phone)["digits"])
            for index, pool in enumerate(pools):
                for i, number in enumerate(pool.get("numbers", [])):
                    e164 = phones.e164(number)
                    if e164 and len(phones.formats(e164)["digits"]) != length:
                        self.problem(("pools", index, "numbers", i),
                                     f"{number} has not the {length} national digits of the page's phone")
        fixed: list[tuple[tuple[str | int, ...], str, str]] = [(("phone",), data.get("phone", ""), "the page's phone")]
        for index, pool in enumerate(pools):
            fixed.append((("pools", index, "overflow"), pool.get("overflow", ""), "an overflow number"))
            fixed.append((("pools", index, "static"), pool.get("static", ""), "a static number"))
        for path, number, role in fixed:
            e164 = phones.e164(number) if number else None
            if e164 in owner:
                self.problem(path, f"{number} is a tracking number of pool {owner[e164]!r}; "
                                   f"it cannot also be {role}")

    def _when(self, path: tuple[str | int, ...], data: dict[str, Any]) -> When:
        exact = bool(data.get("exact", False))
        keywords = [keyword_terms(keyword, exact) for keyword in data.get("keywords", [])]
        for terms in keywords:
            self.spellings.update(terms.words)
            self.pairs.update(terms.pairs)
        for i, (keyword, terms) in enumerate(zip(data.get("keywords", []), keywords, strict=True)):
            if not terms.variants:  # dropped silently, it would leave a rule that matches every phrase
                self.problem((*path, "keywords", i), f"keyword {keyword!r} has no words to match")
            elif unbalanced := _unbalanced(keyword):  # read as no operator, it would match as broad
                self.problem((*path, "keywords", i), f"keyword {keyword!r} {unbalanced}")
            elif '"' not in keyword and (*path, "keywords", i) in self.document.double_quoted:
                self.warn((*path, "keywords", i), f"YAML takes the double quotes of {keyword!r} for its own, so it "
                          f"matches in broad match; for Direct's quotes write '\"{keyword}\"' (the whole in single "
                          f"quotes), else write it without quotes")
        regex = None
        if "phrase_regex" in data:
            try:
                regex = Linear(data["phrase_regex"], unicode_classes=True)
            except PatternError as exc:
                self.problem((*path, "phrase_regex"), f"invalid regular expression: {exc}")
            if regex is not None and (unmatched := _unmatched_letters(data["phrase_regex"])):
                pattern = "".join(_normalised_letter(c) if i in unmatched else c
                                  for i, c in enumerate(data["phrase_regex"]))
                self.problem((*path, "phrase_regex"), f"phrase_regex {data['phrase_regex']!r} looks for capital "
                             f"letters or «ё», which no phrase has: phrases are matched in lower case, with «е» "
                             f"for «ё»; write {pattern!r}")
        for i, country in enumerate(_listed(data.get("country"))):
            if pycountry.countries.get(alpha_2=country) is None:
                self.problem((*path, "country", i), f"unknown country code {country!r}")
        regions = []
        for i, region in enumerate(_listed(data.get("region"))):
            code = region_code(region) or region.upper()
            if pycountry.subdivisions.get(code=code) is None:  # type: ignore[no-untyped-call]
                self.problem((*path, "region", i), f"unknown region {region!r}: write its ISO 3166-2 code "
                                                   "(RU-KAM) or its name in Russian or English (Камчатский край)")
            regions.append(code)
        # Russia's cities are known; a rule limited to other countries names cities no table here has.
        elsewhere = any(country != "RU" for country in _listed(data.get("country"))) or any(
            not code.startswith("RU-") for code in regions)
        for i, city in enumerate(_listed(data.get("city"))):
            if elsewhere or cities.names(city) is not None:
                continue
            if region_code(city):
                self.problem((*path, "city", i), f"no Russian city is called {city!r}: it is a region, region: {city}")
            else:
                self.problem((*path, "city", i), f"no Russian city is called {city!r}{_suggested(cities.meant(city))} "
                             "(a city elsewhere: name its country in the same conditions, country: [KZ])")
        named = [city_key(english_city(city_meant(city))) for city in _listed(data.get("city"))]
        return When(
            keywords=tuple(words for terms in keywords if not _guarded(terms) for words in terms.variants),
            guarded=tuple(terms for terms in keywords if _guarded(terms) and terms.variants),
            exact=exact,
            phrase_regex=regex,
            sources=_folded(data.get("source"), unicode_host),
            media=_folded(data.get("medium")),
            campaigns=_folded(data.get("campaign")),
            countries=_folded(data.get("country")),
            regions=_folded(regions) if "region" in data else None,
            cities=_folded(named) if "city" in data else None,
            devices=_folded(data.get("device")),
        )

    def _swaps(self, path: tuple[str | int, ...], data: list[dict[str, Any]]) -> tuple[Swap, ...]:
        swaps = []
        for i, swap in enumerate(data):
            try:
                cssselect.parse(swap["selector"])
            except cssselect.SelectorError as exc:
                self.problem((*path, i, "selector"), f"bad CSS selector {swap['selector']!r}: {exc}")
            targets = [target for target in TARGETS if target in swap]
            if not targets:
                self.problem((*path, i), f"swap of {swap['selector']!r} sets nothing: give it a text, src, srcset, "
                                         "href or show")
            for target in targets:
                slot = (swap["selector"], target)
                slot = self.slots.setdefault(slot, slot)
                value = swap[target]
                if target == "show":
                    swaps.append(Swap(slot, compile_text("show" if value else "hide")))
                    continue
                text = self._text((*path, i, target), value, CHECKS.get(target))
                if target in CHECKS and text.constant and text.render({}) is None:
                    self.problem((*path, i, target), f"{value!r} is not an http(s) or relative address (a srcset: "
                                                     "each one with at most a 1x or a width)")
                swaps.append(Swap(slot, text))
        return tuple(swaps)

    def _text(self, path: tuple[str | int, ...], source: str, allowed: Callable[[str], bool] | None = None) -> Text:
        try:
            text = compile_text(source, allowed)
        except TemplateError as exc:
            self.problems.append(Problem(self.file, self.document.text_line(path, exc.lineno), exc.message))
            return compile_text("")
        if not (text.constant or self._renders(path, text)):
            return text
        if text.uses_places and (shown := text.render(_UNPLACED)) is not None and not shown.strip():
            self.warn(path, "this text is only a place name, so it is empty, and the element blank, for visitors "
                            "whose city GeoIP does not know (mobile networks often): give a fallback, "
                            "\"{{ city.in or 'по всей России' }}\"")
        written = len(" ".join(_TAGS.sub("", source).split()))  # its own words, without what is filled in
        if written > MAX_OUTPUT:
            self.warn(path, f"this text is {written:,} characters long: visitors see its first {MAX_OUTPUT:,}")
        return text

    def _renders(self, path: tuple[str | int, ...], text: Text) -> bool:
        """Whether the text renders with a visitor's full context; if not (`{{ 'Окна ' + city }}`), it
        would fail for every visitor, its swap left out: refused. Tried once per source, as rules
        repeat their texts."""
        if text.source not in self.tried:
            self.tried[text.source] = text.failure(_PLACED[self.language])
        failure = self.tried[text.source]
        if failure is None:
            return True
        said = str(failure)
        hint = ("; a place is no text: write {{ city.name }}" if "Place" in said
                else "; a number in quotes? write it without them: truncate(30)" if "'str' and 'int'" in said else "")
        self.problem(path, f"this text fails for every visitor, so its swap would never show: "
                           f"{type(failure).__name__}: {said}{hint}")
        return False

    def _places(self, data: dict[str, dict[str, str]], language: str) -> dict[str, places.Place]:
        for name, forms in data.items():
            for given in PREPOSITIONS.keys() & forms.keys():
                missing = [key for key, case in PREPOSITIONS.items() if key not in forms and case not in forms]
                if missing:
                    declined = places.place(forms.get("nomn") or name, language)
                    reads = ", ".join(f"{key!r}{' reads' if i == 0 else ''} {declined[key]!r}"
                                      for i, key in enumerate(missing))
                    self.warn(("places", name, given), f"places.{name} gives {given!r} but not "
                              f"{' or '.join(map(repr, missing))}: those still decline the name ({reads}); "
                              "give them too")
                    break
            if (renamed := renamed_region(name)) and renamed != name:
                self.warn(("places", name), f"GeoIP's region name {name!r} is now given as {renamed!r}: "
                                            "name the correction so, or it never applies")
            else:
                self._place_named(name, language)
        return {name: _place(name, forms, language) for name, forms in data.items()}

    def _place_named(self, name: str, language: str) -> None:
        """A correction applies where decisions give the place that name, letter for letter: one of
        another spelling, or of no place, would never apply."""
        city = cities.names(name)
        region = region_place(region_code(name), language)
        given = (city[0] if language == "ru" and city[0] else city[1]) if city else region.name if region else None
        if given == name or name in _COUNTRIES[language]:
            return
        if given is not None:
            self.problem(("places", name), f"places.{name}: the service gives this place as {given!r}: "
                                           "name the correction so, or it never applies")
        elif meant := cities.meant(name):
            self.problem(("places", name), f"places.{name}: no Russian city is called {name!r}{_suggested(meant)}")
        else:
            self.warn(("places", name), f"places.{name}: no Russian city or region is called {name!r}: the "
                                        "correction applies only where GeoIP gives a place that name")

    def _zone(self, path: tuple[str, ...], name: Any) -> ZoneInfo | None:
        try:
            return ZoneInfo(name)
        except (ValueError, ZoneInfoNotFoundError):
            self.problem(path, f"unknown time zone {name!r} (e.g. Europe/Moscow)")
            return None

    def _calls(self, data: dict[str, Any], site_zone: ZoneInfo | None, site_named: bool) -> CallSettings:
        """`site_zone`: the site's `time_zone` (`site_named`: the rules name one), which the PBX's
        times are in unless `calls.time_zone` says."""
        secret = self._credential(("calls", "secret"), data.get("secret"))
        zone = self._zone(("calls", "time_zone"), data["time_zone"]) if "time_zone" in data else site_zone
        if "zadarma_secret" in data and "time_zone" not in data and not site_named:  # its call_start has no zone
            self.problem(("calls", "zadarma_secret"), "Zadarma writes call times in your account's time zone: "
                                                      "name it in the site's time_zone (e.g. Europe/Moscow)")
        if ("mango_api_key" in data) != ("mango_api_salt" in data):
            self.problem(("calls",), "Mango Office signs with both its key and its salt: "
                                     "give mango_api_key and mango_api_salt")
        return CallSettings(
            secret=secret.encode() if secret else None,
            qualify_after=_seconds(data.get("qualify_after", "30s")),
            unique_within=_seconds(data.get("unique_within", "7d")),
            time_zone=zone,
            **{name: self._credential(("calls", name), data.get(name)) for name in VENDOR_CREDENTIALS},
        )

    def _credential(self, path: tuple[str | int, ...], value: str | None) -> str | None:
        """A credential the site may go without, worth a warning when it names an environment
        variable that is not set: what needs it is refused, and the file does name one."""
        secret = self._read(path, value)
        if value is not None and secret is None:
            if path[:2] == ("reports", "read_tokens"):
                refused = "it opens nothing"
            elif path[0] == "reports":
                refused = "the dashboard and reports refuse every token"
            else:
                refused = "the webhooks that need it are refused"
            self.warn(path, f"{value} is not set in the environment: {refused}")
        return secret

    def _read(self, path: tuple[str | int, ...], value: str | None) -> str | None:
        """`_secret(value)`, held to the least length the schema asks of the credential at `path`
        written out: the schema cannot see what a `${NAME}` holds, and a short token read from the
        environment is as guessable as one written in the file. The problem names the variable,
        never its value, as a short literal's is not echoed (`ruleschema._described`)."""
        secret = _secret(value)
        reference = ENV_REFERENCE.fullmatch(value or "")
        least = least_length(path)
        if reference and secret is not None and least is not None and len(secret) < least:
            self.problem(path, f"{dotted(path)}: the environment variable {reference[1]} holds fewer than {least} "
                               f"characters: a credential needs at least {least}, written here or in the "
                               "environment, or it can be guessed")
        elif secret and least and least >= 16 and repetitive(secret):  # a vendor's short keys are theirs
            where = f"the environment variable {reference[1]}" if reference else "it"
            kinds = "one character" if len(set(secret)) == 1 else f"only {len(set(secret))} different characters"
            self.problem(path, f"{dotted(path)}: {where} has {kinds}, and can be guessed: make one with "
                               "`openssl rand -hex 16`")
        return secret

    def _webhooks(self, data: list[dict[str, Any]]) -> tuple[Webhook, ...]:
        """The endpoints, each with a queue of its own: two that shared one would each take what the
        other's kinds leave, and acknowledge it unsent."""
        hooks: list[Webhook] = []
        queues: dict[str, int] = {}  # queue -> the first endpoint's index
        for index, item in enumerate(data):
            hooks.append(hook := self._webhook(index, item))
            other = queues.setdefault(hook.group, index)
            if other != index and hook.id is not None:
                self.problem(("webhooks", index, "id"), f"duplicate id {hook.id!r} in webhooks")
            elif other != index:
                self.problem(("webhooks", index, "url"), (
                    f"the webhook on line {self.document.line(('webhooks', other, 'url'))} has this url too: "
                    "the two would share one queue, and what one takes the other never gets; give each an id "
                    "(id: calls, id: forms)"))
        return tuple(hooks)

    def _webhook(self, index: int, data: dict[str, Any]) -> Webhook:
        secret = self._read(("webhooks", index, "secret"), data["secret"])
        if not secret:  # ${ENV_VAR} that is not set
            self.problem(("webhooks", index, "secret"), f"{data['secret']} is not set: every delivery is signed")
        if (data.get("format") == "telegram") != ("chat" in data):
            self.problem(("webhooks", index), "a Telegram webhook needs its chat, and only it has one: "
                                              "format: telegram, chat: \"-100…\"")
        self._destination(("webhooks", index, "url"), data["url"])
        return Webhook(data["url"], secret or "", frozenset(data["kinds"]) if "kinds" in data else None,
                       data.get("format", "json"), data.get("chat"), data.get("id"))

    def _destination(self, path: tuple[str | int, ...], url: str) -> None:
        """A webhook's url, written as no address it may not post to (deliveries check the name's)."""
        try:
            host = urlsplit(url).hostname or ""
        except ValueError as exc:  # "http://[::1/"
            self.problem(path, f"not a url deliveries can post to: {exc}")
            return
        if (address := _literal_address(host)) and refused_address(address):
            self.problem(path, f"{address} is a link-local address, where cloud metadata answers: "
                               "no webhook posts there (a private address may be)")

    def _exports(self, data: dict[str, Any], phone: str) -> Exports:
        metrica, google = data.get("metrica"), data.get("google_ads")
        if google and "currency" not in data and (self.language != "ru" or not phone.lstrip().startswith(("+7", "8"))):
            self.warn(("exports",), "no currency: Google Ads gets conversion values in roubles (RUB); a site "
                                    "that sells in another says so (currency: USD)")

        def credential(path: tuple[str | int, ...], value: str) -> str:
            secret = self._read(("exports", *path), value)
            if not secret:
                self.problem(("exports", *path), f"{value} is not set: the upload needs it")
            return secret or ""

        return Exports(
            kinds=frozenset(data.get("kinds", DEFAULT_EXPORTS.kinds)), value=float(data.get("value", 0)),
            currency=data.get("currency", "RUB"),
            metrica=Metrica(int(metrica["counter"]), credential(("metrica", "token"), metrica["token"]))
            if metrica else None,
            google_ads=GoogleAds(
                customer=str(google["customer"]).replace("-", ""), actions=dict(google["actions"]),
                **{name: credential(("google_ads", name), google[name])
                   for name in ("client_id", "client_secret", "refresh_token")},
                developer_token=self._read(("exports", "google_ads", "developer_token"), google.get("developer_token")),
                login_customer=str(google["login_customer"]).replace("-", "") if "login_customer" in google else None,
            ) if google else None,
        )

    def _phone(self, path: tuple[str | int, ...], number: str) -> str:
        e164 = phones.e164(number)
        if e164 is None:
            self.problem(path, f"invalid phone number {number!r} (use international format: +7 ...)")
            return ""
        return e164


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _alerts(data: dict[str, Any]) -> AlertSettings:
    opens, _, closes = data.get("working_hours", "09:00-21:00").partition("-")
    return AlertSettings(
        no_calls_for=_seconds(data["no_calls_for"]) if "no_calls_for" in data else 0,
        opens=_minutes(opens), closes=_minutes(closes),
        days=frozenset(WEEKDAYS.index(day) for day in data.get("working_days", WEEKDAYS[:5])),
    )


def _minutes(clock: str) -> int:
    hours, _, minutes = clock.partition(":")
    return int(hours) * 60 + int(minutes)


def _visits(data: dict[str, Any]) -> VisitSettings:
    return VisitSettings(
        timeout=_seconds(data.get("timeout", "30m")),
        lookback=_seconds(data.get("lookback", "90d")),
        last_non_direct=data.get("attribution", "last_non_direct") == "last_non_direct",
    )


# Site ids the service's own addresses take: /v1/calls/SITE is a site's call log.
RESERVED_IDS = frozenset({"twilio", "mango", "zadarma", "uis", "telphin"})
DEFAULT_EXPORTS = Exports()


def _secret(value: str | None) -> str | None:
    """A literal secret, or `${NAME}`: the environment variable NAME, read when rules load."""
    if value is None:
        return None
    reference = ENV_REFERENCE.fullmatch(value)
    return (os.environ.get(reference[1]) or None) if reference else value


def _literal_address(host: str) -> str | None:
    """The IP address a url's host writes, in any form the resolver reads as one (2852039166 and
    0xa9.0xfe.0xa9.0xfe are 169.254.169.254), or None for a name."""
    try:
        return str(ipaddress.ip_address(host.partition("%")[0]))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def _seconds(value: str | int) -> int:
    return value if isinstance(value, int) else int(value[:-1]) * DURATION_UNITS[value[-1]]


def _place(name: str, forms: Mapping[str, str], language: str) -> places.Place:
    """The site's own forms of `name`. A new nominative renames the place: `{{ city }}` prints
    it, and the forms not given are declined from it («из Петербурга»); a region's come from
    its table («из Камчатского края»)."""
    known = None if "nomn" in forms else region_place(region_code(name), language)
    return places.with_overrides(known or places.place(forms.get("nomn") or name, language), forms)


def _pages(data: dict[str, Any]) -> Pages:
    return Pages.compile(_listed(data.get("page")))


def _listed(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _normalised_letter(letter: str) -> str:
    """A letter as phrases are normalised before a phrase_regex looks at them."""
    return letter.lower().replace("ё", "е")


def _unmatched_letters(pattern: str) -> list[int]:
    """Where a pattern's literal letters are capitals or «ё», which a normalised phrase never has:
    escapes (`\\W`, `\\p{Lu}`) and group names are syntax, not letters; `(?i)` makes capitals match."""
    found: list[int] = []
    caseless = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            kind = pattern[i + 1:i + 2]
            if kind == "Q":  # literal up to \E: its letters are looked for as written
                end = pattern.find("\\E", i)
                end = len(pattern) if end < 0 else end
                found += [j for j in range(i + 2, end) if _normalised_letter(pattern[j]) != pattern[j]]
                i = end + 2
                continue
            braced = kind in ("p", "P", "x") and pattern[i + 2:i + 3] == "{"
            i = pattern.index("}", i) + 1 if braced and "}" in pattern[i:] else i + (3 if kind in "pP" else 2)
            continue
        if pattern.startswith("(?", i):
            flags = re.match(r"\(\?(?:P?<[^>]*>|([a-zA-Z-]*)[:)])", pattern[i:])
            if flags is not None:
                caseless = caseless or "i" in (flags[1] or "").partition("-")[0]
                i += len(flags[0])
                continue
        if _normalised_letter(char) != char and not (caseless and char not in "ёЁ"):
            found.append(i)
        i += 1
    return found


def _suggested(name: str | None) -> str:
    return f"; did you mean {name!r}?" if name else ""


def _unbalanced(keyword: str) -> str | None:
    """What is wrong with a keyword's Direct quotes or brackets, None if nothing."""
    if keyword.count('"') % 2:
        return "has a '\"' that is not closed: Direct's quotes go around the keyword's words, \"окна пвх\""
    depth = 0
    for char in keyword:
        if char in "[]":
            depth += 1 if char == "[" else -1
            if depth < 0:
                return "has a ']' that no '[' opens: Direct's brackets go around words, [москва окна]"
            if depth > 1:
                return "has a '[' inside another: Direct's brackets do not nest, [москва окна]"
    return "has a '[' that is not closed: Direct's brackets go around words, [москва окна]" if depth else None


def _guarded(terms: KeywordTerms) -> bool:
    """Whether a keyword asks more of a phrase than its words: minus words, Direct's operators."""
    return bool(terms.minus) or terms.narrowing is not None


def _folded(value: str | list[str] | None, canonical: Callable[[str], str] = str) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(canonical(v.casefold()) for v in _listed(value))

"""`swapline rules check`: every mistake a marketer makes in a rules file is refused with
the file, the exact line and a message that names the mistake.

Each case is a small edit of a copy of `rules/demo.yaml`; the line a problem must point at
is found in the edited file, never written down as a number.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from service.rules.rulefiles import Problem, RulesError, load
from tests.conftest import DEMO_RULES

DEMO = DEMO_RULES / "demo.yaml"
DEMO_TEXT = DEMO.read_text(encoding="utf-8")
LEAD = '"Привезём и установим {{ city.in }} за один день"'  # the .hero-lead text


class Mistake(NamedTuple):
    old: str  # text of the demo file, found exactly once
    new: str  # what the marketer wrote instead
    message: tuple[str, ...]  # fragments the problem's message must contain
    where: str | None = None  # a fragment of the problem's line; None: the line the edit starts on


def edited(old: str, new: str) -> str:
    assert DEMO_TEXT.count(old) == 1, f"{old!r} must occur once in the demo"
    return DEMO_TEXT.replace(old, new)


def line_of(text: str, fragment: str) -> int:
    lines = [number for number, line in enumerate(text.split("\n"), 1) if fragment in line]
    assert len(lines) == 1, f"{fragment!r} is on lines {lines}, expected exactly one"
    return lines[0]


def problems_in(directory: Path) -> list[Problem]:
    with pytest.raises(RulesError) as refused:
        load(directory)
    assert refused.value.problems, "a refusal must say why"
    return refused.value.problems


def write(directory: Path, text: str, name: str = "demo.yaml") -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


MISTAKES = {
    # unknown keys, with a suggestion
    "unknown key, did you mean": Mistake(
        "    priority: 20\n", "    priorty: 20\n", ("unknown key 'priorty'", "did you mean 'priority'?")
    ),
    "unknown condition in when": Mistake(
        "      country: RU", "      contry: RU", ("unknown key 'contry'", "did you mean 'country'?")
    ),
    # CSS
    "bad CSS selector": Mistake(
        "      - selector: .hero-lead", "      - selector: .hero-lead[data", ("bad CSS selector", ".hero-lead[data")
    ),
    # images, links and visibility
    "a link to a script": Mistake(
        "      - selector: .hero-lead\n", "      - selector: .hero-lead\n        href: \"javascript:alert(1)\"\n",
        ("'javascript:alert(1)' is not an http(s) or relative address",), where="javascript:",
    ),
    "an image from a data: URL": Mistake(
        "      - selector: .hero-lead\n", "      - selector: .hero-lead\n        src: \"data:image/png;base64,AAAA\"\n",
        ("'data:image/png;base64,AAAA' is not an http(s) or relative address",), where="data:",
    ),
    "a srcset with a bad descriptor": Mistake(
        "      - selector: .hero-lead\n", "      - selector: .hero-lead\n        srcset: /a.jpg 1x, /b.jpg 2y\n",
        ("is not an http(s) or relative address (a srcset: each one with at most a 1x or a width)",), where="2y",
    ),
    "a swap that sets nothing": Mistake(
        "      - selector: .hero-lead\n        text: " + LEAD + "\n", "      - selector: .hero-lead\n",
        ("swap of '.hero-lead' sets nothing: give it a text, src, srcset, href or show",),
    ),
    "show that is not yes or no": Mistake(
        "      - selector: .hero-lead\n", "      - selector: .hero-lead\n        show: sometimes\n",
        ("rules[0].swap[1].show", "boolean"), where="sometimes",
    ),
    # experiments
    "a winner that is no variant": Mistake(
        "    page: [/, /demo]\n    variants:", "    page: [/, /demo]\n    winner: install-today\n    variants:",
        ("winner 'install-today' is none of the variants: control, install-tomorrow",), where="winner:"
    ),
    "weights do not add up to 100": Mistake(
        "weight: 34", "weight: 35", ("weights add up to 101, not 100",), where="variants:"
    ),
    "weights a hair off 100": Mistake(
        "weight: 34", "weight: 34.0000001", ("weights add up to 100.0000001, not 100",), where="variants:"
    ),
    "no control variant": Mistake(
        "      - id: control", "      - id: baseline", ("variant with id 'control'",), where="variants:"
    ),
    "control with a swap": Mistake(
        "        weight: 34\n",
        '        weight: 34\n        swap: [{selector: "#cta", text: Позвонить}]\n',
        ("'control' shows the page unchanged",),
        where="variants:",
    ),
    "an expected sample too small to tune the sequential test": Mistake(
        "  - id: cta-wording\n", "  - id: cta-wording\n    expected_visitors: 10\n",
        ("10 is less than the minimum of 100",), where="expected_visitors",
    ),
    "a site id a webhook's address takes": Mistake(
        "site: demo\n", "site: twilio\n", ("'twilio' is the address of a telephony webhook",)
    ),
    "a webhook whose secret is not in the environment": Mistake(
        "reports:\n",
        "webhooks:\n  - {url: \"https://crm.example/hook\", secret: \"${NO_SUCH_SECRET_SET}\"}\nreports:\n",
        ("${NO_SUCH_SECRET_SET} is not set: every delivery is signed",), where="NO_SUCH_SECRET_SET",
    ),
    "a webhook at cloud metadata": Mistake(
        "reports:\n",
        "webhooks:\n  - {url: \"http://169.254.169.254/latest/meta-data/\", secret: crm-secret-00000001}\nreports:\n",
        ("169.254.169.254 is a link-local address, where cloud metadata answers: no webhook posts there",),
        where="169.254.169.254",
    ),
    "a webhook at cloud metadata written as one number": Mistake(
        "reports:\n", "webhooks:\n  - {url: \"http://2852039166/\", secret: crm-secret-00000001}\nreports:\n",
        ("169.254.169.254 is a link-local address",), where="2852039166",
    ),
    "a webhook at an IPv6 link-local address": Mistake(
        "reports:\n", "webhooks:\n  - {url: \"http://[fe80::1%25eth0]:8080/hook\", secret: crm-secret-00000001}\n"
                      "reports:\n",
        ("fe80::1 is a link-local address",), where="fe80",
    ),
    "a webhook url whose IPv6 address is not closed": Mistake(
        "reports:\n", "webhooks:\n  - {url: \"http://[::1/hook\", secret: crm-secret-00000001}\nreports:\n",
        ("not a url deliveries can post to: Invalid IPv6 URL",), where="[::1",
    ),
    "an upload whose token is not in the environment": Mistake(
        "reports:\n", "exports:\n  metrica: {counter: 1, token: \"${NO_METRIKA_TOKEN_SET}\"}\nreports:\n",
        ("${NO_METRIKA_TOKEN_SET} is not set: the upload needs it",), where="NO_METRIKA_TOKEN_SET",
    ),
    "unknown time zone": Mistake(
        "time_zone: Europe/Moscow", "time_zone: Europe/Moskva", ("unknown time zone 'Europe/Moskva'",)
    ),
    "Zadarma without a time zone": Mistake(
        "time_zone: Europe/Moscow  #", "#", ("Zadarma writes call times in your account's time zone",),
        where="zadarma_secret",
    ),
    "Mango without its salt": Mistake(
        "  mango_api_salt: demo-mango-salt-change-me\n", "", ("give mango_api_key and mango_api_salt",),
        where="calls:",
    ),
    "duplicate variant id": Mistake(
        "      - id: free-visit", "      - id: install-tomorrow", ("duplicate variant 'install-tomorrow'",)
    ),
    # ids
    "duplicate rule id": Mistake("  - id: hero-repair", "  - id: hero-city", ("duplicate id 'hero-city' in rules",)),
    # templates
    "template syntax error": Mistake(
        LEAD, '"Привезём и установим {{ city.in } за один день"', ("template syntax error",)
    ),
    "template error on the 2nd line of a literal block": Mistake(
        LEAD,
        "|\n          Привезём и установим {{ city.in }}\n          за один день {% if %}",
        ("template syntax error",),
        where="за один день {% if %}",
    ),
    "template error after an empty line of a folded block": Mistake(
        LEAD,
        ">\n          Привезём и установим\n          {{ city.in }}\n\n          за один день {{ town }}",
        ("unknown name 'town'",),
        where="за один день {{ town }}",
    ),
    "unknown place form": Mistake(
        "Ремонт кондиционеров {{ city.in }}", "Ремонт кондиционеров {{ city.inn }}", ("city has no form 'inn'",)
    ),
    "a filter's typo": Mistake(
        "Ремонт кондиционеров {{ city.in }}", "{{ phrase|capitalise }}",
        ("unknown filter 'capitalise'; did you mean 'capitalize'? Filters a text may use: capitalize, d, default",),
    ),
    "a place added to a text, which fails for every visitor": Mistake(
        LEAD, "\"{{ 'Окна ' + city }}\"",
        ("this text fails for every visitor, so its swap would never show", "a place is no text"),
    ),
    "a number in quotes, which fails for every visitor": Mistake(
        LEAD, "\"{{ phrase|truncate('30') }}\"",
        ("this text fails for every visitor", "TypeError", "a number in quotes?"),
    ),
    "keyword() argument typo": Mistake(
        "max=40", "maxlen=40", ("keyword() has no argument 'maxlen'", "did you mean 'max'?")
    ),
    "keyword() max is not a number": Mistake("max=40", "max='40'", ("keyword(max=...)", "'40'")),
    "keyword() max below zero": Mistake("max=40", "max=-5", ("keyword(max=...) is a number of characters, not -5",)),
    "keyword without its brackets": Mistake(
        "Ремонт кондиционеров {{ city.in }}", "Ремонт {{ keyword }}", ("keyword is a function",)
    ),
    "unquoted template": Mistake(
        "text: Установим завтра", "text: {{ city.in }}", ("is not of type 'string'", "must be in quotes")
    ),
    # conditions
    "unknown region code": Mistake(
        "when: { region: RU-MOW }", "when: { region: RU-XXX }", ("unknown region 'RU-XXX'",)
    ),
    "badly written region in a list": Mistake(
        "region: [RU-SPE, RU-LEN]", "region: [RU-SPE, spb]", ("unknown region 'spb'",)
    ),
    "a city nobody is in": Mistake(
        "      country: RU", "      city: [Москва, Масква]",
        ("no Russian city is called 'Масква'; did you mean 'Москва'?",),
    ),
    "a misspelt city in a list": Mistake(
        "      country: RU", "      city:\n        - Москва\n        - Нижний Новгрод",
        ("no Russian city is called 'Нижний Новгрод'; did you mean 'Нижний Новгород'?",), where="Нижний Новгрод",
    ),
    "a city of a pool nobody is in": Mistake(
        "when: { region: RU-MOW }", "when: { city: Санкт-Петербурх }",
        ("no Russian city is called 'Санкт-Петербурх'; did you mean 'Санкт-Петербург'?",),
    ),
    "a region for a city": Mistake(
        "      country: RU", "      city: Чувашия",
        ("no Russian city is called 'Чувашия': it is a region, region: Чувашия",),
    ),
    "a city elsewhere without its country": Mistake(
        "      country: RU", "      city: Минск", ("no Russian city is called 'Минск' (a city elsewhere: name its "
                                                  "country in the same conditions, country: [KZ])",)
    ),
    "a places correction of a misspelt city": Mistake(
        "  Камчатский край:\n", "  Санкт-Питербург: {nomn: Петербург}\n  Камчатский край:\n",
        ("places.Санкт-Питербург: no Russian city is called 'Санкт-Питербург'; did you mean 'Санкт-Петербург'?",),
    ),
    "a places correction of a city by its nickname": Mistake(
        "  Камчатский край:\n", "  Питер: {nomn: Петербург}\n  Камчатский край:\n",
        ("places.Питер: the service gives this place as 'Санкт-Петербург': name the correction so",),
    ),
    "a places correction of a region by its short name": Mistake(
        "  Камчатский край:\n", "  Камчатка:\n",
        ("places.Камчатка: the service gives this place as 'Камчатский край'",),
    ),
    "unknown country": Mistake("      country: RU", "      country: XX", ("unknown country code 'XX'",)),
    "unquoted NO is a boolean": Mistake(
        "      country: RU", "      country: [RU, NO]", ("False is not of type 'string'", "in quotes")
    ),
    "bad regex": Mistake(
        "      country: RU\n",
        '      country: RU\n      phrase_regex: "купить (сплит|кондиционер"\n',
        ("invalid regular expression", "missing )"),
        where="phrase_regex",
    ),
    "keyword with no words": Mistake(
        "keywords: [ремонт кондиционера]", 'keywords: [ремонт кондиционера, "?!"]', ("keyword '?!' has no words",)
    ),
    "a Direct quote not closed": Mistake(
        "keywords: [ремонт кондиционера]", "keywords: [ремонт кондиционера, '\"окна veka']",
        ("keyword '\"окна veka' has a '\"' that is not closed",),
    ),
    "a Direct bracket not closed": Mistake(
        "keywords: [ремонт кондиционера]", 'keywords: [ремонт кондиционера, "[окна под ключ"]',
        ("keyword '[окна под ключ' has a '[' that is not closed",),
    ),
    "Direct brackets in brackets": Mistake(
        "keywords: [ремонт кондиционера]", 'keywords: ["[окна [под] ключ]"]', ("Direct's brackets do not nest",),
    ),
    "keywords not a list": Mistake(
        "keywords: [ремонт кондиционера]", "keywords: ремонт кондиционера", ("not of type 'array'", "write a list")
    ),
    "unknown device": Mistake(
        "      country: RU", "      device: phone", ("'phone' is not one of ['mobile', 'tablet', 'desktop']",)
    ),
    "page without a slash": Mistake(
        "    page: [/, /demo]\n    priority: 30", "    page: [/, repair]\n    priority: 30",
        ("'repair' is not written as it should be: A path, starting with '/'",)
    ),
    "an origin without its scheme": Mistake(
        "  - http://localhost:8000", "  - oknapro.example",
        ("origins[1]: 'oknapro.example' is not written as it should be: A scheme and host, no path",
         "write the https:// or http:// too"),
    ),
    "a site key in capitals": Mistake(
        "site: demo\n", "site: Okna\n", ("'Okna' is not written as it should be", "Lower-case Latin letters, digits")
    ),
    # types
    "wrong type": Mistake("priority: 20", 'priority: "high"', ("priority", "'high' is not of type 'integer'")),
    "a hold written in words": Mistake(
        "    hold: 15m\n    overflow: \"+7 495 120-00-00\"", "    hold: 15 minutes\n    overflow: \"+7 495 120-00-00\"",
        ("pools[0].hold: '15 minutes' is not written as it should be: How long a number stays with a visitor",)
    ),
    "a short secret, never echoed": Mistake(
        "  secret: demo-calls-secret-change-me", "  secret: short",
        ("calls.secret: this is too short: at least 16 characters (HMAC-SHA256 key",),
    ),
    "a short report token, its least length said": Mistake(
        "  token: demo-report-token-change-me", "  token: '12345'",
        ("reports.token: this is too short: at least 16 characters (Bearer token for reports",),
    ),
    # phone numbers and pools
    "invalid phone number": Mistake(
        'phone: "+7 800 555-35-35"', 'phone: "+7 800 555-35"', ("invalid phone number '+7 800 555-35'",)
    ),
    "tracking number longer or shorter than the page's": Mistake(
        '"+7 495 120-00-05"', '"+49 30 1234567"', ("+49 30 1234567 has not the 10 national digits",)
    ),
    "invalid pool number": Mistake(
        '"+7 495 120-00-05"', '"+7 495 120-00"', ("invalid phone number '+7 495 120-00'",)
    ),
    "a number in two pools": Mistake(
        '"+7 812 645-17-16"', '"+7 495 120-00-03"', ("+7 495 120-00-03 is already in pool 'moscow'",)
    ),
    "overflow is a tracking number": Mistake(
        'overflow: "+7 812 645-17-00"',
        'overflow: "+7 495 120-00-01"',
        ("tracking number of pool 'moscow'", "overflow"),
    ),
    "the page's phone is a tracking number": Mistake(
        'phone: "+7 800 555-35-35"',
        'phone: "+7 495 120-00-02"',
        ("tracking number of pool 'moscow'", "the page's phone"),
    ),
    "hold of no time": Mistake(
        '    hold: 15m\n    overflow: "+7 495', '    hold: 0m\n    overflow: "+7 495', ("hold '0m' is too short",)
    ),
    "pool with numbers and static": Mistake(
        '    overflow: "+7 812 645-17-00"',
        '    static: "+7 812 645-17-00"',
        ("needs either 'numbers' or 'static'",),
        where="  - id: saint-petersburg",
    ),
    # YAML itself
    "YAML syntax error: colon in an unquoted text": Mistake(
        "text: Установим завтра", "text: Установим: завтра", ("YAML syntax error", "mapping values")
    ),
    "YAML syntax error: unclosed bracket": Mistake(
        "region: [RU-SPE, RU-LEN] }",
        "region: [RU-SPE, RU-LEN }",
        ("YAML syntax error", "'[' on this line is not closed"),
    ),
    "YAML syntax error: a '[' left open before a block list": Mistake(
        "\nrules:\n", "\nrules: [\n", ("YAML syntax error", "'[' on this line is not closed"), where="rules: [",
    ),
    "YAML syntax error: a '[' in a quoted text is no bracket": Mistake(
        "region: [RU-SPE, RU-LEN] }",
        "region: [\"RU-SPE [\", RU-LEN }",
        ("YAML syntax error", "'[' on this line is not closed"),
    ),
    "YAML syntax error: tab indentation": Mistake(
        "    priority: 10\n", "\tpriority: 10\n", ("YAML syntax error", "'\\t'")
    ),
    "unknown YAML tag": Mistake(
        "    priority: 30\n", "    priority: !high 30\n",
        ("YAML syntax error", "constructor for the tag '!high'", "a value starting with '!' is a YAML tag"),
    ),
    "Direct's ! unquoted": Mistake(
        "keywords: [ремонт кондиционера]", "keywords:\n        - !установка окон",
        ("YAML syntax error", "put it in quotes, - '!купить кондиционер'"), where="!установка окон",
    ),
    "duplicate YAML key": Mistake(
        "    priority: 30\n",
        "    priority: 30\n    priority: 40\n",
        ("duplicate key 'priority'",),
        where="priority: 40",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_reported_at_its_line(mistake: Mistake, tmp_path: Path) -> None:
    text = edited(mistake.old, mistake.new)
    path = write(tmp_path, text)
    if mistake.where is None:
        expected = text[: DEMO_TEXT.index(mistake.old)].count("\n") + 1
    else:
        expected = line_of(text, mistake.where)
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(path), expected), problem
    for fragment in mistake.message:
        assert fragment in problem.message, problem


UNSAFE = {
    "{{ ''.__class__.__mro__ }}": "'__mro__'",
    "{{ cycler.__init__.__globals__ }}": "'__globals__'",
    "{{ self }}": "'self'",
    "{{ phrase|attr('__class__') }}": "filter 'attr'",
    "{% include 'x' %}": "include",
    "{% import 'os' as os %}": "import",
    "{% extends 'base.html' %}": "extends",
    "{{ phrase['__class__'] }}": "'__class__'",
    "{{ lipsum.__globals__['os'] }}": "'__globals__'",
    "{{ config }}": "'config'",
    "{{ range(1000000000) }}": "'range'",
    "{% set x = 1 %}": "assign",
    "{% macro m() %}{% endmacro %}": "macro",
    "{{ keyword|map('upper') }}": "filter 'map'",
}


@pytest.mark.parametrize(("payload", "named"), UNSAFE.items(), ids=UNSAFE.keys())
def test_an_unsafe_template_is_refused_at_its_line(payload: str, named: str, tmp_path: Path) -> None:
    text = edited(LEAD, f'"Привезём и установим {payload}"')
    path = write(tmp_path, text)
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(path), line_of(text, payload))
    assert named in problem.message
    assert problem.message.startswith(("unsafe template", "unknown name"))


@pytest.mark.parametrize("text", [
    "{{ phrase|replace('', phrase)|replace('', phrase) }}",
    "{% for a in phrase %}{% for b in phrase %}{{ b }}{% endfor %}{% endfor %}",
    "{{ phrase|join(phrase|join(phrase)) }}",
])
def test_a_text_that_grows_faster_than_the_phrase_is_refused_at_its_line(text: str, tmp_path: Path) -> None:
    edited_text = edited(LEAD, f'"Привезём и установим {text}"')
    path = write(tmp_path, edited_text)
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(path), line_of(edited_text, text))
    assert "grows faster than the phrase" in problem.message


@pytest.mark.parametrize(("regex", "named"), [
    ("\\\\bкупить", "\\b is not available for Russian words"),
    ("купить(?=дешево)", "no look-arounds"),
    ("(купить) \\\\1", "no look-arounds and no back-references"),
    ("[\\\\W]", "cannot stand inside [...]"),
])
def test_a_phrase_regex_re2_cannot_run_is_refused_with_what_to_write(regex: str, named: str, tmp_path: Path) -> None:
    text = DEMO_TEXT.replace("      country: RU\n", f'      country: RU\n      phrase_regex: "{regex}"\n', 1)
    write(tmp_path, text)
    [problem] = problems_in(tmp_path)
    assert problem.message.startswith("invalid regular expression") and named in problem.message
    assert problem.line == line_of(text, "phrase_regex")


def with_phrase_regex(regex: str) -> str:
    """The demo with a phrase_regex on a rule, in single quotes: YAML keeps its backslashes."""
    return DEMO_TEXT.replace("      country: RU\n", f"      country: RU\n      phrase_regex: '{regex}'\n", 1)


@pytest.mark.parametrize(("regex", "written"), [
    ("(Дешев|НЕДОРОГ)", "(дешев|недорог)"),
    ("дёшево", "дешево"),
    (r"[А-Я]+ \p{Lu}", r"[а-я]+ \p{Lu}"),  # an escape's capitals are syntax, not letters
])
def test_a_phrase_regex_no_normalised_phrase_matches_is_refused_with_what_to_write(regex: str, written: str,
                                                                                     tmp_path: Path) -> None:
    text = with_phrase_regex(regex)
    write(tmp_path, text)
    [problem] = problems_in(tmp_path)
    assert "phrases are matched in lower case, with «е» for «ё»" in problem.message
    assert problem.message.endswith(f"write {written!r}")
    assert problem.line == line_of(text, "phrase_regex")


@pytest.mark.parametrize("regex", [r"\W\S\D\P{Lu}", "(?i)Купить", "(?P<Brand>daikin)"])
def test_a_phrase_regex_whose_capitals_are_syntax_loads(regex: str, tmp_path: Path) -> None:
    write(tmp_path, with_phrase_regex(regex))
    load(tmp_path)


@pytest.mark.parametrize("text", ["{{ phrase|truncate(30) }}", "{{ keyword(default='', max=5) }}",
                                  "{% if city.name == 'Казань' %}Склад {{ city.in }}{% endif %}"])
def test_a_text_empty_for_some_visitors_loads(text: str, tmp_path: Path) -> None:
    """Only a text that fails whatever the visitor is refused: one that prints nothing for some is fine."""
    write(tmp_path, edited(LEAD, f'"{text}"'))
    load(tmp_path)


def test_a_template_error_on_the_second_line_of_a_text_is_one_line_below_the_first(tmp_path: Path) -> None:
    text = edited(LEAD, "|\n          Привезём и установим {{ city.in }}\n          за {{ 1 + }} день")
    write(tmp_path, text)
    [problem] = problems_in(tmp_path)
    first_line_of_text = line_of(text, "Привезём и установим {{ city.in }}")
    assert problem.line == first_line_of_text + 1
    assert problem.message.startswith("template syntax error")


def test_two_files_defining_the_same_site(tmp_path: Path) -> None:
    first = write(tmp_path, DEMO_TEXT, "a-demo.yaml")
    second = write(tmp_path, DEMO_TEXT.replace("name: Climate Demo", "name: Climate Copy"), "demo.yaml")
    # Each file is named in the other's line: a copy made for a new client may be read first.
    assert [(p.file, p.line, p.message) for p in problems_in(tmp_path)] == [
        (str(first), line_of(DEMO_TEXT, "site: demo"), f"site 'demo' is defined again in {second}"),
        (str(second), line_of(DEMO_TEXT, "site: demo"), f"site 'demo' is already defined in {first}")]


def test_several_mistakes_in_one_file_are_all_reported_in_one_run(tmp_path: Path) -> None:
    text = DEMO_TEXT
    for old, new in [
        ('phone: "+7 800 555-35-35"', 'phone: "+7 800"'),
        ("region: RU-MOW", "region: RU-XXX"),
        ("      - selector: .hero-lead", "      - selector: '.hero-lead >'"),
        ("weight: 34", "weight: 30"),
        ("  - id: hero-repair", "  - id: hero-city"),
        ("{{ city.in }} за 24 часа", "{{ city.__class__ }} за 24 часа"),
    ]:
        assert text.count(old) == 1
        text = text.replace(old, new)
    write(tmp_path, text)
    duplicate = [n for n, line in enumerate(text.split("\n"), 1) if line == "  - id: hero-city"][1]
    expected = [
        (line_of(text, 'phone: "+7 800"'), "invalid phone number '+7 800'"),
        (line_of(text, "RU-XXX"), "unknown region 'RU-XXX'"),
        (line_of(text, ".hero-lead >"), "bad CSS selector '.hero-lead >'"),
        (line_of(text, "variants:"), "variant weights add up to 96, not 100"),
        (duplicate, "duplicate id 'hero-city' in rules"),
        (line_of(text, "__class__"), "unsafe template: attribute '__class__'"),
    ]
    problems = problems_in(tmp_path)
    assert len(problems) == len(expected), problems
    for line, fragment in expected:
        assert any(p.line == line and fragment in p.message for p in problems), (line, fragment, problems)


def test_several_structural_mistakes_are_all_reported_in_one_run(tmp_path: Path) -> None:
    text = edited("    priority: 20\n", "    priorty: 20\n").replace("priority: 10", 'priority: "low"')
    write(tmp_path, text)
    found = sorted((problem.line, problem.message) for problem in problems_in(tmp_path))
    assert found == [
        (line_of(text, "priorty"), "unknown key 'priorty' in rules[0]; did you mean 'priority'?"),
        (line_of(text, '"low"'), "rules[1].priority: 'low' is not of type 'integer'"),
    ]


def test_mistakes_in_two_files_are_all_reported(tmp_path: Path) -> None:
    write(tmp_path, edited("weight: 34", "weight: 1"))
    other = write(tmp_path, "site: shop\nphone: '+7 999'\n", "shop.yaml")
    problems = problems_in(tmp_path)
    assert {(Path(problem.file).name, problem.line) for problem in problems} == {
        ("demo.yaml", line_of(DEMO_TEXT, "variants:")),
        ("shop.yaml", 2),
    }
    assert any(problem.file == str(other) and "invalid phone number" in problem.message for problem in problems)


def test_a_file_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_bytes("site: demo\n# Windows-1251, as old editors save it\nname: Климат\n"
                                         .encode("cp1251"))
    [problem] = problems_in(tmp_path)
    assert problem.line == 3
    assert "not UTF-8" in problem.message


def test_an_empty_file_is_named(tmp_path: Path) -> None:
    write(tmp_path, "# nothing yet\n")
    [problem] = problems_in(tmp_path)
    assert (problem.line, problem.message) == (1, "the file is empty: it needs at least 'site: ...'")


def test_editor_lock_and_backup_files_are_not_rules(tmp_path: Path) -> None:
    write(tmp_path, DEMO_TEXT)
    (tmp_path / ".#demo.yaml").symlink_to(tmp_path / "user@host.12345")  # Emacs' lock: a dangling link
    write(tmp_path, "site: [broken", ".demo.yaml")
    write(tmp_path, "site: [broken", "demo.yaml~")
    assert set(load(tmp_path).sites) == {"demo"}


def test_the_demo_passes() -> None:
    rules = load(DEMO_RULES)
    site = rules.sites["demo"]
    assert set(rules.sites) == {"demo"}
    assert len(site.rules) == 3
    assert [experiment.id for experiment in site.experiments] == ["cta-wording"]
    assert [pool.id for pool in site.pools] == ["moscow", "saint-petersburg"]
    assert site.phone == "+78005553535"
    assert re.fullmatch(r"[0-9a-f]{12}", rules.version)


def test_two_webhooks_that_would_share_a_queue_are_refused_and_ids_part_them(tmp_path: Path) -> None:
    """One relay for calls and forms (on a private address, as a self-hosted CRM may be): without
    ids the two would share a queue and each take what the other should get."""
    relay = '- {url: "http://10.0.0.5/relay", secret: crm-secret-00000001, kinds: '
    text = edited("reports:\n", f"webhooks:\n  {relay}[call]}}\n  {relay}[form]}}\nreports:\n")
    path = write(tmp_path, text)
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(path), line_of(text, "[form]"))
    assert f"the webhook on line {line_of(text, '[call]')} has this url too" in problem.message
    assert "give each an id (id: calls, id: forms)" in problem.message
    named = text.replace("- {url", "- {id: calls, url", 1).replace("- {url", "- {id: forms, url", 1)
    write(tmp_path, named)
    assert [hook.id for hook in load(tmp_path).sites["demo"].webhooks] == ["calls", "forms"]


def test_a_places_override_renames_the_place_and_declines_the_new_name(tmp_path: Path) -> None:
    write(tmp_path, DEMO_TEXT)
    kamchatka = load(tmp_path).sites["demo"].place("Камчатский край")
    assert (str(kamchatka), kamchatka.forms["in"], kamchatka.forms["from"]) == (
        "Камчатский край", "на Камчатке", "с Камчатки")  # given in the file
    assert kamchatka.forms["gent"] == "Камчатского края"  # from the regions' table
    renamed = write(tmp_path, DEMO_TEXT.replace("  Камчатский край:\n", "  Санкт-Петербург:\n    nomn: Петербург\n"
                                               "  Камчатский край:\n"))
    petersburg = load(renamed.parent).sites["demo"].place("Санкт-Петербург")
    assert (str(petersburg), petersburg.forms["in"], petersburg.forms["from"]) == (
        "Петербург", "в Петербурге", "из Петербурга")  # declined from the given nominative


def swapline_check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swapline", "rules", "check", str(directory)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_check_of_a_file_or_an_empty_directory_says_what_to_give(tmp_path: Path) -> None:
    one_file = swapline_check(DEMO_RULES / "demo.yaml")
    empty = swapline_check(tmp_path)
    assert one_file.returncode == empty.returncode == 1
    assert f"{DEMO_RULES / 'demo.yaml'}:1: a file, not a rules directory: give the directory that holds it " \
           f"({DEMO_RULES})" in one_file.stderr + one_file.stdout
    assert f"{tmp_path}:1: no rules files (SITE.yaml) in this directory" in empty.stderr + empty.stdout


def test_cli_check_passes_the_demo() -> None:
    result = swapline_check(DEMO_RULES)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"{re.escape(str(DEMO_RULES))}: OK, 1 site\(s\): demo; version [0-9a-f]{{12}}\n",
                        result.stdout)
    assert result.stderr == ""


def test_cli_check_prints_file_line_message_and_fails_on_a_broken_copy(tmp_path: Path) -> None:
    directory = tmp_path / "rules"
    shutil.copytree(DEMO_RULES, directory)
    path = directory / "demo.yaml"
    text = DEMO_TEXT.replace("region: RU-MOW", "region: RU-XXX").replace("weight: 34", "weight: 50")
    path.write_text(text, encoding="utf-8")
    result = swapline_check(directory)
    assert result.returncode == 1
    assert "OK" not in result.stdout
    assert result.stderr.splitlines() == [
        f"{path}:{line_of(text, 'RU-XXX')}: unknown region 'RU-XXX': write its ISO 3166-2 code (RU-KAM) or its "
        "name in Russian or English (Камчатский край)",
        f"{path}:{line_of(text, 'variants:')}: variant weights add up to 116, not 100",
    ]


def shop_copy(*edits: tuple[str, str]) -> str:
    """The demo copied for another client, as an agency does: a site id, a report token and
    a calls secret of its own, then `edits`."""
    text = (DEMO_TEXT.replace("site: demo", "site: shop").replace("demo-report-token-change-me", "shop-report-token-01")
            .replace("demo-calls-secret-change-me", "shop-calls-secret-01"))
    for old, new in edits:
        text = text.replace(old, new)
    return text


def test_a_tracking_number_of_two_sites_is_refused(tmp_path: Path) -> None:
    """A number rings in one place: one of two sites that share it would never get its calls."""
    first = write(tmp_path, DEMO_TEXT, "demo.yaml")
    second = write(tmp_path, shop_copy(('"+7 495 120-00-05"', '"+7 495 130-00-05"')), "shop.yaml")
    problems = problems_in(tmp_path)
    assert [(p.file, p.line) for p in problems] == [
        (str(second), line_of(DEMO_TEXT, f'"+7 495 120-00-0{n}"')) for n in (1, 2, 3, 4)
    ] + [(str(second), line_of(DEMO_TEXT, f'"+7 812 645-17-1{n}"')) for n in (4, 5, 6)]
    assert problems[0].message == f"+74951200001 is also a tracking number of site 'demo' ({first})"


SHOP_POOLS = [('"+7 495 120-00-0', '"+7 495 130-00-0'), ('"+7 812 645-17-1', '"+7 812 600-17-1')]


@pytest.mark.parametrize(("edit", "where", "message"), [
    (('overflow: "+7 495 130-00-00"', 'overflow: "+7 495 120-00-03"'), 'overflow: "+7 495 120-00-03"',
     "+74951200003 is a tracking number of site 'demo' ({demo}): calls to it would be credited to that site's "
     "visitors"),
    (('phone: "+7 800 555-35-35"', 'phone: "+7 812 645-17-15"'), 'phone: "+7 812 645-17-15"',
     "+78126451715 is a tracking number of site 'demo' ({demo}): calls to it would be credited to that site's "
     "visitors"),
], ids=["overflow", "page phone"])
def test_another_sites_tracking_number_as_a_fixed_number_is_refused(edit: tuple[str, str], where: str, message: str,
                                                                   tmp_path: Path) -> None:
    """A client's overflow or page number that is another client's tracking number gets calls
    the other client's visitors made."""
    demo = write(tmp_path, DEMO_TEXT, "demo.yaml")
    text = shop_copy(*SHOP_POOLS, edit)
    shop = write(tmp_path, text, "shop.yaml")
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line, problem.message) == (str(shop), line_of(text, where),
                                                            message.format(demo=demo))


def test_a_fixed_number_of_one_site_as_another_sites_tracking_number_is_refused(tmp_path: Path) -> None:
    """The same, the other way round: the file read second lists the first one's overflow number."""
    demo = write(tmp_path, DEMO_TEXT, "demo.yaml")
    text = shop_copy(*SHOP_POOLS, ('"+7 495 130-00-02"', '"+7 495 120-00-00"'))
    shop = write(tmp_path, text, "shop.yaml")
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line, problem.message) == (
        str(shop), line_of(text, '"+7 495 120-00-00"'),
        f"+74951200000 is a fixed number of site 'demo' ({demo}): calls to it would be credited to this site's "
        "visitors")


def test_two_sites_may_share_an_overflow_number_and_a_page_phone(tmp_path: Path) -> None:
    """A company's main line can be the fallback of several of its sites: no call is ambiguous."""
    write(tmp_path, DEMO_TEXT, "demo.yaml")
    write(tmp_path, shop_copy(*SHOP_POOLS, ('overflow: "+7 495 130-00-00"', 'overflow: "+7 495 120-00-00"')),
          "shop.yaml")
    assert set(load(tmp_path).sites) == {"demo", "shop"}


def test_a_report_token_of_two_sites_is_refused(tmp_path: Path) -> None:
    """A copied client file keeps the first client's token: the new client's analyst would read
    the first client's reports."""
    demo = write(tmp_path, DEMO_TEXT, "demo.yaml")
    text = shop_copy(*SHOP_POOLS, ("shop-report-token-01", "demo-report-token-change-me"))
    shop = write(tmp_path, text, "shop.yaml")
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(shop), line_of(text, "token: demo-report-token-change-me"))
    assert problem.message == (f"the report token is also that of site 'demo' ({demo}): whoever has it reads both; "
                               "give each its own")
    assert "demo-report-token-change-me" not in problem.message


def test_a_calls_secret_of_two_sites_is_a_warning(tmp_path: Path) -> None:
    """One PBX may post both sites' calls with one secret; the check says what that allows."""
    demo = write(tmp_path, DEMO_TEXT, "demo.yaml")
    text = shop_copy(*SHOP_POOLS, ("shop-calls-secret-01", "demo-calls-secret-change-me"))
    shop = write(tmp_path, text, "shop.yaml")
    result = swapline_check(tmp_path)
    assert result.returncode == 0, result.stderr
    warning, ok = result.stdout.splitlines()
    assert warning == (f"{shop}:{line_of(text, 'secret: demo-calls-secret-change-me')}: warning: calls.secret is also "
                       f"that of site 'demo' ({demo}): a PBX that has it can post calls for either site")
    assert ok.startswith(f"{tmp_path}: OK, 2 site(s): demo, shop;")


GOOGLE_ADS = """exports:
  google_ads: {customer: "123-456-7890", actions: {form: "2222"}, client_id: ads-client-id-0001,
               client_secret: ads-client-secret-1, refresh_token: ads-refresh-token-01}
"""


@pytest.mark.parametrize(("head", "warned"), [
    ('site: hvac\nlanguage: en\nphone: "+1 512 555 0100"\n', True),  # a US site's conversions in roubles
    ('site: hvac\nphone: "+1 512 555 0100"\n', True),
    ('site: hvac\nlanguage: en\nphone: "+1 512 555 0100"\n', False),  # with the currency
    ('site: okna\nphone: "+7 812 645-17-14"\n', False),  # a Russian site: roubles are right
])
def test_google_ads_uploads_without_a_currency_outside_russia_are_warned_of(tmp_path: Path, head: str,
                                                                           warned: bool) -> None:
    text = head + GOOGLE_ADS + ("" if warned or "+7" in head else "  currency: USD\n")
    write(tmp_path, text, "site.yaml")
    rules = load(tmp_path)
    assert [warning.message for warning in rules.warnings] == (
        ["warning: no currency: Google Ads gets conversion values in roubles (RUB); a site that sells in another "
         "says so (currency: USD)"] if warned else [])


WARNED = """\
site: warned
rules:
  - id: only-a-place
    swap:
      - selector: h1
        text: "{{ city.in }}"
      - selector: h2
        text: "{{ city.in or 'по всей России' }}"
      - selector: h3
        text: "Доставка {{ region.short.in }}"
places:
  Сахалин:
    nomn: Сахалинская область
  Владимир:
    in: во Владимире
    to: во Владимир
    from: из Владимира
  Камчатский край:
    in: на Камчатке
"""


UNSET = """\
site: unset
calls:
  secret: "${NO_CALLS_SECRET_SET}"
  uis_token: "${NO_UIS_TOKEN_SET}"
reports:
  token: "${NO_REPORT_TOKEN_SET}"
"""


def warnings_of(tmp_path: Path, site: str, text: str) -> tuple[Path, list[str]]:
    """The warnings `swapline rules check` prints of `text`, the rules of `site`, which it passes."""
    path = write(tmp_path, text, f"{site}.yaml")
    result = swapline_check(tmp_path)
    assert result.returncode == 0, result.stderr
    *warnings, ok = result.stdout.splitlines()
    assert ok.startswith(f"{tmp_path}: OK, 1 site(s): {site}")
    return path, warnings


def test_rules_check_warns_of_a_credential_whose_environment_variable_is_not_set(tmp_path: Path) -> None:
    """The file names a secret, so it is meant to work: without the variable every call is refused."""
    path, warnings = warnings_of(tmp_path, "unset", UNSET)
    assert warnings == [
        f"{path}:3: warning: ${{NO_CALLS_SECRET_SET}} is not set in the environment: the webhooks that need it "
        "are refused",
        f"{path}:4: warning: ${{NO_UIS_TOKEN_SET}} is not set in the environment: the webhooks that need it "
        "are refused",
        f"{path}:6: warning: ${{NO_REPORT_TOKEN_SET}} is not set in the environment: the dashboard and reports "
        "refuse every token",
    ]


def test_rules_check_warns_of_a_text_longer_than_visitors_see(tmp_path: Path) -> None:
    long = "Кондиционеры {{ city.in }}. " + "Доставим и установим. " * 60
    path, warnings = warnings_of(
        tmp_path, "long", f'site: long\nrules:\n  - id: r\n    swap:\n      - selector: p\n        text: "{long}"\n')
    assert warnings == [f"{path}:6: warning: this text is 1,334 characters long: visitors see its first 1,000"]


def test_rules_check_warns_of_what_serves_but_not_as_meant(tmp_path: Path) -> None:
    path, warnings = warnings_of(tmp_path, "warned", WARNED)
    assert warnings == [
        f"{path}:{line_of(WARNED, 'city.in }}')}: warning: this text is only a place name, so it is empty, and the "
        "element blank, for visitors whose city GeoIP does not know (mobile networks often): give a fallback, "
        "\"{{ city.in or 'по всей России' }}\"",
        f"{path}:{line_of(WARNED, 'Сахалин:')}: warning: GeoIP's region name 'Сахалин' is now given as "
        "'Сахалинская область': name the correction so, or it never applies",
        f"{path}:{line_of(WARNED, 'на Камчатке')}: warning: places.Камчатский край gives 'in' but not 'to' or "
        "'from': those still decline the name ('to' reads 'в Камчатский край', 'from' 'из Камчатского края'); "
        "give them too",
    ]


def test_rules_check_warns_of_a_keyword_whose_double_quotes_yaml_takes(tmp_path: Path) -> None:
    """`- "окна rehau"` reads as the words окна rehau: Direct's quotes need YAML's single quotes around them."""
    text = ("site: quoted\nrules:\n  - id: r\n    when:\n      keywords:\n        - \"окна rehau\"\n"
            "        - '\"окна veka\"'\n        - окна kbe\n    swap: [{selector: p, text: x}]\n")
    path, warnings = warnings_of(tmp_path, "quoted", text)
    assert warnings == [
        f"{path}:6: warning: YAML takes the double quotes of 'окна rehau' for its own, so it matches in broad "
        "match; for Direct's quotes write '\"окна rehau\"' (the whole in single quotes), else write it without quotes"
    ]


@pytest.mark.parametrize(("calls", "warned"), [
    ("", True), ("calls: {secret: pools-calls-secret-01}\n", False),
    ("time_zone: Europe/Moscow\ncalls: {zadarma_secret: zadarma-secret}\n", False)])
def test_rules_check_warns_of_pools_whose_calls_nothing_can_post(tmp_path: Path, calls: str, warned: bool) -> None:
    """Numbers leased to every visitor, and not one call ever credited: nothing said so."""
    text = f"site: pooled\n{calls}pools:\n  - id: all\n    numbers: ['+7 495 170-00-01']\n"
    path, warnings = warnings_of(tmp_path, "pooled", text)
    assert warnings == ([f"{path}:{line_of(text, 'pools:')}: warning: the pools give visitors tracking numbers, but "
                         "nothing can post this site's calls: none is ever credited until calls.secret, or a "
                         "telephony vendor's credentials, are set (docs/CALLS.md)"] if warned else [])


def test_a_city_elsewhere_is_named_with_its_country(tmp_path: Path) -> None:
    """Only Russia's cities are known to the check: a rule for Minsk says it is in Belarus, and a
    correction of a place the check does not know is a warning, not a refusal."""
    text = ("site: abroad\nplaces:\n  Минск: {nomn: Мінск}\nrules:\n  - id: minsk\n"
            "    when: {country: BY, city: Минск}\n    swap: [{selector: p, text: x}]\n")
    path, warnings = warnings_of(tmp_path, "abroad", text)
    assert warnings == [f"{path}:3: warning: places.Минск: no Russian city or region is called 'Минск': the "
                        "correction applies only where GeoIP gives a place that name"]


# Every credential the rules may read from the environment, with the least length the schema
# asks of it written out; its variable is SWT_ and its path's names.
CREDENTIAL_MINIMUMS = {
    ("calls", "secret"): 16, ("calls", "twilio_auth_token"): 16, ("calls", "mango_api_key"): 8,
    ("calls", "mango_api_salt"): 8, ("calls", "zadarma_secret"): 8, ("calls", "uis_token"): 16,
    ("calls", "telphin_token"): 16, ("reports", "token"): 16, ("reports", "read_tokens"): 16,
    ("webhooks", "secret"): 16,
    ("exports", "metrica", "token"): 8, ("exports", "google_ads", "client_id"): 8,
    ("exports", "google_ads", "client_secret"): 8, ("exports", "google_ads", "refresh_token"): 8,
    ("exports", "google_ads", "developer_token"): 8,
}
FROM_ENVIRONMENT = """\
site: creds
time_zone: Europe/Moscow
calls:
  secret: "${SWT_CALLS_SECRET}"
  twilio_auth_token: "${SWT_CALLS_TWILIO_AUTH_TOKEN}"
  mango_api_key: "${SWT_CALLS_MANGO_API_KEY}"
  mango_api_salt: "${SWT_CALLS_MANGO_API_SALT}"
  zadarma_secret: "${SWT_CALLS_ZADARMA_SECRET}"
  uis_token: "${SWT_CALLS_UIS_TOKEN}"
  telphin_token: "${SWT_CALLS_TELPHIN_TOKEN}"
reports:
  token: "${SWT_REPORTS_TOKEN}"
  read_tokens: ["${SWT_REPORTS_READ_TOKENS}"]
webhooks:
  - url: https://crm.example/hook
    secret: "${SWT_WEBHOOKS_SECRET}"
exports:
  metrica:
    counter: 1
    token: "${SWT_EXPORTS_METRICA_TOKEN}"
  google_ads:
    customer: 123-456-7890
    actions: {qualified_call: "1"}
    client_id: "${SWT_EXPORTS_GOOGLE_ADS_CLIENT_ID}"
    client_secret: "${SWT_EXPORTS_GOOGLE_ADS_CLIENT_SECRET}"
    refresh_token: "${SWT_EXPORTS_GOOGLE_ADS_REFRESH_TOKEN}"
    developer_token: "${SWT_EXPORTS_GOOGLE_ADS_DEVELOPER_TOKEN}"
"""


def variable(path: tuple[str, ...]) -> str:
    return "SWT_" + "_".join(path).upper()


def environment_credentials(node: object, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The paths of the schema's values that may be written `${NAME}` (a list's item adds no name)."""
    found: set[tuple[str, ...]] = set()
    if isinstance(node, dict):
        if any(branch.get("pattern", "").startswith("^\\$\\{") for branch in node.get("anyOf", [])):
            found.add(path)
        for key, value in node.get("properties", {}).items():
            found |= environment_credentials(value, (*path, key))
        found |= environment_credentials(node.get("items"), path)
    return found


def test_every_credential_read_from_the_environment_is_listed_here() -> None:
    """So that the test below tries a credential the schema gains."""
    schema = json.loads((Path(__file__).parent.parent / "service" / "schema.json").read_text())
    assert environment_credentials(schema) == set(CREDENTIAL_MINIMUMS)


@pytest.mark.parametrize("short", CREDENTIAL_MINIMUMS, ids=".".join)
def test_a_credential_too_short_in_the_environment_is_refused_as_one_written_out(
        short: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema holds a credential written in the file to its least length, but cannot see what
    `${NAME}` holds: a one-letter report token read from the environment would open the reports to
    whoever guesses it. Each is refused where it is named, by its variable, never its value."""
    for path, least in CREDENTIAL_MINIMUMS.items():  # each its own, of its least length
        monkeypatch.setenv(variable(path), hashlib.sha256(variable(path).encode()).hexdigest()[:least])
    path = write(tmp_path, FROM_ENVIRONMENT, "creds.yaml")
    load(tmp_path)  # each at its least length: served
    least = CREDENTIAL_MINIMUMS[short]
    monkeypatch.setenv(variable(short), ("k3y" * 10)[:least - 1])
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(path), line_of(FROM_ENVIRONMENT, variable(short) + "}"))
    listed = {("webhooks", "secret"): "webhooks[0].secret", ("reports", "read_tokens"): "reports.read_tokens[0]"}
    assert problem.message.startswith(
        f"{listed.get(short, '.'.join(short))}: the environment variable "
        f"{variable(short)} holds fewer than {least} characters: a credential needs at least {least}")
    assert "k3y" not in problem.message


WEAK = """\
site: weak
calls:
  uis_token: "${WEAK_UIS_TOKEN}"
reports:
  token: "${WEAK_REPORT_TOKEN}"
"""


def test_rules_check_refuses_a_report_or_uis_token_too_short_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tester's rules: `token: "${WEAKTOK}"` with WEAKTOK=a passed the check, and the server
    then read reports for `Bearer a` and recorded calls for `token=b`."""
    path = write(tmp_path, WEAK, "weak.yaml")
    monkeypatch.setenv("WEAK_UIS_TOKEN", "b")
    monkeypatch.setenv("WEAK_REPORT_TOKEN", "a-weak-token")
    result = swapline_check(tmp_path)
    assert result.returncode == 1 and "OK" not in result.stdout
    assert result.stderr.splitlines() == [
        f"{path}:3: calls.uis_token: the environment variable WEAK_UIS_TOKEN holds fewer than 16 characters: "
        "a credential needs at least 16, written here or in the environment, or it can be guessed",
        f"{path}:5: reports.token: the environment variable WEAK_REPORT_TOKEN holds fewer than 16 characters: "
        "a credential needs at least 16, written here or in the environment, or it can be guessed",
    ]
    assert "a-weak-token" not in result.stdout + result.stderr
    monkeypatch.setenv("WEAK_UIS_TOKEN", "b" * 16)  # long enough, and as guessable
    monkeypatch.setenv("WEAK_REPORT_TOKEN", "a-weak-token-now-long")
    result = swapline_check(tmp_path)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"{path}:3: calls.uis_token: the environment variable WEAK_UIS_TOKEN has one character, and can be "
        "guessed: make one with `openssl rand -hex 16`"]
    monkeypatch.setenv("WEAK_UIS_TOKEN", "b" * 12 + "a7c9")
    assert swapline_check(tmp_path).returncode == 0


@pytest.mark.parametrize(("written", "kinds"), [("aaaaaaaaaaaaaaaa", "one character"),
                                                ("abababababababab1212", "only 4 different characters")])
def test_a_credential_of_a_few_characters_over_and_over_is_refused(written: str, kinds: str, tmp_path: Path) -> None:
    text = DEMO_TEXT.replace("demo-report-token-change-me", written)
    path = write(tmp_path, text)
    [problem] = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(path), line_of(text, f"token: {written}"))
    assert problem.message == f"reports.token: it has {kinds}, and can be guessed: make one with `openssl rand -hex 16`"


@pytest.mark.parametrize("order", ["shop.yaml", "a-shop.yaml"], ids=["read after", "read before"])
def test_a_report_token_given_to_a_pbx_or_a_crm_is_refused(order: str, tmp_path: Path) -> None:
    """A PBX that has another site's report token as its calls secret, or a CRM as its webhook's,
    reads that site's reports and erases its visitors."""
    write(tmp_path, DEMO_TEXT, "demo.yaml")
    text = shop_copy(*SHOP_POOLS, ("shop-calls-secret-01", "demo-report-token-change-me"))
    shop = write(tmp_path, text, order)
    [problem] = problems_in(tmp_path)
    if order == "shop.yaml":
        assert (problem.file, problem.line) == (str(shop), line_of(text, "secret: demo-report-token-change-me"))
        assert problem.message == (f"calls.secret is also the report token of site 'demo' ({tmp_path / 'demo.yaml'}): "
                                   "whoever is given it reads that site's reports; give each its own")
    else:
        assert (problem.file, problem.line) == (str(tmp_path / "demo.yaml"), line_of(DEMO_TEXT, "token: demo-report"))
        assert problem.message == (f"the report token is also calls.secret of site 'shop' ({shop}): whoever is given "
                                   "it reads this site's reports; give each its own")
    (tmp_path / order).unlink()
    hooked = DEMO_TEXT + "webhooks:\n  - {url: \"https://crm.example/hook\", secret: demo-report-token-change-me}\n"
    write(tmp_path, hooked, "demo.yaml")
    [problem] = problems_in(tmp_path)
    assert problem.message == ("webhooks[0].secret is also this site's report token: whoever is given it reads that "
                               "site's reports; give each its own")

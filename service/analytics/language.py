"""The dashboard in its reader's language: English, or Russian for a browser that asks for it
before English (`Accept-Language`), unless the reader chose one on its pages (`COOKIE`). The
API, its files and the logs stay in English.

The English words are the keys of the Russian catalogue (`service/pages/ru.json`). A sentence
the reports make with values (`Said`) keeps its template apart from them, so that the dashboard
can say it in Russian while the report's JSON says it in English.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import orjson

LANGUAGES = ("en", "ru")
COOKIE = "swapline_language"  # the one the reader chose, over what their browser asks for
# One language range of the header and its weight: `ru-RU`, `ru;q=0.9`, `*;q=0.1`.
_RANGE = re.compile(r"\s*([A-Za-z]{1,8}|\*)(?:-[A-Za-z0-9]{1,8}){0,4}\s*(?:;\s*[qQ]\s*=\s*([01](?:\.[0-9]{0,3})?))?\s*")


def chosen(accept_language: str, kept: str | None = None) -> str:
    """`kept`, the language the reader chose, if it is one of ours; else the one the browser
    weighs highest (RFC 9110, 12.5.4), the first of equals; English where it names neither. What
    a header holds past its first ranges is not read."""
    if kept in LANGUAGES:
        return kept
    best, weight = "en", 0.0
    for item in accept_language[:512].split(",", 16)[:16]:
        match = _RANGE.fullmatch(item)
        if match and (language := match[1].lower()) in LANGUAGES:
            quality = float(match[2]) if match[2] else 1.0
            if quality > weight:
                best, weight = language, quality
    return best


@functools.cache
def catalogue() -> dict[str, str | list[str]]:
    """English → Russian; a message with a number has Russian's three forms (`Words.ngettext`)."""
    table: dict[str, str | list[str]] = orjson.loads(
        resources.files("service").joinpath("pages", "ru.json").read_bytes())
    return table


class Words:
    """`gettext` and `ngettext` of one language, for Jinja's i18n extension; English is the keys
    themselves."""

    def __init__(self, language: str) -> None:
        self.table = catalogue() if language == "ru" else {}

    def gettext(self, message: str) -> str:
        said = self.table.get(message, message)
        return said if isinstance(said, str) else said[0]

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        forms = self.table.get(singular)
        if forms is None:
            return singular if n == 1 else plural
        return forms if isinstance(forms, str) else forms[_russian_form(n)]


def _russian_form(n: int) -> int:
    """1 страница, 2 страницы, 5 страниц: 21 is as 1, 12 as 5."""
    if n % 10 == 1 and n % 100 != 11:
        return 0
    return 1 if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14 else 2


class Said(str):
    """A sentence made from a template (`%(name)s`, and `%%` for a percent sign) and its values:
    the English sentence as a string, for the API and the files, and `template` and `values`
    for the dashboard to say it in the reader's language."""

    template: str
    values: dict[str, str]

    def __new__(cls, template: str, **values: str) -> Said:
        said = super().__new__(cls, template % values)
        said.template, said.values = template, values
        return said

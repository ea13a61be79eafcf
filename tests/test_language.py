"""The dashboard's Russian: every word it says has its translation, with the same blanks, and
the browser's `Accept-Language` picks it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.analytics import dashboard, language, reports
from service.analytics.dimensions import BACKWARDS_OR_FAR, COHORTS
from service.analytics.logs import NO_CALLER, NO_NUMBER
from service.integrations import alerts
from service.tracking.counters import DIMENSIONS, NONE, NOT_CREDITED, OTHER
from service.tracking.visitors import device

PAGES = Path(dashboard.__file__).parent.parent / "pages"
BLANK = re.compile(r"%\((\w+)\)s")


def said_in_templates() -> set[str]:
    words = set()
    for template in PAGES.glob("*.html"):
        for _, _, message in dashboard.PAGES["en"].extract_translations(template.read_text()):
            first = message[0] if isinstance(message, tuple) else message
            if first is not None:  # `_(call.status)`: a word of the lists below
                words.add(first)
    return words


# The words the templates translate as they come, from where they are made.
SAID_AS_THEY_COME = {
    *reports.KINDS, *DIMENSIONS, *COHORTS, *dashboard.TESTS.values(),  # metrics, dimensions, tests
    NONE, OTHER, NOT_CREDITED,  # the reports' rows of no value, of the rest, of calls credited to nobody
    "desktop", "mobile", "tablet",  # service.tracking.visitors.device
    "sent", "partly refused", "refused", "nothing to send", "failed",  # service.integrations.exports
    reports.MISMATCH, reports.NO_CONVERSIONS, reports.TOO_HIGH, reports.TOO_FEW,
    reports.BETTER, reports.WORSE, reports.UNDECIDED, reports.UNTRUSTED, reports.LEFT_OUT,
    reports.BACKWARDS, BACKWARDS_OR_FAR, NO_CALLER, NO_NUMBER,  # what a tab's own fields may ask that it refuses
    alerts.OVERFLOW, alerts.CAPPED, alerts.NO_CALLS, alerts.UPLOAD, alerts.DEGRADED, alerts.RECOVERED,
}


def test_every_word_the_dashboard_says_has_its_russian_and_the_catalogue_holds_no_other() -> None:
    catalogue = language.catalogue()
    said = said_in_templates() | SAID_AS_THEY_COME
    assert sorted(said - catalogue.keys()) == []  # else English shows on a Russian dashboard
    assert sorted(catalogue.keys() - said) == []  # a translation nothing says any more
    for english, russian in catalogue.items():
        forms = [russian] if isinstance(russian, str) else russian
        assert len(forms) in (1, 3), english  # a message with a count has Russian's three forms
        blanks = dict.fromkeys(BLANK.findall(english), "x")
        for form in forms:
            assert set(BLANK.findall(form)) == blanks.keys(), english
            assert form.count("%%") == english.count("%%"), english
            assert (form % blanks).count("%") == form.count("%%"), english  # a stray percent sign raises
            assert re.search("[а-яё]", form, re.IGNORECASE), english


def test_the_device_a_visitor_is_counted_on_is_one_the_dashboard_says() -> None:
    agents = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
              "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)")
    assert {device(agent) for agent in agents} <= SAID_AS_THEY_COME


@pytest.mark.parametrize(("header", "chosen"), [
    ("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru"),  # Chrome and Yandex Browser in Russian
    ("en-US,en;q=0.9,ru;q=0.8", "en"),
    ("uk-UA,uk;q=0.9,ru;q=0.8,en;q=0.7", "ru"),  # the first of ours the reader reads
    ("de-DE,de;q=0.9", "en"),
    ("en;q=0.5, ru;q=0.7", "ru"),  # by weight, not order
    ("ru;q=0, en;q=0.1", "en"),  # q=0: not acceptable
    ("RU", "ru"),
    ("*", "en"),
    ("", "en"),
    ("ru;q=bogus,en", "en"),  # a range the grammar does not allow is not read
    ("x" * 100_000 + ",ru", "en"),  # past the first ranges nothing is read
    ("xx," * 20 + "ru", "en"),
])
def test_the_browsers_first_language_of_ours_is_chosen(header: str, chosen: str) -> None:
    assert language.chosen(header) == chosen


def test_russian_counts_take_their_three_forms() -> None:
    words = language.Words("ru")
    forms = {n: words.ngettext("The caller's visit: %(count)s page", "The caller's visit: %(count)s pages", n)
             for n in (1, 2, 5, 11, 12, 21, 22, 25, 111, 112, 0)}
    assert [n for n, form in forms.items() if form.endswith("страница")] == [1, 21]
    assert [n for n, form in forms.items() if form.endswith("страницы")] == [2, 22]
    assert [n for n, form in forms.items() if form.endswith("страниц")] == [5, 11, 12, 25, 111, 112, 0]
    english = language.Words("en")
    assert english.ngettext("%(count)s page", "%(count)s pages", 1) == "%(count)s page"
    assert english.ngettext("%(count)s page", "%(count)s pages", 2) == "%(count)s pages"

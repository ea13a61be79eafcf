"""Marketers' templates: keyword insertion, place names in Russian cases, and the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.rules import places
from service.rules.engine import Site, _context, decide
from service.rules.index import RuleIndex
from service.rules.phrase import Keyword
from service.rules.templates import (
    MAX_OUTPUT,
    MAX_RENDERED,
    RENDERED,
    TemplateError,
    Text,
    _bounded,
    _env,
    _Printer,
    compile_text,
)
from tests.conftest import swaps_of
from tests.test_engine import compile_site, make_visit

SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ phrase|attr('__class__') }}",
    "{{ lipsum.__globals__['os'] }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% set x = 1 %}{{ x }}",
    "{{ phrase.__len__() }}",
    "{{ range(10**9)|list }}",
    "{{ config }}",
    "{{ request }}",
    "{{ phrase * 1000000000 }}",
    "{{ 'x' ** 9 }}",
    "{{ keyword(case='Shouting') }}",
    "{{ keyword }}",
    "{{ city.inn }}",
]


@pytest.mark.parametrize("payload", SSTI)
def test_ssti_payloads_are_refused_when_rules_load(payload: str) -> None:
    with pytest.raises(TemplateError):
        compile_text(payload)


@pytest.mark.parametrize("payload", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ phrase.__class__.__base__ }}",
    "{{ phrase.format.__globals__ }}",
])
def test_sandbox_stops_payloads_that_skip_the_check(payload: str) -> None:
    # Built without compile_text's check, as if it had a hole: the sandbox reveals nothing.
    unchecked = Text(payload, frozenset({"phrase"}), _env.from_string(payload))
    assert unchecked.render({"phrase": "x"}) in (None, "")


# Texts whose work grows faster than the phrase: 0.3-2.4 s a decision with a 200-letter phrase.
QUADRATIC = [
    "{{ phrase|replace('', phrase)|replace('', phrase) }}",
    "{{ phrase|replace('', phrase) }}",
    "{{ phrase|replace(' ', keyword(default='x')) }}",
    "{{ phrase|join(phrase) }}",
    "{{ (phrase|join(source))|length }}",
    "{% for a in phrase %}{% for b in phrase %}x{% endfor %}{% endfor %}",
    "{% for a in phrase %}{{ phrase }}{% endfor %}",
    "{% for a in phrase if phrase|replace('', a) %}x{% endfor %}",
    "{% for a in phrase %}{% if a %}{{ campaign|upper }}{% endif %}{% endfor %}",
    "{{ phrase.ljust(100000000) }}",
    "{{ '%0999999999d' % 1 }}",
]
LINEAR = [
    "{{ phrase|replace('a', 'bb')|upper }}",
    "{{ 'aaaa'|replace('a', phrase) }}",
    "{{ (phrase|join('-'))|join('-') }}",
    "{% for a in phrase %}{{ a }}-{% endfor %}",
    "{% for w in [phrase, city.in] %}{{ w }}{% endfor %}",
    "{% for a in phrase %}{{ phrase|length }}{% endfor %}",
    "{% if phrase %}{{ keyword(default='x')|title }}{% else %}{{ city.in }}{% endif %}",
]


@pytest.mark.parametrize("source", QUADRATIC)
def test_texts_whose_work_grows_faster_than_the_phrase_are_refused(source: str) -> None:
    with pytest.raises(TemplateError):
        compile_text(source)


@pytest.mark.parametrize("source", LINEAR)
def test_texts_linear_in_the_phrase_are_allowed_and_bounded(source: str) -> None:
    text = compile_text(source)
    rendered = text.render({"phrase": "я " * 100, "city": places.place("Москва", "ru"), "keyword": Keyword("я " * 100)})
    assert rendered is not None and 0 < len(rendered) <= MAX_OUTPUT


def test_a_render_stops_once_it_has_made_enough() -> None:
    # Linear in the phrase, with a large constant: 200 letters would make 200,000 characters.
    text = compile_text("{% for a in phrase %}" + "ab" * 500 + "{% endfor %}")
    made: list[int] = []

    def counted(chunks: Iterator[str]) -> Iterator[str]:
        for chunk in chunks:
            made.append(len(chunk))
            yield chunk

    rendered = _bounded(counted(text._template.generate({"phrase": "x" * 200})))  # type: ignore[union-attr]
    assert len(rendered) == MAX_RENDERED
    assert sum(made) < MAX_RENDERED + 1000  # one more turn of the loop at most, not 200
    assert text.render({"phrase": "x" * 200}) == ("ab" * 500)[:MAX_OUTPUT]


@pytest.mark.parametrize("source", ["{{ phrase|truncate('30') }}", "{{ 1/0 }}", "{{ 'Окна ' + city }}"])
def test_a_text_that_fails_for_a_visitor_is_left_out_and_said_once(source: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """`rules check` refuses such a text; should one fail for a visitor all the same, the log says which."""
    text = compile_text(source)
    for phrase in ("окна", "окна пвх"):
        assert text.render({"phrase": phrase, "city": places.place("Москва", "ru"), "keyword": Keyword(phrase)}) is None
    failures = [record.getMessage() for record in caplog.records if "a text failed" in record.getMessage()]
    assert len(failures) == 1 and repr(source) in failures[0]


def test_default_stands_for_an_empty_campaign_and_an_unknown_city(tmp_path: Path) -> None:
    """An ad's URL without utm_campaign gives an empty campaign, GeoIP without a city an empty place:
    `default` fills in both, as marketers write it, not only what is undefined."""
    site = compile_site({"site": "s", "rules": [{"id": "r", "swap": [
        {"selector": "h1", "text": "Акция «{{ campaign|default('весна') }}» {{ city.in|d('по всей России') }}"}]}]},
        tmp_path)
    assert swaps_of(decide(site, make_visit({"url": "/?utm_source=yandex"})))["h1"] == "Акция «весна» по всей России"
    moscow = make_visit({"url": "/?utm_campaign=лето", "geo": {"country": "RU", "city": ["Москва", "Moscow"]}})
    assert swaps_of(decide(site, moscow))["h1"] == "Акция «лето» в Москве"


def test_text_is_whitespace_folded_and_limited() -> None:
    assert compile_text("a   b\n c").render({}) == "a b c"
    long = compile_text("{{ phrase }}").render({"phrase": "я" * 5000})
    assert long is not None and len(long) == MAX_OUTPUT


@pytest.mark.parametrize(("city", "expected"), [
    ("Москва", "Доставка в Москве, в Москву, из Москвы; Москвой"),
    ("Владимир", "Доставка во Владимире, во Владимир, из Владимира; Владимиром"),
    ("Нижний Новгород", "Доставка в Нижнем Новгороде, в Нижний Новгород, из Нижнего Новгорода; Нижним Новгородом"),
    ("Ростов-на-Дону", "Доставка в Ростове-на-Дону, в Ростов-на-Дону, из Ростова-на-Дону; Ростовом-на-Дону"),
    ("Санкт-Петербург", "Доставка в Санкт-Петербурге, в Санкт-Петербург, из Санкт-Петербурга; Санкт-Петербургом"),
])
def test_city_in_russian_cases_with_prepositions(city: str, expected: str, tmp_path: Path) -> None:
    site = compile_site({"site": "s", "rules": [{"id": "r", "swap": [
        {"selector": "h1", "text": "Доставка {{ city.in }}, {{ city.to }}, {{ city.from }}; {{ city.ablt }}"}]}]},
        tmp_path)
    visit = make_visit({"url": "/", "geo": {"country": "RU", "city": [city, "x"]}})
    assert swaps_of(decide(site, visit))["h1"] == expected


def test_per_site_override_table(tmp_path: Path) -> None:
    site = compile_site({
        "site": "s",
        "places": {"Москва": {"in": "в столице"}},
        "rules": [{"id": "r", "swap": [{"selector": "h1", "text": "Работаем {{ city.in }}, едем из {{ city.gent }}"}]}],
    }, tmp_path)
    visit = make_visit({"url": "/", "geo": {"country": "RU", "city": ["Москва", "Moscow"]}})
    assert swaps_of(decide(site, visit))["h1"] == "Работаем в столице, едем из Москвы"


def test_english_site_uses_english_names(tmp_path: Path) -> None:
    site = compile_site({"site": "s", "language": "en", "rules": [{"id": "r", "swap": [
        {"selector": "h1", "text": "Delivery {{ city.in }}, {{ region.in }}"}]}]}, tmp_path)
    visit = make_visit({"url": "/", "geo": {"country": "RU", "city": ["Москва", "Moscow"]}})
    assert swaps_of(decide(site, visit))["h1"].startswith("Delivery in Moscow")


def test_unknown_city_leaves_a_readable_text(tmp_path: Path) -> None:
    site = compile_site({"site": "s", "rules": [{"id": "r", "swap": [
        {"selector": "h1", "text": "Кондиционеры{% if city.name %} {{ city.in }}{% endif %}"}]}]}, tmp_path)
    assert swaps_of(decide(site, make_visit({"url": "/"})))["h1"] == "Кондиционеры"


def test_inflection_is_computed_before_visitors_ask() -> None:
    names = places.known_places()
    assert len(names) > 1000
    places.warm(names)
    before = places.place.cache_info().hits
    for name in names[:200]:
        places.place(name)
    assert places.place.cache_info().hits - before == 200


# Pieces of texts: what compiles to a _Printer (names, attributes, keyword calls, constants,
# comments, raw blocks, whitespace control) and, mixed in, what only Jinja renders.
PIECES = [
    "Купить ", " ", "\n", "  \t", "<b>&amp;</b>", "я" * 600,
    "{{ phrase }}", "{{ medium }}", "{{ source }}", "{{ campaign }}",
    "{{ city }}", "{{ city.in }}", "{{ city.name }}", "{{ region.gent }}", "{{ country.to }}",
    "{{ keyword() }}", "{{ keyword('Кондиционеры') }}", "{{ keyword('x', 5, 'upper') }}",
    "{{ keyword(default='Кондиционеры', max=40, case='sentence') }}", "{{ keyword(case='title', default='') }}",
    "{{ 'literal' }}", "{{ 42 }}", "{{ none }}", "{{ true }}", "{# a note #}",
    "{% raw %}{{ phrase }}{% endraw %}", "{{- phrase -}}", "{{ city.in or 'по всей России' }}",
    "{% if city.name %} в {{ city.name }}{% endif %}", "{{ phrase|upper }}",
]


def _contexts() -> list[dict[str, Any]]:
    site = Site("s", "s", "ru", frozenset(), None, {}, RuleIndex([]), (), (), uses_places=True)
    english = Site("s", "s", "en", frozenset(), None, {}, RuleIndex([]), (), (), uses_places=True)
    visits = [
        make_visit({"url": "/?utm_source=yandex&utm_medium=cpc&utm_term=купить кондиционер",
                    "geo": {"country": "RU", "city": ["Нижний Новгород", "Nizhniy Novgorod"]}}),
        make_visit({"url": "/?utm_term=очень длинная фраза про сплит системы с установкой и доставкой"}),
        make_visit({"url": "/"}),
    ]

    def fails(*args: Any, **kwargs: Any) -> str:
        raise ValueError("broken")

    def stops(*args: Any, **kwargs: Any) -> str:
        raise StopIteration

    return [
        *(_context(on, seen) for on in (site, english) for seen in visits),
        {},  # every name undefined
        {"phrase": None, "city": "Москва", "region": None, "country": 5, "keyword": "not callable"},
        {"keyword": fails, "city": places.place("Тверь")},
        {"keyword": stops, "medium": None, "phrase": "a\u00a0b"},
        {"keyword": lambda *args, **kwargs: None, "city": {"in": "в словаре"}},
    ]


CONTEXTS = _contexts()


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=6))
def test_printed_texts_render_as_jinja_renders_them(pieces: list[str]) -> None:
    source = "".join(pieces)
    text = compile_text(source)
    jinja = Text(source, text.names, _env.from_string(source))
    for context in CONTEXTS:
        assert text.render(context) == jinja.render(context), (source, context)


def test_texts_without_tags_or_filters_do_without_jinja() -> None:
    printed = compile_text("{{ keyword(default='Кондиционеры', max=40) }} {{ city.in }}: {{ phrase }} {# note #}")
    assert isinstance(printed._template, _Printer)
    literal = compile_text("Кондиционеры {# note #}{% raw %}{{ city }}{% endraw %}")
    assert literal.render({}) == "Кондиционеры {{ city }}"  # as Jinja renders it, not the source
    assert not isinstance(compile_text("{{ city.in or 'по всей России' }}")._template, _Printer)


@pytest.mark.parametrize("source", ["{{ city or 'Texas' }}", "{{ city|default('Texas') }}",
                                    "{% if city %}{{ city }}{% else %}Texas{% endif %}", "{{ city.in or 'Texas' }}"])
def test_a_town_geoip_does_not_know_takes_the_fallback(source: str) -> None:
    text = compile_text(source)
    assert text.render({"city": places.place("", "en")}) == "Texas"
    assert text.render({"city": places.place("Austin", "en")}) in ("Austin", "in Austin")


def test_remembered_renders_follow_every_value_they_depend_on() -> None:
    text = compile_text("{{ keyword(default='Кондиционеры', case='sentence') }} {{ city.in or 'по всей России' }}")
    assert not isinstance(text._template, _Printer)  # an operator: Jinja renders it
    cases = [
        ("Москва", "купить кондиционер", "Купить кондиционер в Москве"),
        ("Владимир", "купить кондиционер", "Купить кондиционер во Владимире"),
        ("Владимир", None, "Кондиционеры во Владимире"),
    ]
    RENDERED.clear()
    for _ in range(2):  # the second time from memory
        for city, phrase, expected in cases:
            assert text.render({"city": places.place(city), "keyword": Keyword(phrase)}) == expected
    assert len(RENDERED) == len(cases)

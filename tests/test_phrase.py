import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from service.rules.phrase import (
    Traffic,
    insert_keyword,
    normalise,
    parse_traffic,
)

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "cases" / "referrers.json").read_text(encoding="utf-8")
)
TRAFFIC_FIELDS = set(Traffic._fields)


def test_case_table_is_well_formed() -> None:
    assert len(CASES) >= 20
    for case in CASES:
        assert case["expected"], case["name"]
        assert set(case["expected"]) <= TRAFFIC_FIELDS, case["name"]


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_parse_traffic(case: dict[str, Any]) -> None:
    traffic = parse_traffic(case["url"], case["ref"])
    actual = {name: getattr(traffic, name) for name in case["expected"]}
    assert actual == case["expected"]


@pytest.mark.parametrize(
    ("url", "referrer"),
    [
        ("", None),
        ("\ud800", "\udcff"),
        ("https://site.example/?utm_term=%ED%A0%80\ud800", "http://a\ud800b/?q=\ud800"),
        ("https://site.example/?utm_source=%98%98", "https://yandex.ru/?text=%98"),
        ("http://[", "http://]"),
        ("https://site.example/?" + "&".join(["a=1"] * 5_000), "https://x" * 2_000),
        ("?" * 1_000, "//" * 1_000),
    ],
)
def test_parse_traffic_never_raises_and_returns_encodable_text(
    url: str, referrer: str | None
) -> None:
    traffic = parse_traffic(url, referrer)
    for value in traffic:
        if value is not None:
            value.encode("utf-8")  # no lone surrogates leak into the response
            assert len(value) <= 200


def test_parse_traffic_replaces_undecodable_bytes() -> None:
    # 0x98 is undefined in cp1251, so neither UTF-8 nor cp1251 can decode it.
    assert parse_traffic("https://site.example/?utm_campaign=a%98b", None).campaign == "a\ufffdb"


@pytest.mark.parametrize(("query", "field", "expected"), [
    ("utm_term=%E2%80%AE%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C", "phrase", "купить"),  # a bidi override: dropped
    ("utm_term=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C%00%D0%BA%D0%BE%D1%82", "phrase", "купить кот"),  # NUL: a space
    # a soft hyphen and a zero-width space inside a word: dropped
    ("utm_term=%D0%BA%D0%BE%D0%BD%C2%AD%D0%B4%D0%B8%E2%80%8B%D1%86%D0%B8%D1%8F", "phrase", "кондиция"),
    ("utm_term=%E2%80%8B%E2%80%8B%EF%BB%BF", "phrase", None),  # nothing visible: none
    ("utm_source=ya%E2%80%AEndex", "source", "yandex"),
    ("utm_campaign=summer%01sale%1B", "campaign", "summer sale"),
    ("utm_term=%F0%9F%91%A8%E2%80%8D%F0%9F%91%A9", "phrase", "\U0001f468\U0001f469"),  # an emoji's joiner too
])
def test_a_crafted_link_puts_no_invisible_character_in_the_traffic(
        query: str, field: str, expected: str | None) -> None:
    """What the page shows and the reports list: a phrase or a campaign a link carries with
    control characters, bidi overrides or zero-width spaces in it."""
    assert getattr(parse_traffic(f"https://site.example/?{query}", None), field) == expected


@pytest.mark.parametrize(("query", "field", "expected"), [
    ("utm_term=%25D0%25BF%25D0%25BB%25D0%25B8%25D1%2582%25D0%25BA%25D0%25B0+100%25", "phrase", "плитка 100%"),
    ("utm_campaign=%D0%BF%D0%BB%D0%B8%D1%82%D0%BA%D0%B0-100%25", "campaign", "плитка-100%"),  # once
    ("utm_campaign=sale%2550", "campaign", "sale%50"),  # a percent sign and digits, as written
    ("utm_campaign=%25D0%25", "campaign", "%D0%"),  # cut short: no letter, kept as it came
])
def test_a_value_encoded_twice_is_read_as_its_text(query: str, field: str, expected: str) -> None:
    """A UTM builder's link pasted into another, or a redirect's: the keyword report showed a
    row «%D0%BF%D0%BB…» where the phrase was «плитка»."""
    assert getattr(parse_traffic(f"https://site.example/?{query}", None), field) == expected


def test_traffic_is_frozen() -> None:
    traffic = parse_traffic("https://site.example/", None)
    with pytest.raises(AttributeError):
        traffic.medium = "cpc"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Купить КОНДИЦИОНЕР", "купить кондиционер"),
        ("Ёлка зелёная", "елка зеленая"),
        (unicodedata.normalize("NFD", "Ёлка"), "елка"),
        ("  купить,кондиционер!!! (недорого)  ", "купить кондиционер недорого"),
        ("«Кондиционер» — 25% скидка; №1", "кондиционер 25 скидка 1"),
        ("Wi-Fi роутер в Ростов-на-Дону", "wi-fi роутер в ростов-на-дону"),
        ("-минус - тире- a--b", "минус тире a b"),
        ("snake_case\ttab\nnewline", "snake case tab newline"),
        ("", ""),
        ("?!…", ""),
        # Latin look-alikes in a Russian word read as the letters they look like; not in a Latin word.
        ("oкна пBх стеклопaкет", "окна пвх стеклопакет"),
        ("café кондиционер lg", "café кондиционер lg"),
        # Single letters with a slash or dots between are one word, as people write it without.
        ("окна б/у", "окна бу"),
        ("окна Б.У.", "окна бу"),
        ("ж/д 1/2", "жд 1 2"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [(None, "Кондиционеры"), ("", "Кондиционеры"), ("   ", "Кондиционеры")],
)
def test_insert_keyword_default(phrase: str | None, expected: str) -> None:
    assert insert_keyword(phrase, "Кондиционеры") == expected


def test_insert_keyword_length_limit() -> None:
    assert insert_keyword("купить кондиционер", "Кондиционеры", max_length=18) == (
        "купить кондиционер"
    )
    assert insert_keyword("купить кондиционер", "Кондиционеры", max_length=17) == "Кондиционеры"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("keep", "купить кондиционер LG"),
        ("lower", "купить кондиционер lg"),
        ("upper", "КУПИТЬ КОНДИЦИОНЕР LG"),
        ("sentence", "Купить кондиционер LG"),
        ("title", "Купить Кондиционер LG"),
    ],
)
def test_insert_keyword_case(case: str, expected: str) -> None:
    assert insert_keyword("купить кондиционер LG", "x", case=case) == expected


@pytest.mark.parametrize(
    ("phrase", "case", "expected"),
    [
        ("\U0001f525купить кондиционер", "sentence", "\U0001f525Купить кондиционер"),
        ("«купить» кондиционер", "title", "«Купить» Кондиционер"),
        ("— купить", "sentence", "— Купить"),
        ("5 кондиционеров", "sentence", "5 кондиционеров"),
        ("\U0001f525\U0001f525", "sentence", "\U0001f525\U0001f525"),
        # A word with a capital already is written as its maker writes it.
        ("iPhone 15 чехол", "sentence", "iPhone 15 чехол"),
        ("купить iPhone", "title", "Купить iPhone"),
        ("«iPhone» купить", "sentence", "«iPhone» купить"),
    ],
)
def test_the_first_letter_is_capitalised_past_a_quote_an_emoji_or_a_dash(phrase: str, case: str,
                                                                          expected: str) -> None:
    assert insert_keyword(phrase, "x", case=case) == expected


def test_insert_keyword_default_is_used_as_written() -> None:
    assert insert_keyword(None, "лучшие кондиционеры", case="title") == "лучшие кондиционеры"


def test_insert_keyword_unknown_case() -> None:
    with pytest.raises(ValueError, match="camel"):
        insert_keyword("x", "y", case="camel")
    with pytest.raises(ValueError, match="camel"):
        insert_keyword(None, "y", case="camel")


@pytest.mark.parametrize("phrase", [
    "окна звоните 89991234567", "окна +7 (999) 123-45-67", "окна 8 999 123 45 67", "окна пишите a@b.example",
    "окна на okna-deshevo.ru", "окна на окна.рф", "окна www.example", "https://example.com окна", "окна http://localhost",
])
def test_a_phrase_with_contacts_of_its_own_shows_the_default(phrase: str) -> None:
    """A crafted link's phrase cannot put another phone number, address or link on the page."""
    assert insert_keyword(phrase, "Окна") == "Окна"


@pytest.mark.parametrize("phrase", ["окна 1200х1400", "iphone 15 pro max 256", "г.москва окна", "окна т.е. дешево"])
def test_numbers_and_dots_that_are_no_contacts_are_printed(phrase: str) -> None:
    assert insert_keyword(phrase, "Окна") == phrase


@pytest.mark.parametrize(("phrase", "printed"), [
    ("Пластиковые окна!!!", "Пластиковые окна"), ("купить кондиционер?", "купить кондиционер"),
    ("окна —", "окна"),  # what a town left behind: «окна — в москве» (service.rules.placewords)
    ("курсы c++", "курсы c++"), ("?!", "Окна"),
])
def test_a_phrase_ends_without_the_punctuation_the_text_would_follow(phrase: str, printed: str) -> None:
    """Else «Пластиковые окна!!! в Москве»."""
    assert insert_keyword(phrase, "Окна") == printed

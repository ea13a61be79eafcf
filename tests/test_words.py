"""What words stand for (service.rules.words) and the typo index (service.rules.typos).

How phrases meet keywords as a marketer sees it is the table of tests/test_keywords.py; these
are the parts' own promises."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.rules.typos import Speller, budget, within
from service.rules.words import keyword_terms, read, readings, spelt_in_cyrillic
from tests.edits import distance


def test_a_phrase_reads_every_dictionary_reading_of_its_words() -> None:
    assert {"пол", "пола", "теплый", "цена"} <= read("тёплые полы цена").lemmas
    assert {"сталь", "стать"} <= read("стали").lemmas
    assert read("Ёлки ёлка елку купить").lemmas == {"елка", "купить"}


def test_english_words_read_as_their_stems_and_irregular_bases() -> None:
    assert read("Buying air conditioners 2024").lemmas == {"buy", "air", "condition", "2024"}
    assert {"buy", "bought"} <= read("bought").lemmas
    assert {"saw", "see"} <= read("saw").lemmas  # the tool is still a reading of «saw»
    assert readings("children") == {"children", "child"}


def test_an_empty_phrase_reads_nothing() -> None:
    assert read(" ,.! ") == (frozenset(), frozenset(), (), ())


def test_readings_are_remembered_per_phrase() -> None:
    assert read("кондиционеры в офис") is read("кондиционеры в офис")


@pytest.mark.parametrize(("latin", "russian"), [
    ("kondicioner", "кондиционер"), ("konditsioner", "кондиционер"), ("novyy", "новый"), ("teplye", "теплые"),
    ("natyazhnye", "натяжные"), ("shchetka", "щетка"), ("yeli", "ели"), ("polya", "поля"), ("s7", "с7"),
])
def test_russian_spelt_in_latin_letters_is_read_back(latin: str, russian: str) -> None:
    assert spelt_in_cyrillic(latin) == russian


def test_latin_words_read_as_russian_only_where_the_phrase_reads_as_russian() -> None:
    assert {"купить", "кондиционер"} <= read("kupit kondicioner").terms
    assert "продажа" in read("ghjlf;f").terms  # «;» is the key of «ж»
    assert "кондиционер" in read("RJYLBWBJYTH").terms
    assert read("sale").terms == {"sale"}  # «сале» is a Russian word, but short: no phrase reads as it
    assert read("bought an air conditioner").terms == read("bought an air conditioner").lemmas


def test_compounds_stand_for_their_parts_where_a_keyword_names_them() -> None:
    assert {"сплит", "система"} <= read("сплит-системы").terms
    fused = read("сплитсистемы")
    assert fused.fused == ("сплит+система",) and "система" not in fused.terms  # «газобетон» is no «бетон»
    assert read("евроремонт").fused == ("евро+ремонт",)  # the dictionary knows it, and it is two nouns
    assert read("обслуживание").fused == ()  # «обслужив» and «ание» are no nouns
    assert keyword_terms("сплит система").pairs == {"сплит+система"}
    assert keyword_terms("купить кондиционер").pairs == frozenset()  # a verb and a noun: no compound
    assert keyword_terms("евроремонт").variants == ({"евроремонт"}, {"евро", "ремонт"})
    assert keyword_terms("сплит-система", exact=True).variants == ({"сплит-система"},)


def test_a_keyword_word_in_its_dictionary_form_means_that_word_only() -> None:
    assert keyword_terms("пол").variants == ({"пол"},)  # not also пола and полый
    assert not matches("пол", "полая труба") and matches("пола", "ремонт полов")
    assert set(keyword_terms("цветы").variants) == {frozenset({"цветок"}), frozenset({"цвета"})}


def test_minus_words_are_read_in_every_form() -> None:
    keyword = keyword_terms("кондиционер -волос -автомобильный")
    assert keyword.variants == ({"кондиционер"},) and {"волос", "автомобильный"} <= keyword.minus
    assert keyword_terms("-волос").variants == ()


def test_words_a_dictionary_knows_are_never_typos() -> None:
    assert read("покупка кондиционера").unknown == ()
    assert read("кандиционера").unknown[0] == "кандиционера"
    assert read("ремонт кндц").unknown == ()  # four letters: too short to tell a typo


@pytest.mark.parametrize(("a", "b", "edits"), [
    ("кондиционер", "кондиционер", 0), ("кандиционер", "кондиционер", 1), ("кондицонер", "кондиционер", 1),
    ("кондициноер", "кондиционер", 1), ("ремон", "ремонт", 1), ("кандицонер", "кондиционер", 2),
    ("ca", "abc", 3), ("", "abc", 3),
])
def test_distance_counts_insertions_deletions_replacements_and_swaps(a: str, b: str, edits: int) -> None:
    assert distance(a, b) == edits == distance(b, a)
    assert within(a, b, edits) and within(b, a, edits) and not within(a, b, edits - 1)


RUSSIAN_WORDS = st.text("абвгдежзийклмнопрстуфхцчшщъыьэюя", min_size=1, max_size=12)
TYPED_WORDS = RUSSIAN_WORDS | st.text("абвгде0123xё-", min_size=1, max_size=12)  # what a phrase may hold


@settings(max_examples=300, deadline=None)
@given(st.lists(RUSSIAN_WORDS, min_size=1, max_size=20), st.lists(TYPED_WORDS, min_size=1, max_size=5))
def test_the_typo_index_finds_exactly_what_comparing_with_every_term_finds(
        terms: list[str], words: list[str]) -> None:
    near = {term for term in terms for word in words if budget(term) and distance(word, term) <= budget(term)}
    assert Speller(terms).correct(tuple(words)) == frozenset().union(*map(readings, near))


LETTERS = "абвгдежзийклмнопрстуфхцчшщъыьэюя"


@st.composite
def typo_of(draw: st.DrawFn, term: str) -> str:
    """The term with one or two letters inserted, deleted, replaced or swapped: anywhere, at
    its start as at its end, as people mistype."""
    word = term
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, max(len(word) - 1, 0)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
        letter = draw(st.sampled_from(LETTERS))
        if edit == "insert":
            word = word[:at] + letter + word[at:]
        elif edit == "delete":
            word = word[:at] + word[at + 1:]
        elif edit == "replace":
            word = word[:at] + letter + word[at + 1:]
        else:
            word = word[:at] + word[at + 1:at + 2] + word[at:at + 1] + word[at + 2:]
    return word


@settings(max_examples=300, deadline=None)
@given(st.data(), st.lists(st.text(LETTERS[:6], min_size=5, max_size=16), min_size=1, max_size=12))
def test_the_typo_index_finds_every_typo_of_a_long_term_as_comparing_with_every_term_does(
        data: st.DataObject, terms: list[str]) -> None:
    """Terms of few letters, long ones among them: their typos come near many terms, at any
    place in the word (the index reads only a word's start)."""
    words = [data.draw(typo_of(term)) for term in terms[:3]]
    near = {term for term in terms for word in words if budget(term) and distance(word, term) <= budget(term)}
    assert Speller(terms).correct(tuple(words)) == frozenset().union(*map(readings, near))


def test_a_typo_at_the_start_of_a_long_term_is_found() -> None:
    """The index makes deletions of a word's start only: a word two letters short of a term
    meets it there all the same."""
    assert Speller(["установкой"]).correct(("тановкой",)) == {"установка"}
    assert Speller(["кондиционерами"]).correct(("кондиционерми", "кондиционер")) == {"кондиционер"}


@settings(max_examples=2000, deadline=None)
@given(st.text("аб", max_size=9), st.text("аб", max_size=9), st.integers(0, 3))
def test_within_is_distance_compared(a: str, b: str, edits: int) -> None:
    """`within` tries the edits one by one where the words first differ: as far as a typo's
    edits go, it tells what the distance does."""
    assert within(a, b, edits) == (distance(a, b) <= edits)


def test_the_typo_index_holds_only_russian_words_long_enough_to_forgive_a_typo() -> None:
    speller = Speller(["кондиционер", "пол", "сплит+система", "split", "ремонт"])
    assert speller.correct(("кондицонер", "пл", "сплитсистема", "splat", "рем0нт")) == {"кондиционер", "ремонт"}
    assert Speller(["цветов"]).correct(("цвтов",)) == {"цвет", "цветок"}  # a typo of a form reads as that form
    # A letter that is not Russian is an edit, as any other: a model number is no typo.
    assert Speller(["кондиционер"]).correct(("кондиционер12",)) == {"кондиционер"}
    assert Speller(["кондиционер"]).correct(("кондиционер123", "кондиционер000123х")) == frozenset()
    assert all(re.fullmatch("[а-я]+", spelling) for spelling in speller._spellings)


@pytest.mark.parametrize(("phrase", "respelt"), [
    ("Купить окндиционер", "Купить кондиционер"),  # the spelling nearest the word
    ("КУПИТЬ ОКНДИЦИОНЕР", "КУПИТЬ КОНДИЦИОНЕР"),  # in the case typed
    ("купить кондиционерв", "купить кондиционеры"),  # one edit from both: the one as long
    ("рем0нт кондицонера", "ремонт кондиционера"),  # its form, from the lemma guessed for it
    ("недорого кандиционерами", "недорого кондиционерами"),
    ("ремонт сплит ситсем", "ремонт сплит систем"),
    ("сплит-ситсема, срочно", "сплит-система, срочно"),
    ("купить бебабаба", "купить бебабаба"),  # no keyword's typo
    ("Купит кондиционер", "Купит кондиционер"),  # a word the dictionary knows is no typo
])
def test_a_typo_is_respelt_as_the_keywords_write_it(phrase: str, respelt: str) -> None:
    speller = Speller(["кондиционер", "кондиционеры", "купить", "сплит", "система", "ремонт"])
    assert speller.respell(phrase, read(phrase).unknown) == respelt


@settings(max_examples=300, deadline=None)
@given(st.data(), st.lists(TYPED_WORDS | st.sampled_from(["КОНДИЦИОНЕР", "Система", "ёлка", "-", "!", "_"]),
                           min_size=1, max_size=6))
def test_respelling_changes_words_only_and_each_to_a_near_one(data: st.DataObject, words: list[str]) -> None:
    terms = ["кондиционер", "кондиционеры", "система", "ремонт"]
    words += [data.draw(typo_of(data.draw(st.sampled_from(terms))))]
    phrase = " ".join(data.draw(st.permutations(words)))
    respelt = Speller(terms).respell(phrase, read(phrase).unknown)
    word = re.compile(r"[^\W_]+")
    assert word.split(respelt) == word.split(phrase)  # the spaces, hyphens and signs between words as they were
    for before, after in zip(word.findall(phrase), word.findall(respelt), strict=True):
        assert after == before or distance(before.lower(), after.lower()) <= 3


def test_a_word_the_keywords_write_as_typed_is_kept_as_typed() -> None:
    """A brand no dictionary knows is a keyword's own word, not a typo: its letters' case stays."""
    assert Speller(["мидея", "кондиционер"]).respell("МиДея кондицонер", ("мидея", "кондицонер")) == "МиДея кондиционер"


def matches(keyword: str, phrase: str) -> bool:
    """As a site whose only keyword this is matches (Site.match), typos aside."""
    terms, reading = keyword_terms(keyword), read(phrase)
    found = reading.terms.union(*(pair.split("+") for pair in reading.fused if pair in terms.pairs))
    return terms.minus.isdisjoint(found) and any(words <= found for words in terms.variants)


@pytest.mark.parametrize(("keyword", "phrase"), [
    ("купить кондиционер", "кондиционеры купить недорого"),
    ("ремонт стиральных машин", "ремонт стиральной машины на дому"),
    ("доставка цветов москва", "Доставка цветов по Москве"),
    ("ёлки купить", "купить елку"),
    ("пластиковые окна", "пластиковое окно цена"),
    ("такси ростов-на-дону", "Такси Ростов-на-Дону круглосуточно"),
    ("buy air conditioner", "buying air conditioners cheap"),
    ("wi-fi router", "Wi-Fi routers"),
    ("wi-fi", "wi fi"),
    ("iphone 15", "купить iPhone 15 Pro"),
])
def test_keyword_matches_phrase(keyword: str, phrase: str) -> None:
    assert matches(keyword, phrase)


@pytest.mark.parametrize(("keyword", "phrase"), [
    ("купить кондиционер", "кондиционер в аренду"),
    ("установка кондиционера", "установить кондиционер"),
    ("buy air conditioner", "air conditioner repair"),
])
def test_keyword_does_not_match_phrase(keyword: str, phrase: str) -> None:
    assert not matches(keyword, phrase)

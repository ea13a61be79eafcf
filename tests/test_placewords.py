"""Which words of a phrase keyword insertion leaves out as the town it names (docs/RULES.md)."""

import pytest

from service.rules.placewords import names_a_place, without_own_place, without_places
from service.rules.words import read


@pytest.mark.parametrize(("phrase", "city", "printed"), [
    ("окна пвх москва", "Москва", "окна пвх"),
    ("Окна в Москве, недорого", "Москва", "Окна недорого"),  # a word with its punctuation
    ("окна в г. Москва", None, "окна"),  # «г.» goes with its town, as a preposition does
    ("окна спб", "Москва", "окна"),  # a larger city's nickname, wherever the visitor is
    ("окна в нижнем новгороде", "Нижний Новгород", "окна"),  # a name of two words, whole
    ("окна нижний этаж", "Нижний Новгород", "окна нижний этаж"),  # its first word alone is no town
    ("асбест плиты", "Москва", "асбест плиты"),  # a larger city's name, likelier a common word:
    ("асбест плиты", "Асбест", "плиты"),  # only the visitor's own town
    ("окна,москва", "Москва", "окна,москва"),  # words typed as one are none of them left out
    ("москва", "Москва", ""),  # nothing left: keyword() shows its default
])
def test_the_town_a_phrase_names_is_left_out_with_its_preposition(phrase: str, city: str | None,
                                                                   printed: str) -> None:
    assert without_places(phrase, city) == printed
    if printed != phrase:  # the quick check before it never misses one
        assert names_a_place(read(phrase).terms, city)


def test_most_phrases_name_no_town_and_cost_the_quick_check_alone() -> None:
    assert not names_a_place(read("купить кондиционер недорого").terms, "Москва")


@pytest.mark.parametrize(("phrase", "printed"), [
    ("ac repair austin", "ac repair"),
    ("AC Repair in Austin, TX", "AC Repair"),  # with its state's code, as American searches add it
    ("ac repair near austin texas", "ac repair"),
    ("best austin hvac company", "best hvac company"),
    ("pool repair in round rock", "pool repair in round rock"),  # another town: as typed
    ("austin", ""),  # nothing left: keyword() shows its default
])
def test_an_english_phrase_leaves_out_the_visitors_own_town_and_state(phrase: str, printed: str) -> None:
    assert without_own_place(phrase, ("Austin", "Texas", "TX")) == printed

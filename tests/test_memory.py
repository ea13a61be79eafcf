"""What a worker keeps for the answers it has made: its memos hold their parts, not buffers."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from service.front import decide
from service.rules import phrase, words
from service.rules.geo import Geo
from service.rules.phrase import Traffic

PARTS = 1000
TOWNS = [Geo("RU", "RU-MOW", f"Town {n}", {"ru": {"city": f"Город {n}", "region": "Москва", "country": "Россия"}})
         for n in range(PARTS)]


@pytest.mark.parametrize("made", [
    pytest.param(lambda n: TOWNS[n].answered("ru"), id="a place, as decisions answer it"),
    pytest.param(lambda n: decide._set(("h1.hero", "text"), f"Кондиционеры {n} в Москве"), id="a text swap"),
    pytest.param(lambda n: decide._shown("+78005553535", "moscow", "lease", f"+7495210{n:04d}", 300),
                 id="a tracking number"),
    pytest.param(lambda n: decide._source(Traffic("купить", "yandex", "yandex", "cpc", f"campaign-{n}", None, None)),
                 id="a visit's source"),
])
def test_a_kept_part_of_an_answer_takes_its_own_size(made: Callable[[int], Any]) -> None:
    """orjson returns its JSON in a 4 KiB buffer however short the JSON is: a memo of a few thousand
    parts held tens of MiB of it. Each part is a few hundred bytes and holds about that."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        parts = [made(n) for n in range(PARTS)]
        held = (tracemalloc.get_traced_memory()[0] - before) / PARTS
    finally:
        tracemalloc.stop()
    longest = max(len(orjson.dumps(part)) for part in parts)
    assert held < 1024 + longest, f"{held:.0f} bytes held a part, for JSON of at most {longest} bytes"


def test_a_remembered_phrase_with_a_word_nobody_searched_before_takes_under_1_75_kib() -> None:
    """A worker meets such phrases all day and remembers 20,000 of them (`words.read`) with their
    new words: a phrase's lemmas are its terms unless a word is hyphenated or in Latin letters,
    and the two are kept as one set (1.6 KiB a phrase; 2.0 KiB when they were two)."""
    syllables = ["ба", "га", "да", "лу", "ко", "ри", "ме", "ну", "зо", "ти", "ше", "ро", "ва", "ля", "ми", "пе"]
    rng = random.Random(5)
    phrases = [f"купить кондиционер {''.join(rng.choice(syllables) for _ in range(5))}" for _ in range(PARTS)]
    for memo in (*vars(words).values(), *vars(phrase).values()):  # empty, as a new worker's: the same every run
        if hasattr(memo, "cache_clear"):
            memo.cache_clear()
    words.read("купить кондиционер")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for text in phrases:
            words.read(text)
        held = (tracemalloc.get_traced_memory()[0] - before) / PARTS
    finally:
        tracemalloc.stop()
    assert held < 1792, f"{held:.0f} bytes a phrase"

"""Write `benchmarks/data/nouns.txt`: Russian nouns for the generated keyword rules.

    python benchmarks/make_vocabulary.py      # about 30 s; the file is kept in the repository

The nouns come from pymorphy3's dictionary (the service's own morphology), spread over the
alphabet: common, inanimate, singular nominatives of 5-12 letters, no names or places, so a
keyword «купить NOUN» lemmatises to itself and every generated keyword rule has a word of
its own, as a shop's product keywords do.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pymorphy3

OUT = Path(__file__).with_name("data") / "nouns.txt"
COUNT = 8000
LETTERS = "абвгдежзиклмнопрстуфхцчшэюя"
SECOND = "аеиоуыяюлрнвктсмпзбдг"
EXCLUDED = {"Geox", "Name", "Surn", "Patr", "Abbr", "Orgn", "Trad", "Infr", "Slng", "Arch", "Erro", "Dist"}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    morph = pymorphy3.MorphAnalyzer(lang="ru")
    nouns: list[str] = []
    seen: set[str] = set()
    per_prefix = 40  # more than needed on average: many prefixes have few nouns
    for first, second in itertools.product(LETTERS, SECOND):
        taken = 0
        for parse in itertools.islice(morph.iter_known_word_parses(first + second), 8000):
            tag, word = parse.tag, parse.word
            grammemes = set(str(tag).replace(" ", ",").split(","))
            if (tag.POS == "NOUN" and tag.case == "nomn" and tag.number == "sing" and "inan" in grammemes
                    and word == parse.normal_form and 5 <= len(word) <= 12 and word.isalpha()
                    and not grammemes & EXCLUDED and word not in seen
                    and morph.parse(word)[0].normal_form == word):  # lemmatises to itself
                seen.add(word)
                nouns.append(word)
                taken += 1
                if taken >= per_prefix:
                    break
    nouns.sort()
    if len(nouns) > COUNT:  # thin out evenly, so every part of the alphabet stays
        nouns = [nouns[i * len(nouns) // COUNT] for i in range(COUNT)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(nouns) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(nouns)} nouns")


if __name__ == "__main__":
    main()

"""Counting distinct visitors over the days' tables of visits, with numpy (service.analytics.distinct
reads the tables from the store). Imported only when a report counts: numpy brings OpenBLAS and
its libquadmath, which registers a printf format with glibc, and from then on every printf of
the process takes glibc's slow path (docs/PERFORMANCE.md, "Reports at scale")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

from service.tracking.counters import DIMENSIONS, OTHER, RECORD_BYTES, escape, finds

RECORD = np.dtype([("ids", ">u2", (len(DIMENSIONS),)), ("visitor", "<u8")])
MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: a row's key times it is a 64-bit number of its own
Column = npt.NDArray[np.int64]

assert RECORD.itemsize == RECORD_BYTES


class Visitors:
    """The distinct visitors by the values of `by`, among the visits that had the filters' values."""

    def __init__(self, codes: list[dict[bytes, int]], keys: Column, who: npt.NDArray[np.uint64]) -> None:
        self._codes, self._keys, self._who = codes, keys, who
        # A visitor and a row's key as one 64-bit number: the same for the same pair, and
        # for two pairs only if two random 64-bit hashes happen to clash. One sort then finds
        # each pair's first visit.
        pairs = who + keys.astype(np.uint64) * MIX
        order = np.argsort(pairs)
        first = np.ones(len(order), dtype=bool)
        first[1:] = pairs[order[1:]] != pairs[order[:-1]]
        found, counts = np.unique(keys[order[first]], return_counts=True)
        self._counts = dict(zip(found.tolist(), counts.tolist(), strict=True))

    def of(self, values: Sequence[str]) -> int:
        """The visitors of one row."""
        key = self._key(values)
        return 0 if key is None else cast(int, self._counts.get(key, 0))

    def besides(self, rows: Iterable[Sequence[str]]) -> int:
        """The visitors of every row but these, together: the "(other)" row's."""
        listed = [key for key in map(self._key, rows) if key is not None]
        return int(np.unique(self._who[~np.isin(self._keys, listed)]).size)

    def _key(self, values: Sequence[str]) -> int | None:
        key = 0
        for value, codes in zip(values, self._codes, strict=True):
            code = codes.get(escape(value).encode())
            if code is None:
                return None
            key = key * len(codes) + code
        return key


def count(days: list[tuple[bytes, list[dict[bytes, bytes]]]], named: list[str], by: Sequence[str],
           filters: Mapping[str, str]) -> Visitors:
    """The visitors of each day's table (with the numbers of `named`'s values that day) by the
    values of `by`, among the records that have the filters' values; `named` is `by`, then the
    other filtered dimensions."""
    codes: list[dict[bytes, int]] = [{} for _ in named]  # of each dimension: value -> its code, over the days
    wanted = [(named.index(name), finds(name, value)) for name, value in filters.items()]
    columns: list[list[Column]] = [[] for _ in by]
    who: list[npt.NDArray[np.uint64]] = []
    for table, numbered in days:
        records = np.frombuffer(table, RECORD, count=len(table) // RECORD_BYTES)
        coded = [_coded(records["ids"][:, DIMENSIONS.index(name)], numbers, found)
                 for name, numbers, found in zip(named, numbered, codes, strict=True)]
        kept = np.ones(len(records), dtype=bool)
        for at, found_it in wanted:  # any of the values it finds (a source in any letter case)
            kept &= np.isin(coded[at], [code for value, code in codes[at].items() if found_it(value)])
        for column, values in zip(columns, coded, strict=False):  # the dimensions of `by` come first
            column.append(values[kept])
        who.append(records["visitor"][kept])
    keys = np.zeros(sum(map(len, who)), dtype=np.int64)
    for column, found in zip(columns, codes, strict=False):
        keys = keys * len(found) + np.concatenate(column)
    return Visitors(codes[:len(by)], keys, np.concatenate(who))


def _coded(ids: npt.NDArray[np.uint16], numbers: dict[bytes, bytes], codes: dict[bytes, int]) -> Column:
    """A day's numbers of a dimension's values as their codes over the report's days."""
    lookup = np.full(max(len(numbers), int(ids.max(initial=0))) + 1, _code(codes, OTHER), dtype=np.int64)
    if numbers:  # a number the day's hash does not have yet stays "(other)"
        lookup[np.fromiter(map(int, numbers.values()), np.int64, len(numbers))] = [
            codes.setdefault(value, len(codes)) for value in numbers]
    return lookup[ids]


def _code(codes: dict[bytes, int], value: str) -> int:
    """A value's code, as the days' hashes hold it (escaped)."""
    return codes.setdefault(escape(value).encode(), len(codes))

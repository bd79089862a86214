"""The clusterer's inner loops, compiled (numba): the words' ids, filing articles under their
title words, finding each one's candidates there, and scoring them.

These loops run for every title word of every new article and every word of every candidate
(~2,000 multiply-adds an article). As numpy calls over a chunk of articles they were 60 % of
writing a pass of new articles, most of it building the intermediate arrays that gathered the
candidates' vectors; compiled, they touch each number once and release the GIL while they run
(the event loop goes on fetching). Imported only where articles are placed: loading numba
costs a process ~0.5 s, which a pass where nothing is new never pays.

Indices are bounds-checked: a bug here raises IndexError instead of writing past an array.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt

_compiled = numba.njit(cache=True, nogil=True, boundscheck=True)

Ints = npt.NDArray[np.integer[Any]]


@_compiled
def file_and_find(
    first_slot: int,
    title_ids: Ints,
    title_lens: Ints,
    collect: npt.NDArray[np.bool_],
    word_slots: Ints,
    word_fill: Ints,
    seen: npt.NDArray[np.float64],
    window: float,
    blocking: int,
    most: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """File articles (slots first_slot, first_slot + 1, ...) under their distinct title words,
    one after another, and find each one's candidates among the slots filed before it.

    Article i's title words are the next `title_lens[i]` of `title_ids`. `word_slots[w]`
    holds the newest slots filed under word w, oldest first, `word_fill[w]` of them (at most
    its row's length: the oldest is dropped). Where `collect[i]`, the slots already under its
    first `blocking` words are its candidates: those first seen within `window` seconds
    before it, the `most` sharing the most title words (the newest placed first on ties),
    less any seen more than `window` after it. Returns (article index, slot) pairs, by
    article, best first.
    """
    per_word = word_slots.shape[1]
    owners = np.empty(len(title_lens) * most, np.int64)
    slots = np.empty(len(title_lens) * most, np.int64)
    found = np.empty(blocking * per_word, np.int64)
    ranked = np.empty(blocking * per_word, np.int64)
    pairs = 0
    at = 0
    for i in range(len(title_lens)):
        me = first_slot + i
        m = 0
        for n in range(title_lens[i]):
            word = title_ids[at + n]
            fill = word_fill[word]
            if collect[i] and n < blocking:
                for k in range(fill):
                    found[m] = word_slots[word, k]
                    m += 1
            if fill == per_word:
                for k in range(per_word - 1):
                    word_slots[word, k] = word_slots[word, k + 1]
                word_slots[word, per_word - 1] = me
            else:
                word_slots[word, fill] = me
                word_fill[word] = fill + 1
        at += title_lens[i]
        if not m:
            continue
        # Each slot once, with how many title words it shares, as one sortable key: fewer
        # words not shared first, then slots placed later first.
        found[:m].sort()
        low, high = seen[me] - window, seen[me] + window
        distinct = 0
        k = 0
        while k < m:
            end = k + 1
            while end < m and found[end] == found[k]:
                end += 1
            if seen[found[k]] >= low:
                ranked[distinct] = (blocking - (end - k)) << 32 | (0xFFFFFFFF - found[k])
                distinct += 1
            k = end
        ranked[:distinct].sort()
        for k in range(min(distinct, most)):
            slot = 0xFFFFFFFF - (ranked[k] & 0xFFFFFFFF)
            if seen[slot] <= high:
                owners[pairs] = i
                slots[pairs] = slot
                pairs += 1
    return owners[:pairs], slots[:pairs]


@_compiled
def cosines(
    ids: Ints,
    weights: npt.NDArray[np.float32],
    owners: Ints,
    mine_at: Ints,
    mine_len: Ints,
    other_at: Ints,
    other_len: Ints,
    scratch: npt.NDArray[np.float32],
) -> npt.NDArray[np.float64]:
    """The dot product of pairs of unit vectors laid end to end in (`ids`, `weights`): for
    pair p, vector `owners[p]` of mine (at mine_at[owner], mine_len[owner] entries) with the
    other vector at other_at[p] (other_len[p] entries).

    Pairs come grouped by owner, whose vector is spread once into `scratch` (a weight for
    every word id, all zeros between calls) so that a pair costs one read per word of the
    other. In single precision: scores are compared with thresholds two decimals apart.
    """
    scores = np.zeros(len(owners))
    owner = -1
    for p in range(len(owners)):
        if owners[p] != owner:
            if owner >= 0:
                for k in range(mine_at[owner], mine_at[owner] + mine_len[owner]):
                    scratch[ids[k]] = 0
            owner = owners[p]
            for k in range(mine_at[owner], mine_at[owner] + mine_len[owner]):
                scratch[ids[k]] = weights[k]
        total = np.float32(0)
        for k in range(other_at[p], other_at[p] + other_len[p]):
            total += weights[k] * scratch[ids[k]]
        scores[p] = total
    if owner >= 0:
        for k in range(mine_at[owner], mine_at[owner] + mine_len[owner]):
            scratch[ids[k]] = 0
    return scores


_LETTER = np.uint64(12)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_HASHED = np.uint64(1 << 63)
_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: spreads keys over the slots
_HALF = np.uint64(32)


@_compiled
def word_keys(letters: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
    """A 64-bit number for each stem (a row of `letters`: an array of stories.WORD viewed as
    uint32, one letter a column), which compares much faster than the strings. A stem whose
    letters are all below U+1000 (every alphabet but the CJK scripts, Hangul and a few others)
    is its letters, 12 bits each: exact. Any other is a hash of them (FNV-1a) with the top bit
    set; two such stems colliding (odds of about n² in 2^64) would share a weight, nothing
    worse."""
    keys = np.empty(letters.shape[0], np.uint64)
    for i in range(letters.shape[0]):
        packed = np.uint64(0)
        hashed = _FNV_OFFSET
        exact = True
        for j in range(letters.shape[1]):
            letter = np.uint64(letters[i, j])
            packed = (packed << _LETTER) | letter
            hashed = (hashed ^ letter) * _FNV_PRIME  # uint64 arithmetic wraps
            exact = exact and letters[i, j] < 4096
        keys[i] = packed if exact else hashed | _HASHED
    return keys


@_compiled
def _probe(table: npt.NDArray[np.uint64], owners: Ints, key: np.uint64) -> np.int64:
    """The slot holding `key`, or the free slot where it belongs (linear probing)."""
    mask = len(table) - 1
    spread = key * _SPREAD
    at = np.int64(spread ^ (spread >> _HALF)) & mask
    while owners[at] >= 0 and table[at] != key:
        at = (at + 1) & mask
    return at


@_compiled
def place(
    table: npt.NDArray[np.uint64], owners: Ints, keys: npt.NDArray[np.uint64], ids: Ints
) -> None:
    """Enter each key with its id into an open-addressing table (`table` the keys, `owners`
    their ids, -1 where a slot is free; a power of two long, at most half full). A key already
    there keeps its first id."""
    for n in range(len(keys)):
        at = _probe(table, owners, keys[n])
        if owners[at] < 0:
            table[at] = keys[n]
            owners[at] = ids[n]


@_compiled
def find(
    table: npt.NDArray[np.uint64], owners: Ints, keys: npt.NDArray[np.uint64]
) -> npt.NDArray[np.int64]:
    """The id of each key in the table place() filled, -1 for a key not there."""
    found = np.empty(len(keys), np.int64)
    for n in range(len(keys)):
        found[n] = owners[_probe(table, owners, keys[n])]
    return found


def warm() -> None:
    """Load the compiled loops for the types placing passes them (from numba's cache, or
    compiling them the first time), so that the first articles placed do not wait for it."""
    one = np.zeros(1, np.int64)
    file_and_find(
        0, one, np.ones(1, np.int64), np.ones(1, np.bool_), np.zeros((1, 1), np.int32),
        np.zeros(1, np.int32), np.zeros(1), 0.0, 1, 1,
    )  # fmt: skip
    cosines(
        np.zeros(1, np.int32), np.zeros(1, np.float32), one, one, one, one, one,
        np.zeros(1, np.float32),
    )  # fmt: skip
    letters = np.zeros((1, 1), np.uint32)  # any width: numba types the 2-D array alone
    readonly = letters.copy()
    readonly.flags.writeable = False  # words read straight from the articles' Text bytes
    keys = word_keys(letters)
    word_keys(readonly)
    place(np.zeros(2, np.uint64), np.full(2, -1, np.int64), keys, one)
    find(np.zeros(2, np.uint64), np.full(2, -1, np.int64), keys)

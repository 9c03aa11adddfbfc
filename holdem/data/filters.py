"""Duplicate, conflicting-label and test-overlap bookkeeping for the data stage.

Everything is keyed by 64-bit BLAKE2b digests of the text, so memory grows by a few dozen bytes
per distinct instruction (~60 MB for the 563,200 train rows) and never holds the rows themselves.
A false match between two different instructions has probability ~n^2 / 2^65 (1e-8 for PokerBench).
"""
from __future__ import annotations

from hashlib import blake2b


_MASK64 = (1 << 64) - 1
_ODD = 0x9E3779B97F4A7C15  # multiplying by an odd constant mod 2^64 is a bijection


def text_key(text: str) -> int:
    return int.from_bytes(blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def bytes_key(data: bytes) -> int:
    """`text_key` of the text whose UTF-8 is `data`."""
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def pair_key(ikey: int, lkey: int) -> int:
    """One 64-bit key for an (instruction, label) pair: equal pairs give equal keys; two rows that
    share the instruction (or the label) but not both never do; others collide with p ~ 2^-64."""
    return ikey ^ ((lkey * _ODD) & _MASK64)


class LabelIndex:
    """Maps each instruction to its label; remembers instructions seen with two or more labels."""

    def __init__(self) -> None:
        self._labels: dict[int, int] = {}
        self.conflicted: set[int] = set()

    def add(self, ikey: int, lkey: int) -> None:
        seen = self._labels.setdefault(ikey, lkey)
        if seen != lkey:
            self.conflicted.add(ikey)


class RowFilter:
    """Decides, row by row, whether a valid row is kept or dropped and why.

    `known_conflicts` comes from a first pass over the input when conflicts are to be dropped
    (a single pass cannot know that a later row contradicts an earlier one).
    """

    def __init__(
        self,
        drop_duplicates: bool,
        drop_conflicts: bool,
        test_keys: set[int] | None,
        drop_test_overlap: bool,
        known_conflicts: set[int] | None = None,
    ) -> None:
        self.drop_duplicates = drop_duplicates
        self.drop_conflicts = drop_conflicts
        self.test_keys = test_keys
        self.drop_test_overlap = drop_test_overlap
        self.known_conflicts = known_conflicts or set()
        self.labels = LabelIndex()
        self._pairs: set[int] = set()
        self.found = {"duplicate_rows": 0, "test_overlap_rows": 0}

    def decide(self, instruction: str, output: str) -> str | None:
        """Return the drop reason for this row, or None to keep it."""
        return self.decide_keys(text_key(instruction), text_key(output))

    def decide_keys(self, ikey: int, lkey: int) -> str | None:
        """`decide` on the rows' text keys (computed by the worker processes)."""
        self.labels.add(ikey, lkey)
        pair = pair_key(ikey, lkey)
        duplicate = pair in self._pairs
        self._pairs.add(pair)
        overlap = self.test_keys is not None and ikey in self.test_keys
        self.found["duplicate_rows"] += duplicate
        self.found["test_overlap_rows"] += overlap
        if overlap and self.drop_test_overlap:
            return "test_overlap"
        if self.drop_conflicts and ikey in self.known_conflicts:
            return "conflicting_label"
        if duplicate and self.drop_duplicates:
            return "duplicate"
        return None

    def decide_many(self, ikeys, lkeys, n: int) -> list[str | None] | None:
        """`decide_keys` on the first `n` key pairs, in order: their drop reasons, or None when
        every one of them is kept (the same bookkeeping, in one loop of local names)."""
        labels, conflicted, pairs = self.labels._labels, self.labels.conflicted, self._pairs
        setdefault, add_pair = labels.setdefault, pairs.add
        test_keys, known_conflicts = self.test_keys, self.known_conflicts
        drop_overlap = self.drop_test_overlap and test_keys is not None
        drop_conflicts, drop_duplicates = self.drop_conflicts, self.drop_duplicates
        duplicates = overlaps = 0
        reasons: list[str | None] | None = None
        for j in range(n):
            ikey, lkey = ikeys[j], lkeys[j]
            if setdefault(ikey, lkey) != lkey:
                conflicted.add(ikey)
            pair = ikey ^ ((lkey * _ODD) & _MASK64)  # pair_key
            duplicate = pair in pairs
            if duplicate:
                duplicates += 1
            else:
                add_pair(pair)
            overlap = test_keys is not None and ikey in test_keys
            if overlap:
                overlaps += 1
            if overlap and drop_overlap:
                reason = "test_overlap"
            elif drop_conflicts and ikey in known_conflicts:
                reason = "conflicting_label"
            elif duplicate and drop_duplicates:
                reason = "duplicate"
            else:
                continue
            if reasons is None:
                reasons = [None] * n
            reasons[j] = reason
        self.found["duplicate_rows"] += duplicates
        self.found["test_overlap_rows"] += overlaps
        return reasons

    def conflicting_instructions(self) -> int:
        return len(self.labels.conflicted | self.known_conflicts)

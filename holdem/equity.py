"""Hand categories and Monte Carlo equity for the `hand_strength` tool, ranked by pokerkit.

pokerkit (MIT, maintained by the University of Toronto Computer Poker Research Group) is the
source of truth for hand ranks: its `StandardHighHand.lookup` ranks every 5-card class. Its own
`from_game` tries all 21 five-card subsets through several object layers (~200 µs per 7-card
hand here), too slow for Monte Carlo inside a rollout, and its equity helper draws from the
global `random` module (not seedable per sample). So we read pokerkit's ranking once into a
flat table (7,462 classes) keyed by the product of rank primes, memoise 7-card results by
rank multiset, and draw with our own seeded `random.Random`. tests/unit/holdem/test_tools.py
checks the table against pokerkit's own `from_game` on random hands.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from itertools import combinations, combinations_with_replacement

RANKS = "23456789TJQKA"
SUITS = "cdhs"
_PRIME = dict(zip(RANKS, (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)))
_DECK = tuple(r + s for r in RANKS for s in SUITS)
_COMBOS_5 = {n: tuple(combinations(range(n), 5)) for n in (5, 6, 7)}

_table_lock = threading.Lock()
_table: dict[tuple[int, bool], tuple[int, str]] = {}
_best: dict[tuple[int, ...] | tuple[str, ...], tuple[int, str]] = {}


@dataclass(frozen=True)
class Strength:
    made_hand: str  # pokerkit's label of the best 5-card hand now ("One pair"); preflop: "Pair"/"High card"
    equity: float  # share of pots won (ties split) against one random hand, board run out
    samples: int


def _load_table() -> dict[tuple[int, bool], tuple[int, str]]:
    """pokerkit's ranking of every 5-card class, as {(rank-prime product, flush): (strength, label)}."""
    if _table:
        return _table
    with _table_lock:
        if _table:
            return _table
        from pokerkit import StandardHighHand  # lazy: only the hand_strength tool needs it

        lookup = StandardHighHand.lookup
        table: dict[tuple[int, bool], tuple[int, str]] = {}
        for ranks in combinations_with_replacement(RANKS, 5):
            if max(ranks.count(r) for r in ranks) > 4:
                continue
            key = _product(ranks)
            plain = "".join(r + SUITS[i % 4] for i, r in enumerate(ranks))
            entry = lookup.get_entry(plain)
            table[key, False] = (entry.index, entry.label.value)
            if len(set(ranks)) == 5:
                entry = lookup.get_entry("".join(r + "h" for r in ranks))
                table[key, True] = (entry.index, entry.label.value)
        _table.update(table)
    return _table


def _product(ranks) -> int:
    out = 1
    for rank in ranks:
        out *= _PRIME[rank]
    return out


def best_hand(cards: tuple[str, ...] | list[str]) -> tuple[int, str]:
    """(strength, label) of the best 5-card hand among 5-7 cards; higher strength wins."""
    table = _load_table()
    suits = [c[1] for c in cards]
    flush_suit = next((s for s in SUITS if suits.count(s) >= 5), None)
    ranks = [c[0] for c in cards]
    # Without a flush the answer depends on the ranks alone: memoise by rank multiset.
    key = tuple(sorted(cards)) if flush_suit is not None else tuple(sorted(ranks))
    found = _best.get(key)
    if found is not None:
        return found
    best = max(table[_product([ranks[i] for i in combo]), False] for combo in _COMBOS_5[len(cards)])
    if flush_suit is not None:
        suited = [c[0] for c in cards if c[1] == flush_suit]
        best = max(best, max(table[_product(combo), True] for combo in combinations(suited, 5)))
    if len(_best) < 2_000_000:  # bounded memo: ~130 MB worst case, far below in practice
        _best[key] = best
    return best


def hand_strength(hole: tuple[str, str], board: tuple[str, ...], seed: int, samples: int = 400) -> Strength:
    """Made-hand category now and equity against one uniformly random hand (Monte Carlo with
    `samples` run-outs from `random.Random(seed)`, so a sample's answer is reproducible)."""
    _validate(hole, board)
    if board:
        made = best_hand(hole + board)[1]
    else:
        made = "Pair" if hole[0][0] == hole[1][0] else "High card"
    rng = random.Random(seed)
    deck = [c for c in _DECK if c not in hole and c not in board]
    missing = 5 - len(board)
    won = 0.0
    for _ in range(samples):
        drawn = rng.sample(deck, 2 + missing)
        full_board = board + tuple(drawn[2:])
        mine = best_hand(hole + full_board)[0]
        theirs = best_hand(tuple(drawn[:2]) + full_board)[0]
        won += 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0
    return Strength(made, won / samples, samples)


def _validate(hole: tuple[str, ...], board: tuple[str, ...]) -> None:
    cards = hole + board
    bad = [c for c in cards if c not in _DECK]
    if bad:
        raise ValueError(f"unknown cards {bad}")
    if len(set(cards)) != len(cards):
        raise ValueError(f"duplicate cards in {list(cards)}")
    if len(hole) != 2 or len(board) not in (0, 3, 4, 5):
        raise ValueError(f"need 2 hole cards and 0, 3, 4 or 5 board cards, got {len(hole)} and {len(board)}")

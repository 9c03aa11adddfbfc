"""Generate PokerBench-format rows from random legal game states, for tests and benchmarks.

    python -m holdem.rowgen --n 10000 --seed 0 --out rows.jsonl

Rows use the exact PokerBench template (`holdem.pokerbench.render_instruction`) and label
grammar, with its quirks: `raise N` where no bet is open, truncated fractional all-ins,
`all in` labels preflop, float artefacts in the pot, stated postflop pots without dead blinds.
The labels are a plausible random policy, not solver output: use them for parsing, reward
and throughput tests, never as training targets.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from collections.abc import Iterator
from typing import NoReturn

from holdem.pokerbench import GameState, make_state, render_instruction, render_label
from holdem.table import (
    POSTFLOP_ORDER,
    PREFLOP_ORDER,
    STARTING_STACK,
    STREETS,
    Action,
    PlayerAction,
)

_RANKS = "23456789TJQKA"
_SUITS = "hscd"
_OPEN_SIZES = (2.0, 2.2, 2.3, 2.5, 3.0)
_BET_FRACTIONS = (0.25, 0.33, 0.5, 0.66, 0.75, 1.0, 1.25)


def generate_rows(n: int, seed: int) -> Iterator[dict]:
    """Yield `n` rows {"instruction", "output"}; the same seed gives the same rows."""
    rng = random.Random(seed)
    for _ in range(n):
        state, label = random_spot(rng)
        yield {"instruction": render_instruction(state), "output": render_label(label, state.street)}


def random_spot(rng: random.Random) -> tuple[GameState, Action]:
    """A random legal spot and a legal label for it."""
    street = rng.choices(STREETS, weights=(0.3, 0.3, 0.2, 0.2))[0]
    deck = [r + s for r in _RANKS for s in _SUITS]
    rng.shuffle(deck)
    hole = (deck[0], deck[1])
    while True:
        spot = _preflop_spot(rng) if street == "preflop" else _postflop_spot(rng, STREETS.index(street))
        if spot is not None:
            break
    hero, history, pot = spot
    state = make_state(hero, hole, tuple(deck[2 : 2 + (0, 3, 4, 5)[len(history) - 1]]), pot, history)
    return state, _random_label(rng, state)


# ---- preflop: everyone acts in turn; a random decision point becomes the hero's ----


def _preflop_spot(rng: random.Random) -> tuple[str, tuple[tuple[PlayerAction, ...], ...], float] | None:
    committed = {pos: 0.0 for pos in PREFLOP_ORDER} | {"SB": 0.5, "BB": 1.0}
    live = list(PREFLOP_ORDER)
    entries: list[PlayerAction] = []
    current, stop_after = 1.0, rng.randrange(0, 7)
    decisions, turn = 0, 0
    while decisions < 12 and turn < 60:
        pos = PREFLOP_ORDER[turn % 6]
        turn += 1
        if pos not in live or committed[pos] >= STARTING_STACK:
            continue
        mentioned = any(e.position == pos for e in entries)
        if mentioned and committed[pos] >= current:
            return None  # the betting round closed before the chosen decision point
        if decisions == stop_after:
            pot = sum(committed[p] for p in PREFLOP_ORDER)
            return pos, (tuple(entries),), pot
        decisions += 1
        action = _villain_preflop(rng, current)
        if action.kind == "fold":
            live.remove(pos)
            if mentioned:  # players who never acted are "not mentioned" and folded
                entries.append(PlayerAction(pos, action))
            continue
        entries.append(PlayerAction(pos, action))
        if action.kind == "call":
            committed[pos] = current
        else:
            committed[pos] = STARTING_STACK if action.kind == "allin" else float(action.amount or 0)
            current = max(current, committed[pos])
        if len(live) == 1:
            return None
    return None


def _villain_preflop(rng: random.Random, current: float) -> Action:
    roll = rng.random()
    if current <= 1.0:  # unopened pot
        if roll < 0.55:
            return Action("fold")
        if roll < 0.65:
            return Action("call")
        if roll < 0.98:
            return Action("raise", rng.choice(_OPEN_SIZES))
        return Action("allin")
    if roll < 0.5:
        return Action("fold")
    if roll < 0.75:
        return Action("call")
    size = round(current * rng.uniform(2.8, 3.6), 1)
    if roll < 0.95 and size < STARTING_STACK * 0.6:
        return Action("raise", size)
    return Action("allin")


# ---- postflop: heads-up after a single-raised or 3-bet pot ----


def _postflop_spot(
    rng: random.Random, target: int
) -> tuple[str, tuple[tuple[PlayerAction, ...], ...], float] | None:
    opener_i = rng.randrange(0, 5)
    opener, caller = PREFLOP_ORDER[opener_i], PREFLOP_ORDER[rng.randrange(opener_i + 1, 6)]
    open_size = rng.choice((3.0, 3.5)) if opener == "SB" else rng.choice(_OPEN_SIZES)
    if rng.random() < 0.25:
        three_bet = round(open_size * rng.uniform(3.0, 4.0), 1)
        preflop = ((opener, Action("raise", open_size)), (caller, Action("raise", three_bet)), (opener, Action("call")))
        invested = three_bet
    else:
        preflop = ((opener, Action("raise", open_size)), (caller, Action("call")))
        invested = open_size
    history = [tuple(PlayerAction(p, a) for p, a in preflop)]
    oop, ip = sorted((opener, caller), key=POSTFLOP_ORDER.index)
    hero = rng.choice((oop, ip))
    # The stated postflop pot leaves out dead blinds and rounds the preflop pot (real rows).
    pot = float(round(2 * invested))
    stack = STARTING_STACK - invested
    for index in range(1, target + 1):
        current = index == target
        line = _street_line(rng, pot, stack, oop, ip, hero if current else None)
        if line is None:
            return None
        entries, added = line
        history.append(entries)
        pot += sum(added.values())
        stack -= max(added.values(), default=0.0)
    return hero, tuple(history), pot


def _street_line(
    rng: random.Random, pot: float, stack: float, oop: str, ip: str, hero: str | None
) -> tuple[tuple[PlayerAction, ...], dict[str, float]] | None:
    """One street: a closed line (hero None) or a prefix ending with `hero` to act."""
    bet = float(max(1, round(pot * rng.choice(_BET_FRACTIONS))))
    raise_to = float(round(bet * rng.uniform(2.5, 3.5)))
    closed = {
        "xx": (("o", "check"), ("i", "check")),
        "xbc": (("o", "check"), ("i", "bet"), ("o", "call")),
        "bc": (("o", "bet"), ("i", "call")),
        "brc": (("o", "bet"), ("i", "raise"), ("o", "call")),
    }
    prefixes = {"o": ((), (("o", "check"), ("i", "bet")), (("o", "bet"), ("i", "raise"))),
                "i": ((("o", "check"),), (("o", "bet"),), (("o", "check"), ("i", "bet"), ("o", "raise")))}
    if hero is None:
        line = rng.choice(list(closed.values()))
    else:
        line = rng.choice(prefixes["o" if hero == oop else "i"])
    names = {"o": oop, "i": ip}
    amounts = {"bet": bet, "raise": raise_to}
    entries, added, current = [], {oop: 0.0, ip: 0.0}, 0.0
    for who, kind in line:
        pos = names[who]
        if kind in amounts:
            total = amounts[kind]
            if total >= stack:
                if hero is None or total <= current or float(int(stack)) <= current:
                    return None  # no all-ins on closed streets, no raise after an all-in
                total = float(int(stack))  # PokerBench truncates fractional all-ins
            entries.append(PlayerAction(pos, Action(kind, total)))
            added[pos] = current = total
        else:
            entries.append(PlayerAction(pos, Action(kind)))
            if kind == "call":
                added[pos] = current
    return tuple(entries), added


# ---- the label: a plausible random policy over the legal actions ----


def _random_label(rng: random.Random, state: GameState) -> Action:
    legal = {la.kind: la for la in state.legal_actions}
    weights = {"fold": 0.45, "call": 0.37, "raise": 0.18} if "call" in legal else {"check": 0.65, "bet": 0.35, "raise": 0.35}
    kinds = [k for k in weights if k in legal]
    kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
    if kind not in ("bet", "raise"):
        return Action(kind)
    la = legal[kind]
    if state.street == "preflop":
        target = round(max(state.current_bet, 1.0) * rng.uniform(2.5, 4.5), 1)
        if target >= la.max_amount or rng.random() < 0.03:
            return Action("allin")
        return Action(kind, max(round(la.min_amount, 1), target))
    base = state.current_bet * rng.uniform(2.5, 3.5) if kind == "raise" else state.pot * rng.choice(_BET_FRACTIONS)
    amount = float(max(int(la.min_amount + 0.999), round(base)))
    if amount >= la.max_amount:
        amount = float(int(la.max_amount))  # truncated all-in, as in the real labels
    if kind == "bet" and rng.random() < 0.1:
        kind = "raise"  # PokerBench's `raise N` where no bet is open
    return Action(kind, amount)


def _write_rows(rows: Iterator[dict], out: str) -> int:
    """Write JSONL atomically (temp file + rename) and return the row count."""
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".rowgen-", suffix=".jsonl")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return count


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one `error:` line (project rule), exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}. See `python -m holdem.rowgen --help`.", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m holdem.rowgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, required=True, help="number of rows")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same rows)")
    parser.add_argument("--out", required=True, help="output JSONL file")
    args = parser.parse_args(argv)
    if args.n < 0:
        print(f"error: --n must be >= 0, got {args.n}. Pass a row count.", file=sys.stderr)
        return 2
    directory = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(directory):
        print(f"error: --out {args.out}: directory {directory} does not exist. Create it first.", file=sys.stderr)
        return 2
    count = _write_rows(generate_rows(args.n, args.seed), args.out)
    print(f"wrote {count} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

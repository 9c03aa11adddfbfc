"""Scorers for offline evaluation on PokerBench, and reading the one action a reply states
(`parse_action`, the domain's label grammar and `Action`).

`paper_score` follows the authors' scorer as POKERBENCH.md describes it, leniency included:
case-insensitive; 1 if the label text occurs in the response, or if label and response both
mention the same one of call / fold / check / all in; for bet-vs-bet or raise-vs-raise, 1 when
the first numbers agree and 0.5 otherwise; else 0. Exact-match accuracy is the mean of
floor(score), action accuracy the mean of ceil(score).

`strict_score` is ours: the response must *be* one action of the label grammar (after trimming
case, whitespace and a final period), the kind must equal the label's, and a bet/raise amount
must be within `tol` chips of the label's.
"""
from __future__ import annotations

import math
import re

from holdem.pokerbench import match_label
from holdem.table import Action

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PLAIN_KINDS = ("call", "fold", "check", "all in")
_SIZED_KINDS = ("bet", "raise")
DEFAULT_TOL = 0.5


def render_action(action: Action) -> str:
    """As a PokerBench label reads, amounts in their shortest form (`raise 12.5`, `bet 7`, `all in`)."""
    if action.kind == "allin":
        return "all in"
    if action.amount is None:
        return action.kind
    return f"{action.kind} {action.amount:g}"


def _first_number(text: str) -> float | None:
    m = _NUMBER.search(text)
    return float(m.group()) if m else None


def paper_score(label: str, response: str) -> float:
    """The authors' per-row score: 1.0, 0.5 or 0.0."""
    lab, res = label.lower().strip(), response.lower()
    if lab in res:
        return 1.0
    for kind in _PLAIN_KINDS:
        if kind in lab and kind in res:
            return 1.0
    for kind in _SIZED_KINDS:
        if kind in lab and kind in res:
            return 1.0 if _first_number(lab) == _first_number(res) else 0.5
    return 0.0


def exact_match(score: float) -> int:
    return math.floor(score)


def action_match(score: float) -> int:
    return math.ceil(score)


def parse_action(text: str) -> Action | None:
    """The one action a response states, or None when it is not exactly one action of the label
    grammar. Forgives case, surrounding and repeated whitespace, a final period and `all-in`."""
    norm = " ".join(text.strip().lower().replace("all-in", "all in").split()).rstrip(".")
    return match_label(norm)


def strict_score(label: str, predicted: Action | None, tol: float = DEFAULT_TOL) -> int:
    """1 when the predicted action has the label's kind and (for bet/raise) an amount within tol."""
    want = parse_action(label)
    if want is None or predicted is None or predicted.kind != want.kind:
        return 0
    if want.amount is None:
        return 1
    return int(predicted.amount is not None and abs(predicted.amount - want.amount) <= tol + 1e-9)

"""The authors' scorer as POKERBENCH.md describes it, and our strict variant."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from holdem.eval.score import action_match, exact_match, paper_score, parse_action, render_action, strict_score
from holdem.table import Action


@pytest.mark.parametrize("label, response, score", [
    ("call", "call", 1.0),
    ("call", "I would CALL here", 1.0),           # mention of the same plain kind
    ("fold", "Fold.", 1.0),
    ("check", "check or fold? check", 1.0),
    ("all in", "I go all in", 1.0),
    ("bet 18", "bet 180", 1.0),                   # label text occurs in the response (lenient)
    ("raise 12.0", "raise 12", 1.0),              # first numbers equal as numbers
    ("raise 12.0", "Raise 12.0 chips", 1.0),
    ("raise 80", "raise 40", 0.5),                # same sized kind, other amount
    ("bet 2", "bet", 0.5),                        # no number in the response
    ("bet 2", "raise 2", 0.0),                    # bet vs raise: different kinds
    ("call", "raise 30", 0.0),
    ("fold", "", 0.0),
    ("raise 10", "call, then raise 3", 0.5),  # both mention raise: first numbers 10 vs 3
])
def test_paper_score(label, response, score):
    assert paper_score(label, response) == score


def test_exact_and_action_accuracy_are_floor_and_ceil():
    assert (exact_match(1.0), action_match(1.0)) == (1, 1)
    assert (exact_match(0.5), action_match(0.5)) == (0, 1)
    assert (exact_match(0.0), action_match(0.0)) == (0, 0)


@pytest.mark.parametrize("text, action", [
    ("raise 12", Action("raise", 12.0)),
    ("  Bet 7.5.\n", Action("bet", 7.5)),
    ("CALL", Action("call")),
    ("all-in", Action("allin")),
    ("allin", None),                       # the tool spelling is not a label,
    ("I would call", None),
    ("raise", None),
    ("raise 12 chips", None),
    ("call\nfold", None),
])
def test_parse_action(text, action):
    assert parse_action(text) == action


@pytest.mark.parametrize("label, response, tol, expected", [
    ("raise 12.0", "raise 12", 0.5, 1),
    ("raise 12.0", "raise 12.5", 0.5, 1),
    ("raise 12.0", "raise 12.6", 0.5, 0),
    ("bet 18", "bet 180", 0.5, 0),
    ("bet 2", "raise 2", 0.5, 0),
    ("check", "check", 0.5, 1),
    ("call", "I call", 0.5, 0),
    ("raise 74", "raise 75", 1.0, 1),
])
def test_strict_score(label, response, tol, expected):
    assert strict_score(label, parse_action(response), tol) == expected


@given(st.sampled_from(["fold", "call", "check", "all in"]) | st.builds(
    lambda k, n: f"{k} {n}", st.sampled_from(["bet", "raise"]), st.integers(1, 100)))
def test_the_label_itself_scores_full_marks_everywhere(label):
    assert paper_score(label, label) == 1.0
    assert strict_score(label, parse_action(label)) == 1
    assert render_action(parse_action(label)) == label

"""PokerBench parsing: the six real rows, their derived tables, round trips and clear errors."""

from __future__ import annotations

import pytest

from holdem.pokerbench import (
    parse_card,
    parse_instruction,
    parse_label,
    render_instruction,
    render_label,
)
from holdem.table import Action, LegalAction, check_action, resolve_allin


def _kinds(state) -> dict[str, LegalAction]:
    return {la.kind: la for la in state.legal_actions}


def test_every_real_row_parses_round_trips_and_its_label_is_legal(real_rows):
    assert len(real_rows) == 6
    for row in real_rows:
        state = parse_instruction(row["instruction"])
        label = parse_label(row["output"])
        assert render_instruction(state) == row["instruction"]
        assert render_label(label, state.street) == row["output"]
        assert check_action(state.table, label) is None, row["output"]


def test_real_preflop_row_facing_an_open_and_a_call(real_rows):
    state = parse_instruction(real_rows[0]["instruction"])
    assert (state.street, state.hero_position) == ("preflop", "SB")
    assert state.hole_cards == ("Kh", "Th")
    assert state.board == ()
    assert state.pot == 5.5
    assert [(e.position, e.action) for e in state.history[0]] == [
        ("UTG", Action("raise", 2.0)),
        ("CO", Action("call")),
    ]
    assert (state.to_call, state.hero_committed, state.hero_stack) == (1.5, 0.5, 99.5)
    legal = _kinds(state)
    assert set(legal) == {"fold", "call", "raise"}
    assert (legal["raise"].min_amount, legal["raise"].max_amount) == (3.0, 100.0)
    assert parse_label(real_rows[0]["output"]) == Action("raise", 12.0)


def test_real_limped_pot_gives_the_big_blind_a_check(real_rows):
    state = parse_instruction(real_rows[1]["instruction"])
    assert state.hero_position == "BB" and state.to_call == 0
    assert set(_kinds(state)) == {"check", "raise"}
    assert _kinds(state)["raise"].min_amount == 2.0


def test_real_flop_row_offers_a_bet(real_rows):
    state = parse_instruction(real_rows[2]["instruction"])
    assert state.street == "flop"
    assert state.board == ("8h", "8c", "Tc")
    assert state.hero_stack == 97.0
    assert set(_kinds(state)) == {"check", "bet"}
    assert parse_label(real_rows[2]["output"]) == Action("bet", 2.0)


def test_real_turn_row_hero_bet_then_faces_a_raise(real_rows):
    state = parse_instruction(real_rows[3]["instruction"])
    assert state.street == "turn" and state.board == ("9s", "7s", "4c", "6s")
    assert (state.hero_committed, state.to_call, state.hero_stack) == (3.0, 7.0, 95.0)
    assert _kinds(state)["raise"].min_amount == 17.0  # 10 + the last raise of 7
    assert _kinds(state)["raise"].max_amount == 98.0


def test_real_river_truncated_all_in_label_is_legal(real_rows):
    state = parse_instruction(real_rows[4]["instruction"])
    assert state.street == "river" and state.pot == 59.0
    assert state.hero_stack == pytest.approx(80.7)
    assert _kinds(state)["raise"].max_amount == pytest.approx(80.7)
    assert check_action(state.table, Action("raise", 80.0)) is None  # truncated all-in
    assert check_action(state.table, Action("raise", 79.0)) is None  # an ordinary raise
    assert "exceeds the stack" in check_action(state.table, Action("raise", 81.0))


def test_float_artefact_pot_and_several_all_ins_preflop():
    text = render_instruction(
        parse_instruction(_preflop_text("UTG all in, HJ all in, and CO call", "BTN", "7.899999999999999"))
    )
    state = parse_instruction(text)
    assert state.pot == 7.899999999999999
    assert "7.899999999999999 chips" in text
    assert state.to_call == 100.0
    assert set(_kinds(state)) == {"fold", "call"}  # nobody can raise over 100-chip all-ins
    assert resolve_allin(state.table, Action("allin")) == Action("call")


def test_raise_where_no_bet_is_open_counts_as_a_bet(real_rows):
    state = parse_instruction(real_rows[2]["instruction"])
    assert check_action(state.table, parse_label("raise 4")) is None
    assert "not possible" in check_action(parse_instruction(_preflop_text("UTG all in, and HJ all in", "CO", "201.5")).table, Action("raise", 50.0))


def test_all_in_label_and_its_resolution(real_rows):
    assert parse_label("all in") == Action("allin")
    state = parse_instruction(real_rows[0]["instruction"])
    assert resolve_allin(state.table, Action("allin")) == Action("raise", 100.0)
    assert check_action(state.table, Action("allin")) is None


def test_illegal_actions_are_named(real_rows):
    flop = parse_instruction(real_rows[2]["instruction"])
    assert "not legal" in check_action(flop.table, Action("call"))
    assert "not legal" in check_action(flop.table, Action("fold"))
    assert "needs an amount" in check_action(flop.table, Action("bet"))
    turn = parse_instruction(real_rows[3]["instruction"])
    assert "below the minimum" in check_action(turn.table, Action("raise", 12.0))


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("fold", Action("fold")),
        ("check", Action("check")),
        ("call", Action("call")),
        ("bet 17", Action("bet", 17.0)),
        ("raise 24.1", Action("raise", 24.1)),
        ("raise 90", Action("raise", 90.0)),
        ("all in", Action("allin")),
    ],
)
def test_parse_label_grammar(label, expected):
    assert parse_label(label) == expected


@pytest.mark.parametrize("label", ["", "raise", "bet -3", "shove", "raise 12.0 chips", "call 5", None, 3])
def test_parse_label_rejects_with_a_clear_message(label):
    with pytest.raises(ValueError, match="label"):
        parse_label(label)


def test_parse_card_words():
    assert parse_card("Ten Of Heart") == "Th"
    assert parse_card("Ace of Spade") == "As"
    with pytest.raises(ValueError, match="card: could not parse 'Eleven of Heart'"):
        parse_card("Eleven of Heart")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("your position is SB", "your position is XX"), "the hero line"),
        (lambda t: t.replace("Before the flop, ", "Prior to the flop, "), "the preflop line"),
        (lambda t: t.replace("current pot size is 5.5", "current pot size is lots"), "the pot line"),
        (lambda t: t.replace("UTG raise 2.0, and CO call", "UTG raise 2.0, CO call"), "expected 'and'"),
        (lambda t: t.replace("UTG raise 2.0", "UTG jam 2.0"), "preflop actions: could not parse 'UTG jam 2.0'"),
        (lambda t: t.replace("folded.\n", "folded.\nThe flop comes soon.\n"), "unexpected text after the street lines"),
    ],
)
def test_parse_instruction_names_what_did_not_parse(real_rows, mutate, message):
    with pytest.raises(ValueError, match=message):
        parse_instruction(mutate(real_rows[0]["instruction"]))


def test_parse_instruction_rejects_non_strings():
    with pytest.raises(ValueError, match="expected a string, got list"):
        parse_instruction(["not", "text"])


def test_postflop_street_action_errors_name_the_street(real_rows):
    text = real_rows[3]["instruction"].replace("BB raise 10 chips", "BB raises 10 chips")
    with pytest.raises(ValueError, match="turn actions: could not parse 'BB raises 10 chips'"):
        parse_instruction(text)


def _preflop_text(actions: str, hero: str, pot: str) -> str:
    return (
        "\n\nYou are a specialist in playing 6-handed No Limit Texas Holdem. The following will be a game"
        " scenario and you need to make the optimal decision.\n\nHere is a game summary:\n\nThe small blind"
        " is 0.5 chips and the big blind is 1 chips. Everyone started with 100 chips.\nThe player positions"
        " involved in this game are UTG, HJ, CO, BTN, SB, BB.\nIn this hand, your position is"
        f" {hero}, and your holding is [Ace of Club and Ace of Diamond].\nBefore the flop, {actions}. Assume"
        " that all other players that is not mentioned folded.\n\nNow it is your turn to make a move.\nTo"
        f" remind you, the current pot size is {pot} chips, and your holding is [Ace of Club and Ace of"
        " Diamond].\n\nDecide on an action based on the strength of your hand on this board, your position,"
        " and actions before you. Do not explain your answer.\nYour optimal action is:"
    )

"""Tools: schemas, game state JSON, make_action, hand_strength ranked by pokerkit, no raising."""

from __future__ import annotations

import json
import random

import pytest
from pokerkit import StandardHighHand

from holdem.equity import _DECK, best_hand, hand_strength
from holdem.table import Action
from holdem.toolcall import ToolCall, quote_text
from holdem.tools import TOOL_NAMES, TOOLS, execute_tool, make_context, render_game_state


def test_tool_schemas_are_openai_function_objects():
    assert TOOL_NAMES == ("get_game_state", "hand_strength", "make_action")
    for tool in TOOLS:
        assert tool["type"] == "function"
        assert tool["function"]["parameters"]["type"] == "object"
        json.dumps(tool)  # serialisable for the chat template
    make = TOOLS[2]["function"]["parameters"]
    assert make["required"] == ["action"] and make["properties"]["action"]["enum"] == ["fold", "check", "call", "bet", "raise"]


def test_get_game_state_is_compact_json_with_legal_actions(real_rows):
    ctx = make_context(real_rows[4]["instruction"])
    result = execute_tool(ToolCall("get_game_state", {}), ctx)
    assert not result.ends_episode and " " not in result.text.replace("all in", "")[:20]
    state = json.loads(result.text)
    assert state["street"] == "river" and state["position"] == "CO"
    assert state["hole_cards"] == ["Kd", "Jc"] and state["board"] == ["Js", "Ks", "5d", "8h", "3c"]
    assert state["pot"] == 59 and state["to_call"] == 20 and state["stack"] == 80.7
    assert state["history"]["turn"] == ["BB bet 6", "CO raise 17", "BB call"]
    assert state["legal_actions"] == [
        {"action": "fold"}, {"action": "call", "amount": 20}, {"action": "raise", "min": 40, "max": 80.7}
    ]
    assert render_game_state(ctx.state) == result.text


def test_float_artefacts_are_rounded_in_the_state(real_rows):
    text = real_rows[0]["instruction"].replace("pot size is 5.5", "pot size is 7.899999999999999")
    assert json.loads(execute_tool(ToolCall("get_game_state", {}), make_context(text)).text)["pot"] == 7.9


def test_make_action_ends_the_episode_and_flags_illegal_actions(real_rows):
    ctx = make_context(real_rows[2]["instruction"])  # flop, checked to hero
    ok = execute_tool(ToolCall("make_action", {"action": "bet", "amount": 2}), ctx)
    assert ok.ends_episode and ok.action == Action("bet", 2.0)
    assert json.loads(ok.text) == {"accepted": "bet 2"}
    illegal = execute_tool(ToolCall("make_action", {"action": "call"}), ctx)
    assert illegal.ends_episode and "not legal" in json.loads(illegal.text)["warning"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({}, "needs \"action\""), ({"action": "jump"}, "unknown action"), ({"action": "bet"}, "numeric \"amount\""),
     ({"action": "raise", "amount": "x"}, "not a number"), ({"action": "raise", "amount": -1}, "positive")],
)
def test_malformed_make_action_is_an_error_message_not_the_end(real_rows, arguments, message):
    result = execute_tool(ToolCall("make_action", arguments), make_context(real_rows[0]["instruction"]))
    assert not result.ends_episode and result.action is None
    assert message in json.loads(result.text)["error"]


def test_unknown_tool_and_unparsable_prompt_are_messages():
    ctx = make_context("not a pokerbench prompt")
    assert "unknown tool 'peek'" in json.loads(execute_tool(ToolCall("peek", {}), ctx).text)["error"]
    assert "could not find the hero line" in json.loads(execute_tool(ToolCall("get_game_state", {}), ctx).text)["error"]
    assert "could not find" in json.loads(execute_tool(ToolCall("hand_strength", {}), ctx).text)["error"]
    made = execute_tool(ToolCall("make_action", {"action": "fold"}), ctx)
    assert made.ends_episode and made.action == Action("fold")


@pytest.mark.parametrize(
    "name",
    ["x" * 100_000, "peek\nat\r\nvillain\x00\x1b[2J\x7f\u202e\u2028\ud800", "\n" * 50_000 + "y" * 50_000],
    ids=["100 KB", "control characters", "100 KB of newlines"],
)
def test_unknown_tool_names_are_quoted_short_and_on_one_line(real_rows, name):
    """The model chose the name: the message echoes it as the tool-call parser quotes model text
    (its repr, cut to a few dozen characters), never in full and never with raw control characters."""
    result = execute_tool(ToolCall(name, {}), make_context(real_rows[0]["instruction"]))
    assert not result.ends_episode and result.action is None and len(result.text) < 200
    message = json.loads(result.text)["error"]
    assert message == f"unknown tool {quote_text(name)}; available: get_game_state, hand_strength, make_action"
    assert message.startswith("unknown tool '") and message.isprintable()  # no newline, no control character


def test_tool_exceptions_become_messages(real_rows, monkeypatch):
    import holdem.tools as tools

    def boom(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tools, "render_game_state", boom)
    result = execute_tool(ToolCall("get_game_state", {}), make_context(real_rows[0]["instruction"]))
    assert json.loads(result.text) == {"error": "get_game_state failed: RuntimeError: disk on fire"}


def test_hand_strength_is_seeded_per_prompt_and_sensible(real_rows):
    ctx = make_context(real_rows[4]["instruction"])  # KdJc on Js Ks 5d 8h 3c: two pair
    first = json.loads(execute_tool(ToolCall("hand_strength", {}), ctx).text)
    again = json.loads(execute_tool(ToolCall("hand_strength", {}), make_context(real_rows[4]["instruction"])).text)
    assert first == again and first["made_hand"] == "Two pair" and first["equity_vs_random_hand"] > 0.85


def test_equity_matches_known_preflop_values():
    aces = hand_strength(("As", "Ad"), (), seed=1, samples=3000).equity
    seven_deuce = hand_strength(("7h", "2c"), (), seed=1, samples=3000).equity
    assert 0.82 < aces < 0.88  # exact: 85.2 %
    assert 0.31 < seven_deuce < 0.38  # exact: 34.6 %
    assert hand_strength(("As", "Ad"), (), seed=5).made_hand == "Pair"
    assert hand_strength(("Ah", "Kh"), ("Qh", "Jh", "Th"), seed=5).equity == 1.0  # royal flush


def test_best_hand_agrees_with_pokerkit_on_random_hands():
    rng = random.Random(7)
    for _ in range(300):
        cards = rng.sample(_DECK, 9)
        ours_a, ours_b = best_hand(tuple(cards[:7])), best_hand(tuple(cards[2:]))
        theirs_a = StandardHighHand.from_game("".join(cards[:2]), "".join(cards[2:7]))
        theirs_b = StandardHighHand.from_game("".join(cards[2:4]), "".join(cards[4:]))
        assert ours_a[1] == theirs_a.entry.label.value
        assert (ours_a[0] > ours_b[0]) == (theirs_a > theirs_b)
        assert (ours_a[0] == ours_b[0]) == (theirs_a == theirs_b)


@pytest.mark.parametrize(("hole", "board"), [(("As", "As"), ()), (("Xx", "Ad"), ()), (("As", "Ad"), ("Kc",))])
def test_hand_strength_rejects_bad_cards(hole, board):
    with pytest.raises(ValueError):
        hand_strength(hole, board, seed=0)

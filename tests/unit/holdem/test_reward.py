"""The layered reward: exact labels score 1.0, order of mistakes, quirks, and never raising."""

from __future__ import annotations

import asyncio
import json
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdem import reward_config as cfg
from holdem.pokerbench import parse_instruction, parse_label
from holdem.reward import reward_error_count, reward_func, score_response
from holdem.rowgen import generate_rows
from holdem.toolcall import render_tool_call
from demo.sample_standin import Sample

GENERATED = list(generate_rows(300, seed=21))


def turn(*calls: str, think: str = "") -> str:
    return (f"<think>\n{think}\n</think>\n\n" if think else "") + "\n".join(calls) + "<|im_end|>"


def episode(*turns: str) -> str:
    """Assistant turns joined by tool-response user turns, as the rollout writes them."""
    tool = '\n<|im_start|>user\n<tool_response>\n{"ok": true}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    return tool.join(turns)


def make_action(action: str, amount: float | None = None) -> str:
    args = {"action": action} if amount is None else {"action": action, "amount": amount}
    return render_tool_call("make_action", args)


def label_call(label: str) -> str:
    parts = label.split(" ")
    if label == "all in":
        return make_action("all in")
    return make_action(parts[0], float(parts[1]) if len(parts) > 1 else None)


def test_exact_label_scores_one_on_real_rows(real_rows):
    for row in real_rows:
        result = score_response(row["instruction"], row["output"], turn(label_call(row["output"])))
        assert result["score"] == 1.0, (row["output"], result)
        assert result["exact"] == 1.0 and result["legal"] == 1.0


def test_raise_where_no_bet_is_open_exact_is_one_and_bet_is_close(real_rows):
    flop = real_rows[2]["instruction"]  # BB on the flop, checked to: no bet is open
    assert parse_instruction(flop).current_bet == 0
    assert score_response(flop, "raise 2", turn(make_action("raise", 2)))["score"] == 1.0
    close = score_response(flop, "raise 2", turn(make_action("bet", 2)))["score"]
    assert 0.85 < close < 1.0
    assert score_response(flop, "bet 2", turn(make_action("raise", 2)))["score"] == close


def test_truncated_all_in_equals_the_all_in(real_rows):
    river = real_rows[4]  # label `raise 80`, hero's all-in is 80.7
    for call in (make_action("raise", 80.7), make_action("all in"), make_action("raise", 80.2)):
        assert score_response(river["instruction"], river["output"], turn(call))["score"] == 1.0


def test_mistakes_are_ordered(real_rows):
    row = real_rows[0]  # SB facing an open and a call; label raise 12.0
    score = lambda text: score_response(row["instruction"], row["output"], text)["score"]  # noqa: E731
    exact = score(turn(make_action("raise", 12)))
    near = score(turn(make_action("raise", 13)))
    far = score(turn(make_action("raise", 30)))
    call = score(turn(make_action("call")))
    fold = score(turn(make_action("fold")))
    illegal = score(turn(make_action("check")))
    messy = score(episode(turn("<tool_call>{oops</tool_call>"), turn(make_action("raise", 12))))
    unparsable = score("raise 12")
    assert exact == 1.0 > near > far > call > fold >= illegal > unparsable == cfg.MIN_SCORE
    assert exact > messy > near - 0.2


def test_analysis_turns_within_budget_keep_full_score(real_rows):
    row = real_rows[3]
    text = episode(turn(render_tool_call("get_game_state", {})), turn(render_tool_call("hand_strength", {})),
                   turn(make_action("fold")))
    assert score_response(row["instruction"], row["output"], text)["score"] == 1.0


def test_efficiency_penalises_extra_turns_and_tokens(real_rows):
    row = real_rows[3]
    many = episode(*[turn(render_tool_call("get_game_state", {}))] * 6, turn(make_action("fold")))
    verbose = turn(make_action("fold"), think="hmm " * 2000)
    for text in (many, verbose):
        result = score_response(row["instruction"], row["output"], text)
        assert 1.0 - cfg.EFFICIENCY_PENALTY_CAP <= result["score"] < 1.0
        assert result["efficiency_penalty"] > 0


@pytest.mark.parametrize(
    "text",
    [
        turn(make_action("fold"), make_action("fold")),  # two make_action calls
        turn(make_action("fold"), render_tool_call("get_game_state", {})),  # make_action not last
        turn(render_tool_call("peek_at_villain", {}), make_action("fold")),  # unknown tool
        turn("<tool_call>not json</tool_call>", make_action("fold")),  # malformed call
    ],
)
def test_protocol_errors_cost_but_keep_the_action_credit(real_rows, text):
    result = score_response(real_rows[3]["instruction"], real_rows[3]["output"], text)
    assert result["protocol_errors"] >= 1
    assert 1.0 - cfg.PROTOCOL_PENALTY_CAP <= result["score"] < 1.0


@pytest.mark.parametrize(
    "text",
    ["", "fold", "<tool_call>", turn(make_action("shove it")), turn(make_action("bet")),
     turn(make_action("bet", -3)), turn(render_tool_call("make_action", {"action": "raise", "amount": "lots"})),
     turn(render_tool_call("get_game_state", {})), "<think>" + make_action("fold") + "</think>"],
)
def test_no_valid_final_action_scores_the_minimum(real_rows, text):
    result = score_response(real_rows[3]["instruction"], real_rows[3]["output"], text)
    assert result["score"] == cfg.MIN_SCORE and result["made_action"] == 0.0


def test_tool_calls_inside_tool_responses_do_not_count(real_rows):
    row = real_rows[3]
    text = episode(turn(render_tool_call("get_game_state", {})), turn(make_action("call")))
    text = text.replace('{"ok": true}', make_action("fold"))
    result = score_response(row["instruction"], row["output"], text)
    assert result["action"] == "call" and result["protocol_errors"] == 0


def test_unparsable_prompt_still_scores_without_legality():
    result = score_response("not a pokerbench prompt", "fold", turn(make_action("fold")))
    assert result["score"] == 1.0 and result["error"] == 0.0
    assert score_response("garbage", "bet 5", turn(make_action("check")))["legal"] == 1.0


def test_exceptions_give_the_minimum_and_are_counted(real_rows):
    before = reward_error_count()
    result = score_response(real_rows[0]["instruction"], "not a label", turn(make_action("fold")))
    assert result["score"] == cfg.MIN_SCORE and result["error"] == 1.0
    result = score_response(real_rows[0]["instruction"], None, None)  # type: ignore[arg-type]
    assert result["score"] == cfg.MIN_SCORE
    assert reward_error_count() == before + 2


def test_reward_func_reads_the_sample_and_supports_group_rm(real_rows):
    row = real_rows[2]
    sample = Sample(prompt=row["instruction"], label=row["output"], response=turn(make_action("bet", 2)))
    result = asyncio.run(reward_func(types.SimpleNamespace(), sample))
    assert result["score"] == 1.0
    bad = Sample(prompt=row["instruction"], label=row["output"], response="check")
    results = asyncio.run(reward_func(types.SimpleNamespace(), [sample, bad]))
    assert [r["score"] for r in results] == [1.0, cfg.MIN_SCORE]
    chat = Sample(prompt=[{"role": "user", "content": row["instruction"]}], label=row["output"], response=sample.response)
    assert asyncio.run(reward_func(types.SimpleNamespace(), chat))["score"] == 1.0
    broken = types.SimpleNamespace(prompt=row["instruction"])  # no label / response attributes
    assert asyncio.run(reward_func(types.SimpleNamespace(), broken))["error"] == 1.0


# ---- properties ----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
arguments = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["fold", "check", "call", "bet", "raise", "all in", "RAISE", "x"]) | json_values,
        "amount": st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 500) | json_values,
    },
)
call_text = st.one_of(
    st.builds(lambda a: render_tool_call("make_action", a), arguments),
    st.builds(lambda n, a: render_tool_call(n, a), st.sampled_from(["get_game_state", "hand_strength", "nope"]), arguments),
    st.builds(lambda v: "<tool_call>" + json.dumps(v) + "</tool_call>", json_values),
    st.sampled_from(["<tool_call>", "</tool_call>", "<think>", "</think>", "<|im_end|>", "<|im_start|>user\n", "<tool_response>"]),
    st.text(max_size=30),
)
responses = st.lists(call_text, max_size=6).map("".join)
rows = st.sampled_from(GENERATED)
labels = st.sampled_from([r["output"] for r in GENERATED] + ["all in", "raise 3", "bet 1000", "fold "]) | st.text(max_size=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=rows, label=labels, response=responses)
def test_any_response_stays_in_range_and_never_raises(row, label, response):
    result = score_response(row["instruction"], label, response)
    assert cfg.MIN_SCORE <= result["score"] <= cfg.MAX_SCORE
    assert set(result) >= {"score", "legal", "quality", "sizing", "protocol_errors", "efficiency_penalty"}
    if _label_parses(label):  # a valid label: no exception may have been swallowed on the way
        assert result["error"] == 0.0, (label, response)


def _label_parses(label: str) -> bool:
    try:
        parse_label(label)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(row=rows, response=responses)
def test_the_exact_label_always_scores_highest(row, response):
    best = score_response(row["instruction"], row["output"], turn(label_call(row["output"])))
    assert best["score"] == 1.0
    assert score_response(row["instruction"], row["output"], response)["score"] <= best["score"]


@settings(max_examples=200, deadline=None)
@given(prompt=st.text(max_size=200) | st.sampled_from([r["instruction"] for r in GENERATED]), label=st.text(max_size=20),
       response=st.text(max_size=200) | responses)
def test_garbage_anywhere_never_raises(prompt, label, response):
    result = score_response(prompt, label, response)
    assert cfg.MIN_SCORE <= result["score"] <= cfg.MAX_SCORE

"""Hostile model output (issue 13 item 5): the tool-call parser, the reward and the rollout
never raise, take time linear in the response, bound JSON nesting, and the rollout always
ends with a status and agreeing lengths.

A table of adversarial cases (each through the parser, the reward and the rollout) plus
Hypothesis properties. No test measures time: the 45 KB spam cases simply run (the old
regex scan needed seconds per case, quadratic in the length).
"""

from __future__ import annotations

import asyncio
import json
import re
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo.sample_standin import Sample
from demo.sglang_standin import Completion, Request, SGLangStandIn
from holdem import reward_config as cfg
from holdem import rollout
from holdem.reward import reward_error_count, reward_func, score_response
from holdem.rowgen import generate_rows
from holdem.toolcall import (
    MAX_JSON_BRACKETS,
    ToolCall,
    action_from_arguments,
    call_bodies,
    parse_tool_calls,
    render_tool_call,
    strip_ignored,
)
from holdem.tools import TOOL_NAMES

TOKENIZER_DIR = Path(__file__).resolve().parents[3] / "demo" / "qwen3_tokenizer"
SPAM = 45_000  # characters of spam, the size of the response that once took 702 s
ROWS = list(generate_rows(40, seed=13))


def act(action: str, amount: object = None) -> str:
    return render_tool_call("make_action", {"action": action} | ({} if amount is None else {"amount": amount}))


def raw_call(body: str) -> str:
    return f"<tool_call>\n{body}\n</tool_call>"


def spam(unit: str, chars: int = SPAM) -> str:
    return unit * (chars // len(unit) + 1)


STATE = render_tool_call("get_game_state", {})
FOLD = act("fold")


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    calls: int  # well-formed calls the parser finds
    errors: int  # malformed-call messages
    acts: bool = False  # a well-formed make_action is among them (else the reward gives the minimum)
    error_has: str = ""  # a part of the first error message


CASES = [
    Case("empty", "", 0, 0),
    Case("plain text answer", "fold", 0, 0),
    Case("45 KB of unclosed <tool_call>", spam("<tool_call>"), 0, 1, error_has="unterminated"),
    Case("45 KB of unclosed <think>", spam("<think>"), 0, 0),
    Case("45 KB of unclosed <tool_response>", spam("<tool_response>"), 0, 0),
    Case("45 KB of mixed openers", spam("<tool_call><think>{\"name\": <tool_response><|im_start|>user\n"), 0, 1),
    Case("45 KB of user-turn headers", spam("<|im_start|>user\n"), 0, 0),
    Case("45 KB of <think> then a call", spam("<think>") + FOLD, 1, 0, acts=True),
    Case("45 KB of closers then an unclosed call", spam("</tool_call></think>") + "<tool_call>" + FOLD[11:-12], 0, 1),
    Case("45 KB of well-formed calls", spam(STATE), SPAM // len(STATE) + 1, 0),
    Case("45 KB of empty calls", spam("<tool_call></tool_call>"), 0, SPAM // 23 + 1),
    Case("45 KB of assistant headers and an action", spam("<|im_start|>assistant\n") + FOLD, 1, 0, acts=True),
    Case("deeply nested array", raw_call("[" * SPAM), 0, 1, error_has="nesting is bounded"),
    Case("deeply nested arguments", raw_call('{"name": "make_action", "arguments": ' + '{"a": ' * 5000), 0, 1,
         error_has="nesting is bounded"),
    Case("nesting at the bound",
         raw_call('{"name": "make_action", "arguments": {"action": "fold", "x": ' + "[" * (MAX_JSON_BRACKETS - 2)
                  + "]" * (MAX_JSON_BRACKETS - 2) + "}}"),
         1, 0, acts=True),
    Case("nesting just over the bound",
         raw_call('{"name": "make_action", "arguments": ' + "[" * MAX_JSON_BRACKETS + "]" * MAX_JSON_BRACKETS + "}"),
         0, 1, error_has="nesting is bounded"),
    Case("double-encoded deep arguments", raw_call('{"name": "make_action", "arguments": "' + "\\u005b" * 5000 + '"}'), 0, 1,
         error_has="nesting is bounded"),
    Case("integer of 5000 digits", raw_call('{"name": "make_action", "arguments": {"action": "bet", "amount": ' + "9" * 5000 + "}}"),
         0, 1, error_has="not valid JSON"),
    Case("integer of 400 digits", act("bet", int("9" * 400)), 1, 0),
    Case("amount NaN", raw_call('{"name": "make_action", "arguments": {"action": "bet", "amount": NaN}}'), 1, 0),
    Case("amount Infinity", raw_call('{"name": "make_action", "arguments": {"action": "raise", "amount": Infinity}}'), 1, 0),
    Case("amount -Infinity", raw_call('{"name": "make_action", "arguments": {"action": "raise", "amount": -Infinity}}'), 1, 0),
    Case("amount 1e999", raw_call('{"name": "make_action", "arguments": {"action": "bet", "amount": 1e999}}'), 1, 0),
    Case("amount string nan", act("bet", "nan"), 1, 0),
    Case("amount string inf", act("bet", "inf"), 1, 0),
    Case("amount string of 45 KB digits", act("bet", "9" * SPAM), 1, 0),
    Case("amount true", act("bet", True), 1, 0),
    Case("amount object", act("raise", {"to": 5}), 1, 0),
    Case("JSON array", raw_call("[1, 2]"), 0, 1, error_has="JSON object"),
    Case("JSON string", raw_call('"make_action"'), 0, 1),
    Case("JSON null", raw_call("null"), 0, 1),
    Case("JSON number", raw_call("12"), 0, 1),
    Case("name is a number", raw_call('{"name": 5, "arguments": {}}'), 0, 1),
    Case("arguments is a list", raw_call('{"name": "make_action", "arguments": ["fold"]}'), 0, 1),
    Case("arguments is a number", raw_call('{"name": "make_action", "arguments": 3}'), 0, 1),
    Case("arguments string not JSON", raw_call('{"name": "make_action", "arguments": "fold please"}'), 0, 1),
    Case("arguments string of a list", raw_call('{"name": "make_action", "arguments": "[1]"}'), 0, 1),
    Case("double-encoded arguments", raw_call('{"name": "make_action", "arguments": "{\\"action\\": \\"fold\\"}"}'), 1, 0, acts=True),
    Case("nested tool calls", "<tool_call><tool_call>" + FOLD[11:-12] + "</tool_call></tool_call>", 0, 1),
    Case("close before open", "</tool_call>" + FOLD, 1, 0, acts=True),
    Case("close before an unclosed open", "</tool_call><tool_call>" + FOLD[11:-12], 0, 1),
    Case("call inside an unclosed think", "<think>" + FOLD, 1, 0, acts=True),
    Case("call inside a closed think", "<think>" + FOLD + "</think>", 0, 0),
    Case("call inside a tool response", "<tool_response>" + FOLD + "</tool_response>", 0, 0),
    Case("fullwidth action", act("ｆｏｌｄ"), 1, 0),
    Case("action of 45 KB", act("fold" * (SPAM // 4)), 1, 0),
    Case("tool name of 45 KB", render_tool_call("x" * SPAM, {}), 1, 0),
    Case("emoji and RTL", render_tool_call("make_action", {"action": "fold", "note": "🂡\u202e"}), 1, 0, acts=True),
    Case("escaped lone surrogate name", raw_call('{"name": "\\ud800", "arguments": {}}'), 1, 0),
    Case("escaped lone surrogate action", raw_call('{"name": "make_action", "arguments": {"action": "\\udfff"}}'), 1, 0),
    Case("raw lone surrogate", "<tool_call>\ud800" + FOLD[11:], 0, 1),
    Case("NUL bytes", "\x00" * 100 + FOLD + "\x00", 1, 0, acts=True),
    Case("call split across a think block", "<tool_<think>x</think>call>" + FOLD[11:], 1, 0, acts=True),
    Case("duplicate keys", raw_call('{"name": "make_action", "name": "get_game_state"}'), 1, 0),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_parser_on_adversarial_case(case):
    parsed = parse_tool_calls(case.text)
    assert (len(parsed.calls), len(parsed.errors)) == (case.calls, case.errors), parsed.errors[:3]
    if case.error_has:
        assert case.error_has in parsed.errors[0]
    for message in parsed.errors:
        assert len(message) < 300  # model text is never echoed at length
    for call in parsed.calls:
        if call.name == "make_action":
            try:
                action_from_arguments(call.arguments)
            except ValueError as exc:
                assert len(str(exc)) < 300


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reward_on_adversarial_case(case):
    row = ROWS[0]
    before = reward_error_count()
    result = score_response(row["instruction"], row["output"], case.text)
    assert reward_error_count() == before and result["error"] == 0.0  # no exception swallowed
    assert cfg.MIN_SCORE <= result["score"] <= cfg.MAX_SCORE
    assert result["made_action"] == (1.0 if case.acts else 0.0)
    if not case.acts:
        assert result["score"] == cfg.MIN_SCORE


# ---- the rollout, with in-process zero-latency replies from the SGLang stand-in ----


@pytest.fixture(scope="module")
def standin(tokenizer):
    return SGLangStandIn(tokenizer, script=lambda request: Completion(""))


def play(standin, monkeypatch, turns, budget=1024, sample=None, resumes=0):
    """Run one episode whose k-th model turn is turns[k-1] (the last one repeats); an aborted
    sample is handed back up to `resumes` times, as slime does with partial rollouts."""

    async def post(url, payload):
        ids = payload["input_ids"]
        request = Request(payload, ids, standin.tokenizer.decode(ids, skip_special_tokens=False))
        return standin.reply(request, turns[min(request.assistant_turns, len(turns)) - 1])

    monkeypatch.setattr(rollout, "_post", post)
    args = types.SimpleNamespace(hf_checkpoint=str(TOKENIZER_DIR), sglang_router_ip="127.0.0.1", sglang_router_port=9,
                                 rollout_max_response_len=budget)
    sample = sample if sample is not None else Sample(prompt=ROWS[1]["instruction"], label=ROWS[1]["output"])
    for _ in range(resumes + 1):
        sample = asyncio.run(rollout.generate(args, sample, {"max_new_tokens": budget}))
        if sample.status != Sample.Status.ABORTED:
            break
    return sample


def check_sample(sample):
    assert sample.status in (Sample.Status.COMPLETED, Sample.Status.TRUNCATED, Sample.Status.ABORTED)
    assert len(sample.loss_mask) == len(sample.rollout_log_probs) == sample.response_length
    assert 0 <= sample.response_length < len(sample.tokens)
    assert set(sample.loss_mask) <= {0, 1}
    assert all(lp == 0.0 for mask, lp in zip(sample.loss_mask, sample.rollout_log_probs) if mask == 0)
    meta = sample.metadata["holdem"]
    assert meta["end"] in ("action", "no_tool_call", "turn_limit", "budget", "length", "abort", "eos")
    assert set(meta["tools"]) <= {*TOOL_NAMES, rollout.UNKNOWN_TOOL}
    result = score_response(sample.prompt, sample.label, sample.response)
    assert cfg.MIN_SCORE <= result["score"] <= cfg.MAX_SCORE and result["error"] == 0.0


# A model cannot write a lone surrogate (its text is decoded from token ids): not a rollout case.
MODEL_CASES = [case for case in CASES if "\ud800" not in case.text]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c.name for c in MODEL_CASES])
def test_rollout_on_adversarial_turn(case, standin, tokenizer, monkeypatch):
    sample = play(standin, monkeypatch, [Completion(case.text), Completion(FOLD)], budget=100_000)
    check_sample(sample)
    end = sample.metadata["holdem"]["end"]
    if case.acts:
        assert end == "action"
    elif case.calls + case.errors:
        # the model got its results or errors back and answered on the next turn (unless the
        # results did not fit in the budget)
        assert end in ("action", "budget")
    else:
        assert end == "no_tool_call"


def test_unknown_tool_names_are_counted_under_one_key(standin, tokenizer, monkeypatch):
    turn = "\n".join(render_tool_call(f"tool_{i}", {}) for i in range(5)) + "\n" + STATE
    sample = play(standin, monkeypatch, [Completion(turn), Completion(FOLD)])
    assert sample.metadata["holdem"]["tools"] == {rollout.UNKNOWN_TOOL: 5, "get_game_state": 1, "make_action": 1}


def test_invalid_utf8_bytes_from_the_model(standin, tokenizer, monkeypatch):
    byte = tokenizer.convert_tokens_to_ids("â")  # byte 0xE2 alone: not valid UTF-8
    fold = tokenizer.encode(FOLD, add_special_tokens=False)
    turns = [Completion("", token_ids=(byte, *fold, byte)), Completion(FOLD)]
    sample = play(standin, monkeypatch, turns)
    check_sample(sample)
    assert sample.metadata["holdem"]["end"] == "action"


@pytest.mark.parametrize(
    "fields",
    [
        {"response": None, "response_length": None},
        {"tokens": None, "response": None},
        {"metadata": None},
        {"metadata": {"holdem": "garbage"}},
        {"metadata": {"holdem": {"tools": ["x"]}}},
        {"prompt": None},
        {"prompt": [None, {"role": "user"}, 5]},
        {"prompt": [{"role": "user", "content": None}]},
        {"label": None},
    ],
)
def test_none_and_junk_fields_on_the_sample(fields, standin, tokenizer, monkeypatch):
    sample = Sample(prompt=ROWS[2]["instruction"], label=ROWS[2]["output"])
    for key, value in fields.items():
        setattr(sample, key, value)
    sample = play(standin, monkeypatch, [Completion(STATE), Completion(FOLD)], sample=sample)
    assert len(sample.loss_mask) == len(sample.rollout_log_probs) == sample.response_length
    assert sample.status == Sample.Status.COMPLETED and sample.metadata["holdem"]["end"] == "action"
    result = asyncio.run(reward_func(types.SimpleNamespace(), sample))
    assert cfg.MIN_SCORE <= result["score"] <= cfg.MAX_SCORE


@pytest.mark.parametrize("ids", [[-1], [2**32], ["x"]])
def test_token_ids_outside_the_vocabulary_range_are_a_protocol_error(ids):
    reply = {"meta_info": {"output_token_logprobs": [[-0.1, i, None] for i in ids], "finish_reason": {"type": "stop"}}}
    with pytest.raises(rollout.RolloutError, match="not in the SGLang format"):
        rollout._read_reply(reply)


# ---- properties ----

_IGNORED_RE = re.compile(r"<tool_response>.*?</tool_response>|<think>.*?</think>", re.S)
_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)


def regex_call_bodies(text: str) -> tuple[list[str], bool]:
    """The definition (the former implementation): quadratic on unclosed tags, fine on small texts."""
    text = _IGNORED_RE.sub("", text)
    bodies, end = [], 0
    for m in _CALL_RE.finditer(text):
        bodies.append(m.group(1))
        end = m.end()
    return bodies, "<tool_call>" in text[end:]


TAGS = ["<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>", "<tool_",
        "call>", "<t", "<|im_end|>", "<|im_start|>user\n", "<|im_start|>assistant\n", "\n", "x", "{", "}", "[", '"']
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=10,
)
call_bodies_text = st.one_of(
    json_values.map(json.dumps),
    st.builds(lambda n, a: json.dumps({"name": n, "arguments": a}),
              st.sampled_from([*TOOL_NAMES, "nope", "\ud800"]) | st.text(max_size=5),
              st.fixed_dictionaries({}, optional={"action": st.sampled_from(["fold", "bet", "raise", "all in"]) | json_values,
                                                   "amount": json_values}) | json_values),
    st.integers(0, 200).map(lambda n: "[" * n + "]" * n),
    st.integers(0, 4400).map(lambda n: '{"name": "make_action", "arguments": {"action": "bet", "amount": 1' + "0" * n + "}}"),
    st.text(max_size=20),
)
pieces = st.one_of(
    st.sampled_from(TAGS),
    call_bodies_text.map(lambda body: f"<tool_call>{body}</tool_call>"),
    call_bodies_text,
    st.text(max_size=10),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
)
texts = st.lists(pieces, max_size=12).map("".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(st.sampled_from(TAGS), max_size=30).map("".join) | texts)
def test_call_bodies_equal_the_regex_definition(text):
    assert call_bodies(text) == regex_call_bodies(text)
    assert strip_ignored(text) == _IGNORED_RE.sub("", text)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_parser_never_raises(text):
    parsed = parse_tool_calls(text)
    assert all(isinstance(call, ToolCall) and isinstance(call.arguments, dict) for call in parsed.calls)
    assert all(isinstance(message, str) for message in parsed.errors)
    for call in parsed.calls:
        try:
            action_from_arguments(call.arguments)
        except ValueError:
            pass  # the only exception it may raise


@settings(max_examples=300, deadline=None)
@given(arguments=st.dictionaries(st.sampled_from(["action", "amount", "x"]), json_values | st.integers(10**300, 10**400)))
def test_action_from_arguments_raises_only_value_error(arguments):
    try:
        action = action_from_arguments(arguments)
    except ValueError:
        return
    assert action.amount is None or action.amount > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=st.sampled_from(ROWS), text=texts)
def test_reward_never_raises_on_any_text(row, text):
    before = reward_error_count()
    result = score_response(row["instruction"], row["output"], text)
    assert cfg.MIN_SCORE <= result["score"] <= cfg.MAX_SCORE
    assert result["error"] == 0.0 and reward_error_count() == before


turn_texts = st.lists(st.one_of(pieces, st.sampled_from([STATE, FOLD, act("raise", 1e308), act("bet", "x")])), max_size=6).map("".join)
completions = st.builds(
    lambda text, mode, cut, eos: Completion(text, mode=mode, abort_after=cut, end_token="<|endoftext|>" if eos else "<|im_end|>"),
    turn_texts.filter(lambda t: not re.search("[\ud800-\udfff]", t)),  # model text is decoded from ids
    st.sampled_from(["stop", "stop", "stop", "length", "abort"]),
    st.integers(0, 40),
    st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(turns=st.lists(completions, min_size=1, max_size=4), budget=st.sampled_from([8, 64, 400, 2000]),
       max_turns=st.integers(1, 4), row=st.sampled_from(ROWS))
def test_rollout_never_raises_and_lengths_agree(turns, budget, max_turns, row, standin, tokenizer, monkeypatch):
    sample = Sample(prompt=row["instruction"], label=row["output"])
    monkeypatch.setenv("HOLDEM_MAX_TURNS", str(max_turns))
    sample = play(standin, monkeypatch, turns, budget=budget, sample=sample, resumes=2)
    check_sample(sample)
    assert sample.response_length <= budget
    prompt_len = len(sample.tokens) - sample.response_length
    assert sample.tokens[:prompt_len] == list(rollout.chat_format(tokenizer, False).prompt_ids(row["instruction"]))

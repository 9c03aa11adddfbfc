"""`python -m holdem.eval` against the SGLang stand-in (real HTTP, real tokenizer): scores match
a hand computation in both modes; a dead server and every bad input exit with one line."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from holdem import reward_config
from holdem.chat import load_tokenizer
from holdem.pokerbench import render_card
from holdem.reward import score_response
from holdem.toolcall import render_tool_call
from demo.sglang_standin import Completion, Request, SGLangStandIn

from .helpers import EXAMPLES, ROOT, run_module, write_jsonl

TOKENIZER = ROOT / "demo" / "qwen3_tokenizer"

# The six real rows, keyed by the hero's first hole card, with their labels for reference:
# Kh preflop "raise 12.0", Kc preflop "check", 7h flop "bet 2", Ad turn "fold",
# Kd river "raise 80", As river "call".
PLAIN_ANSWERS = {
    "Kh": "raise 12",           # paper 1 (numbers equal), strict 1
    "Kc": "Check.",             # paper 1, strict 1
    "7h": "bet 20",             # paper 1 ("bet 2" occurs in "bet 20"), strict 0
    "Ad": "I would call here",  # paper 0, strict 0, protocol error
    "Kd": "raise 40",           # paper 0.5: exact 0, action 1, strict 0
    "As": "raise 30",           # paper 0
}
TOOL_ACTIONS = {
    "Kh": {"action": "raise", "amount": 12},    # paper 1, strict 1
    "Kc": {"action": "check"},                  # paper 1, strict 1
    "7h": {"action": "bet", "amount": 3},       # paper 0.5, strict 0
    "Ad": None,                                 # answers in text: protocol error, all 0
    "Kd": {"action": "raise", "amount": 80},    # paper 1, strict 1
    "As": {"action": "fold"},                   # paper 0
}


def hero_card(request: Request) -> str:
    for card in PLAIN_ANSWERS:
        if f"your holding is [{render_card(card, False)} and" in request.text:
            return card
    raise AssertionError(f"stand-in got a prompt for no known row: {request.text[-300:]!r}")


def plain_script(request: Request) -> Completion:
    return Completion(PLAIN_ANSWERS[hero_card(request)])


def tools_script(request: Request) -> Completion:
    if request.assistant_turns == 1:
        return Completion(render_tool_call("get_game_state", {}))
    args = TOOL_ACTIONS[hero_card(request)]
    return Completion("I fold." if args is None else render_tool_call("make_action", args))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(TOKENIZER))


def run_eval(server: str, out: Path, *extra: str, data: Path = EXAMPLES):
    return run_module("holdem.eval", "--server", server, "--data", str(data), "--out", str(out),
                      "--tokenizer", str(TOKENIZER), "--connect-deadline", "2", "--request-deadline", "3", *extra)


def read_results(out: Path) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return rows, json.loads(out.with_name(out.stem + ".summary.json").read_text())


def test_plain_mode_scores_match_the_hand_computation(tmp_path, tokenizer, examples):
    out = tmp_path / "results.jsonl"
    with SGLangStandIn(tokenizer, plain_script) as server:
        result = run_eval(server.url, out, "--mode", "plain", "--concurrency", "3")
        prompts = [tokenizer.decode(body["input_ids"]) for body in server.requests]
    assert result.returncode == 0, result.stderr
    preds, summary = read_results(out)
    assert [p["paper_score"] for p in preds] == [1.0, 1.0, 1.0, 0.0, 0.5, 0.0]
    assert [p["strict"] for p in preds] == [1, 1, 0, 0, 0, 0]
    assert [p["protocol_error"] for p in preds] == [0, 0, 0, 1, 0, 0]
    overall = summary["overall"]
    assert overall["n"] == 6
    assert overall["exact_match"] == pytest.approx(3 / 6)
    assert overall["action_accuracy"] == pytest.approx(4 / 6)
    assert overall["strict_accuracy"] == pytest.approx(2 / 6)
    assert overall["protocol_error_rate"] == pytest.approx(1 / 6)
    streets = summary["by_street"]
    assert list(streets) == ["preflop", "flop", "turn", "river"]
    assert (streets["preflop"]["exact_match"], streets["preflop"]["strict_accuracy"]) == (1.0, 1.0)
    assert (streets["flop"]["exact_match"], streets["flop"]["strict_accuracy"]) == (1.0, 0.0)
    assert streets["turn"]["protocol_error_rate"] == 1.0
    assert (streets["river"]["exact_match"], streets["river"]["action_accuracy"]) == (0.0, 0.5)
    # The paper's prompt: the instruction as the only user turn, thinking off, no tools.
    row = examples[0]["instruction"]
    assert any(p == f"<|im_start|>user\n{row}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n" for p in prompts)
    # Reward: the label-exact answers get the maximum, the answer without an action the minimum.
    rewards = [p["reward"] for p in preds]
    assert rewards[0] == rewards[1] == reward_config.MAX_SCORE
    assert rewards[3] == reward_config.MIN_SCORE
    assert overall["mean_reward"] == pytest.approx(sum(rewards) / 6)
    assert "overall" in result.stdout and "50.0%" in result.stdout


def test_tools_mode_runs_the_rollout_episode(tmp_path, tokenizer):
    out = tmp_path / "results.jsonl"
    with SGLangStandIn(tokenizer, tools_script) as server:
        result = run_eval(server.url, out, "--mode", "tools")
        n_requests = len(server.requests)
        first_prompt = tokenizer.decode(server.requests[0]["input_ids"])
    assert result.returncode == 0, result.stderr
    assert n_requests == 12  # two assistant turns per row
    assert "<tools>" in first_prompt and "make_action" in first_prompt
    preds, summary = read_results(out)
    assert [p["predicted"] for p in preds] == ["raise 12", "check", "bet 3", None, "raise 80", "fold"]
    assert [p["paper_score"] for p in preds] == [1.0, 1.0, 0.5, 0.0, 1.0, 0.0]
    assert [p["strict"] for p in preds] == [1, 1, 0, 0, 1, 0]
    assert preds[3]["protocol_error"] == 1 and preds[3]["finish_reason"] == "no_tool_call"
    assert preds[0]["episode"]["tools"] == {"get_game_state": 1, "make_action": 1}
    overall = summary["overall"]
    assert (overall["exact_match"], overall["action_accuracy"]) == (pytest.approx(3 / 6), pytest.approx(4 / 6))
    assert overall["strict_accuracy"] == pytest.approx(3 / 6)
    assert overall["protocol_error_rate"] == pytest.approx(1 / 6)
    # The reward sees the whole episode, as in training.
    for pred, row in zip(preds, [json.loads(line) for line in EXAMPLES.read_text().splitlines()]):
        assert pred["reward"] == score_response(row["instruction"], row["output"],
                                                pred["response"])["score"]


def test_limit_evaluates_the_first_rows(tmp_path, tokenizer):
    out = tmp_path / "results.jsonl"
    with SGLangStandIn(tokenizer, plain_script) as server:
        result = run_eval(server.url, out, "--limit", "2")
        assert len(server.requests) == 2
    assert result.returncode == 0, result.stderr
    assert [p["index"] for p in read_results(out)[0]] == [0, 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_error_line(result, code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    lines = [ln for ln in result.stderr.strip().splitlines() if "PyTorch was not found" not in ln]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("mode", ["plain", "tools"])
def test_server_that_does_not_answer_exits_3(tmp_path, mode):
    out = tmp_path / "results.jsonl"
    result = run_eval(f"http://127.0.0.1:{free_port()}", out, "--mode", mode)
    assert_one_error_line(result, 3, "no answer within 2 s")
    assert not out.exists()


def test_server_that_accepts_but_never_replies_exits_3(tmp_path):
    out = tmp_path / "results.jsonl"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections queue in the backlog; nothing ever answers
        result = run_eval(f"http://127.0.0.1:{silent.getsockname()[1]}", out)
    assert_one_error_line(result, 3, "no answer")


def bad_data(tmp_path: Path, examples: list[dict], case: str) -> Path:
    row = dict(examples[0])
    if case == "missing file":
        return tmp_path / "missing.jsonl"
    if case == "empty input":
        path = tmp_path / "empty.jsonl"
        path.write_text("")
        return path
    if case == "no instruction":
        row.pop("instruction")
    elif case == "no output":
        row.pop("output")
    elif case == "non-string field":
        row["output"] = 3.5
    elif case == "label outside grammar":
        row["output"] = "shove"
    return write_jsonl(tmp_path / "bad.jsonl", examples[:1] + [row])


@pytest.mark.parametrize("case, needle", [
    ("missing file", "no such file"),
    ("empty input", "holds no rows"),
    ("no instruction", "bad.jsonl:2: no 'instruction' field"),
    ("no output", "bad.jsonl:2: no 'output' field"),
    ("non-string field", "'output' is float"),
    ("label outside grammar", "label 'shove' is outside"),
])
def test_bad_data_exits_2(tmp_path, examples, case, needle):
    out = tmp_path / "results.jsonl"
    result = run_eval(f"http://127.0.0.1:{free_port()}", out, data=bad_data(tmp_path, examples, case))
    assert_one_error_line(result, 2, needle)
    assert not out.exists()


def test_unreadable_parquet_data_exits_2(tmp_path):
    data = tmp_path / "test.parquet"
    data.write_bytes(b"not parquet")
    result = run_eval(f"http://127.0.0.1:{free_port()}", tmp_path / "r.jsonl", data=data)
    assert_one_error_line(result, 2, "unreadable Parquet")


@pytest.mark.parametrize("args, needle", [
    (("--out", "/no/such/dir/r.jsonl"), "does not exist"),
    (("--tokenizer", "/no/such/tokenizer"), "cannot load a tokenizer"),
    (("--server", "localhost:30000"), "expected an http"),
    (("--mode", "tools", "--server", "http://127.0.0.1:1/v1"), "tools mode needs http://HOST:PORT"),
    (("--concurrency", "0"), "--concurrency 0"),
])
def test_bad_arguments_exit_2(tmp_path, args, needle):
    base = {"--server": f"http://127.0.0.1:{free_port()}", "--out": str(tmp_path / "r.jsonl"),
            "--tokenizer": str(TOKENIZER)}
    extra = list(args)
    for key in list(base):
        if key in extra:
            base.pop(key)
    argv = [x for kv in base.items() for x in kv] + ["--data", str(EXAMPLES), "--connect-deadline", "1", *extra]
    result = run_module("holdem.eval", *argv)
    assert_one_error_line(result, 2, needle)

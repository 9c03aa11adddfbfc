"""The tool-calling rollout end to end against the SGLang stand-in, with the real Qwen3 tokenizer."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import types
from pathlib import Path

import pytest

from holdem import rollout
from holdem.chat import SYSTEM_PROMPT
from holdem.pokerbench import parse_instruction
from holdem.reward import score_response
from holdem.rollout import RolloutConfig, RolloutError, generate
from holdem.rowgen import generate_rows
from holdem.toolcall import render_tool_call
from holdem.tools import TOOLS, render_game_state
from demo.sglang_standin import MALFORMED_TOOL_CALL, Completion, SGLangStandIn, script_logprob, turns_script
from demo.sample_standin import Sample

TOKENIZER_DIR = Path(__file__).resolve().parents[3] / "demo" / "qwen3_tokenizer"

STATE = render_tool_call("get_game_state", {})
STRENGTH = render_tool_call("hand_strength", {})


def act(action: str, amount: float | None = None) -> str:
    return render_tool_call("make_action", {"action": action} | ({} if amount is None else {"amount": amount}))


def make_args(server: SGLangStandIn, **extra) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        hf_checkpoint=str(TOKENIZER_DIR), sglang_router_ip=server.host, sglang_router_port=server.port,
        rollout_max_response_len=1024, **extra,
    )


def run(args, sample, budget=1024, **params):
    async def main():
        try:
            return await generate(args, sample, {"max_new_tokens": budget, "temperature": 1.0, **params})
        finally:
            await rollout.close_sessions()

    return asyncio.run(main())


def check_invariants(sample: Sample, prompt_len: int) -> None:
    assert len(sample.loss_mask) == len(sample.rollout_log_probs) == sample.response_length
    assert sample.response_length == len(sample.tokens) - prompt_len


def expected_token_ids(tokenizer, instruction: str, sample: Sample, thinking: bool) -> list[int]:
    """What the tokenizer gives for the chat template's rendering of the same conversation."""
    turns = re.split(r"<\|im_end\|>\n<\|im_start\|>user\n.*?<\|im_end\|>\n<\|im_start\|>assistant\n", sample.response, flags=re.S)
    results = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", sample.response, flags=re.S)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": instruction}]
    blocks = re.findall(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", sample.response, flags=re.S)
    result_iter = iter(results)
    for index, turn in enumerate(turns):
        messages.append({"role": "assistant", "content": turn.removesuffix("<|im_end|>")})
        if index < len(blocks):
            messages += [{"role": "tool", "content": next(result_iter)} for _ in range(blocks[index].count("<tool_response>"))]
    text = tokenizer.apply_chat_template(messages, tools=list(TOOLS), tokenize=False, enable_thinking=thinking)
    if not thinking:
        # Qwen3's template drops the empty think block of earlier assistant turns; the rollout
        # is append-only and keeps the block the model actually saw in its generation prompt.
        text = re.sub(r"<\|im_start\|>assistant\n(?!<think>)", "<|im_start|>assistant\n<think>\n\n</think>\n\n", text)
    text = text.removesuffix("\n")  # the template closes the last turn with "<|im_end|>\n"
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture
def standin(tokenizer):
    servers = []

    def start(script):
        server = SGLangStandIn(tokenizer, script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_prompt_ids_are_the_chat_template_with_tools(tokenizer, real_rows, standin):
    server = standin(turns_script([Completion(act("raise", 12))]))
    instruction = real_rows[0]["instruction"]
    sample = run(make_args(server), Sample(prompt=instruction, label=real_rows[0]["output"]))
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": instruction}],
        tools=list(TOOLS), tokenize=False, add_generation_prompt=True, enable_thinking=False,
    )
    assert rendered.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and "<tools>" in rendered
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert server.requests[0]["input_ids"] == prompt_ids
    assert sample.tokens[: len(prompt_ids)] == prompt_ids


def test_single_action_turn(tokenizer, real_rows, standin):
    server = standin(turns_script([Completion(act("raise", 12))]))
    row = real_rows[0]
    sample = run(make_args(server), Sample(prompt=row["instruction"], label=row["output"]))
    prompt_len = len(server.requests[0]["input_ids"])
    check_invariants(sample, prompt_len)
    assert sample.status == Sample.Status.COMPLETED
    assert sample.loss_mask == [1] * sample.response_length
    response_ids = sample.tokens[prompt_len:]
    assert response_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert sample.rollout_log_probs == [script_logprob(i, t) for i, t in enumerate(response_ids)]
    assert sample.response == act("raise", 12) + "<|im_end|>"
    assert sample.metadata["holdem"] == {"turns": 1, "end": "action", "tools": {"make_action": 1}}
    assert score_response(row["instruction"], row["output"], sample.response)["score"] == 1.0
    params = server.requests[0]["sampling_params"]
    assert params["max_new_tokens"] == 1024 and params["temperature"] == 1.0
    assert set(tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])) <= set(params["stop_token_ids"])


@pytest.mark.parametrize("thinking", [False, True])
def test_multi_turn_tokens_equal_the_template_rendering(tokenizer, real_rows, standin, thinking):
    reason = "<think>\nLet me look at the table first.\n</think>\n\n" if thinking else ""
    server = standin(turns_script([Completion(reason + STATE), Completion(reason + STRENGTH),
                                   Completion(reason + act("fold"))]))
    row = real_rows[3]
    sample = run(make_args(server, holdem_enable_thinking=thinking), Sample(prompt=row["instruction"], label=row["output"]))
    prompt_len = len(server.requests[0]["input_ids"])
    check_invariants(sample, prompt_len)
    assert sample.status == Sample.Status.COMPLETED and len(server.requests) == 3
    assert sample.tokens == expected_token_ids(tokenizer, row["instruction"], sample, thinking)
    assert tokenizer.decode(sample.tokens[prompt_len:], skip_special_tokens=False) == sample.response
    # every request continues the same sequence, with the remaining budget
    for request in server.requests:
        seen = request["input_ids"]
        assert sample.tokens[: len(seen)] == seen
        assert request["sampling_params"]["max_new_tokens"] == 1024 - (len(seen) - prompt_len)
    # tool turns: mask 0 and log-prob 0.0; model turns: mask 1 and the server's log-probs
    response_ids = sample.tokens[prompt_len:]
    for i, (mask, logprob) in enumerate(zip(sample.loss_mask, sample.rollout_log_probs)):
        assert (logprob == 0.0) if mask == 0 else (logprob < 0.0)
    assert sum(sample.loss_mask) < sample.response_length
    first_tool_token = sample.loss_mask.index(0)
    assert response_ids[first_tool_token - 1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    state_json = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", sample.response, flags=re.S)
    assert state_json[0] == render_game_state(parse_instruction(row["instruction"]))
    assert json.loads(state_json[1])["made_hand"] == "High card"
    assert sample.metadata["holdem"]["tools"] == {"get_game_state": 1, "hand_strength": 1, "make_action": 1}
    assert score_response(row["instruction"], row["output"], sample.response)["score"] == 1.0


def test_length_cut_off_is_truncated(real_rows, standin):
    server = standin(turns_script([Completion(STATE), Completion(act("fold"), mode="length")]))
    sample = run(make_args(server), Sample(prompt=real_rows[3]["instruction"]))
    check_invariants(sample, len(server.requests[0]["input_ids"]))
    assert sample.status == Sample.Status.TRUNCATED and sample.metadata["holdem"]["end"] == "length"


def test_completion_beyond_the_budget_is_cut_at_the_budget(real_rows, standin):
    server = standin(turns_script([Completion("I think " * 100 + act("fold"))]))
    sample = run(make_args(server), Sample(prompt=real_rows[3]["instruction"]), budget=40)
    check_invariants(sample, len(server.requests[0]["input_ids"]))
    assert sample.status == Sample.Status.TRUNCATED and sample.response_length == 40


def test_no_room_for_the_tool_turn_truncates_without_appending_it(real_rows, standin):
    server = standin(turns_script([Completion(STATE), Completion(act("fold"))]))
    sample = run(make_args(server), Sample(prompt=real_rows[3]["instruction"]), budget=60)
    check_invariants(sample, len(server.requests[0]["input_ids"]))
    assert sample.status == Sample.Status.TRUNCATED and sample.metadata["holdem"]["end"] == "budget"
    assert sample.response_length <= 60 and "<tool_response>" not in sample.response
    assert len(server.requests) == 1


def test_abort_returns_at_once_and_partial_rollout_continues_with_the_remaining_budget(tokenizer, real_rows, standin):
    full = tokenizer.encode(act("raise", 12), add_special_tokens=False)

    def script(request):
        if request.body["sampling_params"]["max_new_tokens"] == 200:  # the first request is aborted
            return Completion("", mode="abort", abort_after=7, token_ids=tuple(full))
        return Completion("", token_ids=tuple(full[7:]))  # the resumed turn finishes the call

    server = standin(script)
    args = make_args(server)
    row = real_rows[0]
    sample = run(args, Sample(prompt=row["instruction"], label=row["output"]), budget=200)
    prompt_len = len(server.requests[0]["input_ids"])
    check_invariants(sample, prompt_len)
    assert sample.status == Sample.Status.ABORTED and len(server.requests) == 1
    assert sample.response_length == 7 and sample.loss_mask == [1] * 7
    earlier_logprobs = list(sample.rollout_log_probs)
    sample = run(args, sample, budget=200)  # slime hands the aborted sample back as it was
    check_invariants(sample, prompt_len)
    assert sample.status == Sample.Status.COMPLETED and len(server.requests) == 2
    assert server.requests[1]["sampling_params"]["max_new_tokens"] == 200 - 7
    assert server.requests[1]["input_ids"] == sample.tokens[: prompt_len + 7]
    assert sample.rollout_log_probs[:7] == earlier_logprobs
    assert sample.tokens[prompt_len:] == full + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert score_response(row["instruction"], row["output"], sample.response)["score"] == 1.0


def test_partial_rollout_after_a_finished_turn_runs_its_tools_first(tokenizer, real_rows, standin):
    server = standin(turns_script([Completion(STATE), Completion(act("fold"))]))
    args = make_args(server)
    row = real_rows[3]
    # Simulate an abort exactly at the end of turn 1: the model's turn is complete, tools not run.
    turn1 = tokenizer.encode(STATE, add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    run(args, Sample(prompt=row["instruction"]), budget=1)  # a one-token episode, to capture the prompt ids
    prompt = server.requests[-1]["input_ids"]
    # slime's --mask-offpolicy-in-partial-rollout zeroes the earlier mask: the turn still counts as closed
    sample = Sample(prompt=row["instruction"], tokens=prompt + turn1, response=STATE + "<|im_end|>",
                    response_length=len(turn1), loss_mask=[0] * len(turn1), rollout_log_probs=[-0.5] * len(turn1),
                    status=Sample.Status.ABORTED)
    before = len(server.requests)
    sample = run(args, sample, budget=1024)
    check_invariants(sample, len(prompt))
    assert sample.status == Sample.Status.COMPLETED and len(server.requests) == before + 1
    assert sample.tokens == expected_token_ids(tokenizer, row["instruction"], sample, False)


def test_malformed_tool_call_gets_an_error_and_a_retry(real_rows, standin):
    server = standin(turns_script([Completion(MALFORMED_TOOL_CALL), Completion(act("call"))]))
    row = real_rows[5]
    sample = run(make_args(server), Sample(prompt=row["instruction"], label=row["output"]))
    check_invariants(sample, len(server.requests[0]["input_ids"]))
    assert sample.status == Sample.Status.COMPLETED and len(server.requests) == 2
    assert "tool call is not valid JSON" in sample.response
    result = score_response(row["instruction"], row["output"], sample.response)
    assert result["action"] == "call" and result["protocol_errors"] == 1 and result["score"] < 1.0


def test_plain_answer_without_tool_call_ends_the_episode(real_rows, standin):
    server = standin(turns_script([Completion("raise 12.0")]))
    sample = run(make_args(server), Sample(prompt=real_rows[0]["instruction"]))
    assert sample.status == Sample.Status.COMPLETED and sample.metadata["holdem"]["end"] == "no_tool_call"
    assert len(server.requests) == 1


def test_turn_limit(real_rows, standin):
    server = standin(turns_script([Completion(STATE)]))
    sample = run(make_args(server, holdem_max_turns=3), Sample(prompt=real_rows[0]["instruction"]))
    check_invariants(sample, len(server.requests[0]["input_ids"]))
    assert sample.status == Sample.Status.COMPLETED and sample.metadata["holdem"]["end"] == "turn_limit"
    assert len(server.requests) == 3 and sample.metadata["holdem"]["turns"] == 3


def test_eos_instead_of_turn_end(real_rows, standin):
    server = standin(turns_script([Completion(act("fold"), end_token="<|endoftext|>")]))
    sample = run(make_args(server), Sample(prompt=real_rows[3]["instruction"]))
    assert sample.status == Sample.Status.COMPLETED and sample.metadata["holdem"]["end"] == "eos"


def test_64_concurrent_samples(tokenizer, standin):
    rows = list(generate_rows(64, seed=99))
    labels = {row["instruction"]: row["output"] for row in rows}

    def script(request):
        instruction = next(text for text in labels if text in request.text)
        if request.assistant_turns == 1:
            return Completion(STATE)
        label = labels[instruction]
        kind, _, amount = label.partition(" ")
        if label == "all in":
            return Completion(act("all in"))
        return Completion(act(kind, float(amount)) if amount else act(kind))

    server = standin(script)
    args = make_args(server)
    samples = [Sample(index=i, prompt=row["instruction"], label=row["output"]) for i, row in enumerate(rows)]

    async def main():
        try:
            return await asyncio.gather(*(generate(args, s, {"max_new_tokens": 1024}) for s in samples))
        finally:
            await rollout.close_sessions()

    done = asyncio.run(main())
    assert len(server.requests) == 128
    # all 64 first turns reached the server before any sample's second turn: they ran concurrently
    first_turns = [tokenizer.decode(r["input_ids"]).count("<|im_start|>assistant") for r in server.requests[:64]]
    assert first_turns == [1] * 64
    for sample in done:
        prompt_len = len(sample.tokens) - sample.response_length
        check_invariants(sample, prompt_len)
        assert sample.status == Sample.Status.COMPLETED
        assert sample.tokens == expected_token_ids(tokenizer, sample.prompt, sample, False)
        assert score_response(sample.prompt, sample.label, sample.response)["score"] == 1.0


def test_slow_tools_do_not_block_the_event_loop(real_rows, standin, monkeypatch):
    released = threading.Event()
    real_execute = rollout.execute_tool

    def blocking_execute(call, ctx):
        if call.name == "hand_strength":
            assert released.wait(10), "the event loop was blocked while hand_strength ran"
        return real_execute(call, ctx)

    monkeypatch.setattr(rollout, "execute_tool", blocking_execute)
    server = standin(turns_script([Completion(STRENGTH), Completion(act("fold"))]))
    args = make_args(server)

    async def main():
        async def release_soon():
            while len(server.requests) < 1:
                await asyncio.sleep(0.001)
            released.set()

        try:
            sample, _ = await asyncio.gather(generate(args, Sample(prompt=real_rows[3]["instruction"]), {"max_new_tokens": 512}),
                                             release_soon())
            return sample
        finally:
            await rollout.close_sessions()

    sample = asyncio.run(main())
    assert sample.status == Sample.Status.COMPLETED and "made_hand" in sample.response


def test_unreachable_server_is_a_rollout_error(real_rows, monkeypatch):
    monkeypatch.setattr(rollout, "HTTP_ATTEMPTS", 2)
    args = types.SimpleNamespace(hf_checkpoint=str(TOKENIZER_DIR), sglang_router_ip="127.0.0.1", sglang_router_port=9,
                                 rollout_max_response_len=64)
    with pytest.raises(RolloutError, match="failed 2 times"):
        run(args, Sample(prompt=real_rows[0]["instruction"]))


@pytest.mark.parametrize("reply", [{}, {"meta_info": {"output_token_logprobs": [["x"]]}}, None])
def test_reply_outside_the_protocol_is_a_rollout_error(reply):
    with pytest.raises(RolloutError, match="not in the SGLang format"):
        rollout._read_reply(reply)


def test_inconsistent_partial_sample_is_rejected(real_rows, standin):
    server = standin(turns_script([Completion(act("fold"))]))
    bad = Sample(prompt=real_rows[0]["instruction"], tokens=[1, 2, 3], response_length=2, loss_mask=[1], rollout_log_probs=[0.0, 0.0])
    with pytest.raises(RolloutError, match="inconsistent partial rollout"):
        run(make_args(server), bad)


@pytest.mark.parametrize(("attrs", "message"), [({"holdem_max_turns": 0}, "HOLDEM_MAX_TURNS"),
                                                ({"holdem_max_turns": "x"}, "HOLDEM_MAX_TURNS"),
                                                ({"holdem_enable_thinking": "maybe"}, "HOLDEM_ENABLE_THINKING")])
def test_bad_config_is_named(attrs, message):
    with pytest.raises(ValueError, match=message):
        RolloutConfig.from_args(types.SimpleNamespace(**attrs))


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("HOLDEM_ENABLE_THINKING", "true")
    monkeypatch.setenv("HOLDEM_MAX_TURNS", "4")
    assert RolloutConfig.from_args(types.SimpleNamespace()) == RolloutConfig(True, 4)

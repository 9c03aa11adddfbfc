"""Reward throughput on 10,000 generated PokerBench rows with realistic rollout responses.

    python bench/reward.py [--rows 10000] [--seed 0] [--group 8]

Prints samples/s on one core (the target is >= 20,000) for cold prompts (parse cache
cleared: every prompt new) and for GRPO groups (each prompt scored --group times, as slime
does with n-samples-per-prompt), next to a baseline measured in the same run: json.loads of
the same responses (JSON-encoded), i.e. the C parser reading the same number of bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from holdem.pokerbench import _parse_instruction, parse_instruction  # noqa: E402
from holdem.reward import score_response  # noqa: E402
from holdem.rowgen import generate_rows  # noqa: E402
from holdem.toolcall import render_tool_call  # noqa: E402
from holdem.tools import render_game_state  # noqa: E402

TOOL_TURN = "<|im_end|>\n<|im_start|>user\n<tool_response>\n{}\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
STRENGTH = '{"hand": "one pair", "equity_vs_random": 0.62, "samples": 400}'


def _action_call(label: str, rng: random.Random, wrong: bool) -> str:
    parts = label.split(" ")
    kind, amount = parts[0], (float(parts[1]) if len(parts) > 1 and label != "all in" else None)
    if label == "all in":
        kind = "all in"
    if wrong:
        kind = rng.choice(["fold", "call", "check", "bet", "raise"])
        amount = float(rng.randint(1, 60)) if kind in ("bet", "raise") else None
    args = {"action": kind} if amount is None else {"action": kind, "amount": amount}
    return render_tool_call("make_action", args)


def realistic_response(row: dict, rng: random.Random) -> str:
    """One response of the kinds a policy produces early and late in training."""
    roll = rng.random()
    state_json = render_game_state(parse_instruction(row["instruction"]))
    final = _action_call(row["output"], rng, wrong=rng.random() < 0.4)
    if roll < 0.30:
        return final + "<|im_end|>"
    if roll < 0.50:
        return render_tool_call("get_game_state", {}) + TOOL_TURN.format(state_json) + final + "<|im_end|>"
    if roll < 0.70:
        return (render_tool_call("get_game_state", {}) + TOOL_TURN.format(state_json)
                + render_tool_call("hand_strength", {}) + TOOL_TURN.format(STRENGTH) + final + "<|im_end|>")
    if roll < 0.85:
        thought = "The pot is small and I am out of position with a marginal hand. " * rng.randint(1, 6)
        return f"<think>\n{thought}\n</think>\n\n" + final + "<|im_end|>"
    if roll < 0.93:
        return '<tool_call>\n{"name": "make_action", "arguments": {"action": "raise", "amount": }\n</tool_call><|im_end|>'
    return row["output"] + "<|im_end|>"  # plain text, no tool call


def _rate(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group", type=int, default=8)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = list(generate_rows(args.rows, args.seed))
    items = [(row["instruction"], row["output"], realistic_response(row, rng)) for row in rows]
    encoded = [json.dumps(response) for _, _, response in items]
    mean_chars = sum(len(r) for _, _, r in items) / len(items)

    _parse_instruction.cache_clear()
    cold = _rate(lambda it: score_response(*it), items)
    baseline = _rate(json.loads, encoded)
    groups = items[: max(1, args.rows // args.group)]
    grouped_items = [it for it in groups for _ in range(args.group)]
    _parse_instruction.cache_clear()
    grouped = _rate(lambda it: score_response(*it), grouped_items)
    scores = [score_response(*it)["score"] for it in items]

    print(f"rows: {len(items)}, mean response {mean_chars:.0f} chars, mean score {sum(scores) / len(scores):+.3f}")
    print(f"reward, cold prompts        : {cold:>10,.0f} samples/s  (target >= 20,000 on one core)")
    print(f"reward, groups of {args.group:<2}        : {grouped:>10,.0f} samples/s")
    print(f"baseline json.loads (same responses): {baseline:>10,.0f} /s")
    print(f"ratio reward/json.loads: cold {cold / baseline:.3f}, grouped {grouped / baseline:.3f}")


if __name__ == "__main__":
    main()

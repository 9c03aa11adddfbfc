"""Reward throughput on 10,000 generated PokerBench rows with realistic rollout responses.

    python bench/reward.py [--rows 10000] [--seed 0] [--group 8] [--repeat 3] [--quick]

Prints samples/s on one core (targets: >= 25,000 cold, >= 40,000 grouped, on the reference
machine) for cold prompts (every cache of the reward cleared: every prompt new) and for GRPO
groups (each prompt scored --group times, as slime does with n-samples-per-prompt, caches
cleared first), next to a baseline measured in the same run: json.loads of the same
responses (JSON-encoded), i.e. the C parser reading the same number of bytes. Each figure is
the best of --repeat passes, timed in process CPU time.

Hostile output: a 45 KB response of unclosed `<tool_call>` / `<think>` / `<tool_response>`
/ user-turn openers is scored too, reported as a ratio against json.loads of the same bytes
(a linear scorer stays within a small factor; the old regex scan was quadratic).

--quick runs tiny sizes in seconds for CI. It exits non-zero only when the script or the
reward breaks (an exception, a score out of range, a swallowed reward error), never on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from holdem import reward_config as cfg  # noqa: E402
from holdem.pokerbench import _parse_instruction, parse_instruction  # noqa: E402
from holdem.reward import clear_caches, reward_error_count, score_response  # noqa: E402
from holdem.rowgen import generate_rows  # noqa: E402
from holdem.toolcall import render_tool_call  # noqa: E402
from holdem.tools import render_game_state  # noqa: E402
from verdict import verdict  # noqa: E402  (bench/ is on sys.path when a bench runs as a script)

TOOL_TURN = "<|im_end|>\n<|im_start|>user\n<tool_response>\n{}\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
STRENGTH = '{"hand": "one pair", "equity_vs_random": 0.62, "samples": 400}'
SPAM_UNIT = "<tool_call><think>{\"name\": <tool_response><|im_start|>user\n"


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


def spam_response(chars: int) -> str:
    """`chars` characters of unclosed openers: the worst case of a lazy-regex scan."""
    return (SPAM_UNIT * (chars // len(SPAM_UNIT) + 1))[:chars]


def _rate(fn, items, before=None) -> float:
    """Items per second of this process's CPU time (one core; other processes' load does not
    count) for one pass (`before` runs untimed first)."""
    if before is not None:
        before()
    start = time.process_time()
    for item in items:
        fn(item)
    return len(items) / max(time.process_time() - start, 1e-9)


def _best(passes: dict, repeat: int) -> dict:
    """The best rate of each pass over `repeat` rounds; the passes of a round run back to
    back, so a figure and its baseline see the same machine load."""
    best = dict.fromkeys(passes, 0.0)
    for _ in range(repeat):
        for name, run in passes.items():
            best[name] = max(best[name], run())
    return best


def _cold() -> None:
    clear_caches()
    _parse_instruction.cache_clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--spam-chars", type=int, default=45_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI: fails only if the script breaks")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = min(args.rows, 200), 1
    rng = random.Random(args.seed)
    rows = list(generate_rows(args.rows, args.seed))
    items = [(row["instruction"], row["output"], realistic_response(row, rng)) for row in rows]
    encoded = [json.dumps(response) for _, _, response in items]
    mean_chars = sum(len(r) for _, _, r in items) / len(items)
    errors_before = reward_error_count()

    score = lambda it: score_response(*it)  # noqa: E731
    groups = items[: max(1, args.rows // args.group)]
    grouped_items = [it for it in groups for _ in range(args.group)]
    spam = spam_response(args.spam_chars)
    spam_items = [(items[0][0], items[0][1], spam)] * (3 if args.quick else 20)
    spam_encoded = [json.dumps(spam)] * len(spam_items)
    best = _best(
        {
            "cold": lambda: _rate(score, items, before=_cold),
            "baseline": lambda: _rate(json.loads, encoded),
            "grouped": lambda: _rate(score, grouped_items, before=_cold),
            "spam": lambda: _rate(score, spam_items, before=_cold),
            "spam_baseline": lambda: _rate(json.loads, spam_encoded),
        },
        args.repeat,
    )
    cold, baseline, grouped, spam_rate, spam_baseline = (
        best[k] for k in ("cold", "baseline", "grouped", "spam", "spam_baseline")
    )
    scores = [score_response(*it)["score"] for it in items]
    spam_result = score_response(*spam_items[0])

    print(f"rows: {len(items)}, mean response {mean_chars:.0f} chars, mean score {sum(scores) / len(scores):+.3f}")
    print(f"reward, cold prompts        : {cold:>10,.0f} samples/s  (target >= 25,000 on one core)")
    print(f"reward, groups of {args.group:<2}        : {grouped:>10,.0f} samples/s  (target >= 40,000)")
    print(f"baseline json.loads (same responses): {baseline:>10,.0f} /s")
    print(f"ratio reward/json.loads: cold {cold / baseline:.3f}, grouped {grouped / baseline:.3f}")
    print(f"spam response ({len(spam):,} chars of unclosed openers): {1e3 / spam_rate:.3f} ms per scoring, "
          f"json.loads of the same bytes {1e3 / spam_baseline:.3f} ms")
    print(f"ratio spam reward time / json.loads time: {spam_baseline / spam_rate:.1f}")

    problems = []
    if not all(cfg.MIN_SCORE <= s <= cfg.MAX_SCORE for s in scores):
        problems.append("a score is outside [MIN_SCORE, MAX_SCORE]")
    if reward_error_count() != errors_before:
        problems.append(f"the reward swallowed {reward_error_count() - errors_before} exception(s)")
    if spam_result["score"] != cfg.MIN_SCORE or spam_result["error"]:
        problems.append(f"the spam response did not score the minimum cleanly: {spam_result}")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main())

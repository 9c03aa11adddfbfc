"""The rollout's own time per tool turn, against a zero-latency stand-in server.

    python bench/rollout.py [--episodes 300] [--tool-turns 3] [--quick]

Replies are precomputed with the SGLang stand-in (demo/sglang_standin.py) and served
in-process with no latency, so the timing is the rollout's own work: payload building, reply
parsing, decoding the model's tokens, parsing tool calls, running get_game_state, rendering and
encoding the tool-response turn, bookkeeping. Per tool turn = (time of episodes with K
get_game_state turns - time of episodes answering at once) / K. Target: < 1 ms.
Baselines measured in the same run: one HTTP round trip of the same /generate request to the
real stand-in server on 127.0.0.1 (aiohttp on both ends), and the tokenizer encoding the
same tool-response text.

Hostile output: one episode whose first turn is 45 KB of unclosed `<tool_call>` / `<think>` /
`<tool_response>` openers (then make_action), reported against json.loads of the same bytes.

--quick runs tiny sizes in seconds for CI; it exits non-zero only when the script or the
rollout breaks (an exception, an episode that does not end with its action), never on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from holdem import rollout  # noqa: E402
from holdem.chat import _cached_prompt_ids, chat_format, load_tokenizer  # noqa: E402
from holdem.rowgen import generate_rows  # noqa: E402
from holdem.toolcall import render_tool_call  # noqa: E402
from holdem.tools import make_context, render_game_state  # noqa: E402
from demo.sglang_standin import Completion, Request, SGLangStandIn, turns_script  # noqa: E402
from demo.sample_standin import Sample  # noqa: E402

TOKENIZER_DIR = os.path.join(ROOT, "demo", "qwen3_tokenizer")
STATE = Completion(render_tool_call("get_game_state", {}))
FOLD = Completion(render_tool_call("make_action", {"action": "fold"}))
SPAM_UNIT = "<tool_call><think>{\"name\": <tool_response><|im_start|>user\n"


def _args(port: int = 9) -> types.SimpleNamespace:
    return types.SimpleNamespace(hf_checkpoint=TOKENIZER_DIR, sglang_router_ip="127.0.0.1", sglang_router_port=port,
                                 rollout_max_response_len=4096)


def _zero_latency_post(standin: SGLangStandIn, memo: dict, script):
    """The rollout's `_post` with the network replaced, nothing else: the stand-in's reply to each
    request, computed once (untimed first pass) and then served from `memo`."""
    async def post(url: str, payload: dict) -> dict:
        key = tuple(payload["input_ids"])
        reply = memo.get(key)
        if reply is None:
            ids = payload["input_ids"]
            request = Request(payload, ids, standin.tokenizer.decode(ids, skip_special_tokens=False))
            reply = memo[key] = standin.reply(request, script(request))
        return reply

    return post


async def _episodes(rows: list[dict], tool_turns: int, standin: SGLangStandIn, memo: dict) -> float:
    """Run one episode per row with `tool_turns` get_game_state turns; returns seconds spent
    (replies come from `memo`, filled on a first untimed pass)."""
    rollout._post = _zero_latency_post(standin, memo, turns_script([STATE] * tool_turns + [FOLD]))
    args = _args()
    start = time.perf_counter()
    for row in rows:
        sample = await rollout.generate(args, Sample(prompt=row["instruction"]), {"max_new_tokens": 4096})
        _check(sample)
    return time.perf_counter() - start


def _check(sample: Sample) -> None:
    """The script breaks (exit 1) when an episode does not end as scripted."""
    if sample.metadata["holdem"]["end"] != "action" or not (
        len(sample.loss_mask) == len(sample.rollout_log_probs) == sample.response_length
    ):
        raise SystemExit(f"error: an episode did not end with its action: {sample.metadata}")


async def _spam_episode(row: dict, spam: str, standin: SGLangStandIn, memo: dict) -> float:
    """Seconds for one episode whose first turn is `spam` (replies precomputed in `memo`)."""
    rollout._post = _zero_latency_post(standin, memo, turns_script([Completion(spam), FOLD]))
    start = time.perf_counter()
    sample = await rollout.generate(_args(), Sample(prompt=row["instruction"]), {"max_new_tokens": 1 << 20})
    elapsed = time.perf_counter() - start
    _check(sample)
    return elapsed


async def _http_round_trip(standin: SGLangStandIn, payload: dict, n: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        url = standin.url + "/generate"
        async with session.post(url, json=payload) as response:
            await response.json()
        start = time.perf_counter()
        for _ in range(n):
            async with session.post(url, json=payload) as response:
                await response.json()
        return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--tool-turns", type=int, default=3)
    parser.add_argument("--spam-chars", type=int, default=45_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI: fails only if the script breaks")
    args = parser.parse_args()
    repeat, n_http = 3, 300
    if args.quick:
        args.episodes, args.tool_turns, repeat, n_http = min(args.episodes, 10), 1, 1, 10
    tokenizer = load_tokenizer(TOKENIZER_DIR)
    rows = list(generate_rows(args.episodes, seed=5))
    standin = SGLangStandIn(tokenizer, turns_script([STATE, FOLD]))
    memo: dict = {}  # replies per request, one memo per script
    original_post = rollout._post

    memo_tools: dict = {}

    async def timed() -> tuple[float, float]:
        await _episodes(rows, 0, standin, memo)  # warm-up: fill replies, prompt cache, tokenizer
        await _episodes(rows, args.tool_turns, standin, memo_tools)
        direct = min([await _episodes(rows, 0, standin, memo) for _ in range(repeat)])
        with_tools = min([await _episodes(rows, args.tool_turns, standin, memo_tools) for _ in range(repeat)])
        return direct, with_tools

    async def spam_timed(spam: str) -> float:
        memo_spam: dict = {}
        await _spam_episode(rows[0], spam, standin, memo_spam)  # warm-up: fill the replies
        return min([await _spam_episode(rows[0], spam, standin, memo_spam) for _ in range(repeat)])

    direct, with_tools = asyncio.run(timed())
    spam = (SPAM_UNIT * (args.spam_chars // len(SPAM_UNIT) + 1))[: args.spam_chars]
    spam_episode = asyncio.run(spam_timed(spam))
    spam_json = json.dumps(spam)
    start = time.perf_counter()
    for _ in range(n_http):
        json.loads(spam_json)
    spam_baseline = (time.perf_counter() - start) / n_http
    rollout._post = original_post
    per_episode = direct / len(rows)
    per_tool_turn = (with_tools - direct) / (len(rows) * args.tool_turns)

    sample = Sample(prompt=rows[0]["instruction"])
    with SGLangStandIn(tokenizer, turns_script([STATE, FOLD])) as server:
        first = asyncio.run(_first_request(server, sample))
        http = asyncio.run(_http_round_trip(server, first, n_http))
    state_json = render_game_state(make_context(rows[0]["instruction"]).state)
    chat = chat_format(tokenizer, False)
    start = time.perf_counter()
    for _ in range(n_http):
        tokenizer(chat.tool_turn([state_json])[1], add_special_tokens=False)
    encode = (time.perf_counter() - start) / n_http
    start = time.perf_counter()
    for row in rows[:100]:
        _cached_prompt_ids.__wrapped__(chat, row["instruction"])
    prompt_build = (time.perf_counter() - start) / len(rows[:100])

    print(f"episodes: {len(rows)} x {args.tool_turns} get_game_state turns + make_action (zero-latency replies)")
    print(f"rollout own time per tool turn : {per_tool_turn * 1e3:8.3f} ms  (target < 1 ms)")
    print(f"rollout own time per episode answering at once (prompt ids cached, as for a GRPO group): {per_episode * 1e3:.3f} ms")
    print(f"building one new prompt (chat template + encode): {prompt_build * 1e3:.3f} ms")
    print(f"baseline: one HTTP /generate round trip to the stand-in on 127.0.0.1: {http * 1e3:.3f} ms")
    print(f"baseline: tokenizer(...) of one tool-response turn: {encode * 1e3:.3f} ms")
    print(f"ratio tool turn / HTTP round trip: {per_tool_turn / http:.2f}")
    print(f"episode with a {len(spam):,}-char spam turn of unclosed openers: {spam_episode * 1e3:.3f} ms; "
          f"json.loads of the same bytes: {spam_baseline * 1e3:.3f} ms")
    print(f"ratio spam episode / json.loads: {spam_episode / spam_baseline:.1f}")


async def _first_request(server: SGLangStandIn, sample: Sample) -> dict:
    try:
        await rollout.generate(_args(server.port), sample, {"max_new_tokens": 4096})
    finally:
        await rollout.close_sessions()
    return server.requests[0]


if __name__ == "__main__":
    main()

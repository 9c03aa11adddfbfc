"""slime's custom generate: one PokerBench spot as a short tool-using episode.

`generate(args, sample, sampling_params)` builds the chat with the tokenizer's own template,
then loops: POST the token ids to the router's /generate, append the sampled tokens (loss mask
1, the server's log-probs), run the tool calls of the turn, append the tool-response turn
(mask 0, log-prob 0.0), until make_action, the turn limit or the token budget. Works with
slime's Sample and with any object that has its fields (statuses come from the sample's own
class, so slime is never imported here).

Model output never makes it raise: whatever the model writes (unclosed tags, spam, absurd
JSON), the episode ends with a status and `end` reason, in time linear in what was written
(holdem/toolcall.py), with tokens, loss_mask and rollout_log_probs of agreeing lengths.
Only a server outside the /generate protocol or an inconsistent partial sample handed in by
the caller is a RolloutError.

Configuration (args attribute, else environment variable, else default):
  holdem_enable_thinking / HOLDEM_ENABLE_THINKING  Qwen3 thinking on or off (default off)
  holdem_max_turns       / HOLDEM_MAX_TURNS        assistant turns per episode (default 6)
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

import aiohttp

from holdem.chat import ASSISTANT_HEADER, ChatFormat, chat_format, load_tokenizer
from holdem.toolcall import parse_tool_calls
from holdem.tools import SLOW_TOOLS, TOOL_NAMES, ToolContext, execute_tool, make_context

HTTP_ATTEMPTS = 5
HTTP_TIMEOUT_S = 600.0  # one turn of a long generation on a busy engine
UNKNOWN_TOOL = "unknown"  # metadata key counting calls of tools that do not exist (model-chosen
# names never become keys: they end up as metric names)
_MAX_TOKEN_ID = 2**32  # token ids the tokenizer backend accepts


class RolloutError(RuntimeError):
    """The generation server failed or answered outside the /generate protocol; `status` is the
    HTTP status of the reply that failed, when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RolloutConfig:
    enable_thinking: bool = False
    max_turns: int = 6

    @classmethod
    def from_args(cls, args: Any) -> RolloutConfig:
        thinking = _setting(args, "holdem_enable_thinking", "HOLDEM_ENABLE_THINKING", "0")
        turns = _setting(args, "holdem_max_turns", "HOLDEM_MAX_TURNS", "6")
        if str(thinking).lower() not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"HOLDEM_ENABLE_THINKING / args.holdem_enable_thinking: expected a boolean, got {thinking!r}")
        try:
            max_turns = int(turns)
        except (TypeError, ValueError):
            max_turns = 0
        if max_turns < 1:
            raise ValueError(f"HOLDEM_MAX_TURNS / args.holdem_max_turns: expected an integer >= 1, got {turns!r}")
        return cls(str(thinking).lower() in ("1", "true", "yes", "on"), max_turns)


def _setting(args: Any, attr: str, env: str, default: str) -> Any:
    value = getattr(args, attr, None)
    return value if value is not None else os.environ.get(env, default)


@dataclass
class _Episode:
    """Per-call state of one sample's episode."""

    sample: Any
    chat: ChatFormat
    ctx: ToolContext
    budget: int  # the whole response budget (max_new_tokens), tool tokens included
    turns: int
    turn_text: str  # what the model has written in the current turn so far
    tool_counts: dict[str, int]


async def generate(args: Any, sample: Any, sampling_params: dict, evaluation: bool = False) -> Any:
    """Play `sample` (prompt = a PokerBench instruction) and write tokens, response,
    response_length, loss_mask, rollout_log_probs, status and metadata["holdem"] back."""
    config = RolloutConfig.from_args(args)
    chat = chat_format(load_tokenizer(args.hf_checkpoint), config.enable_thinking)
    instruction = _instruction(sample.prompt)
    budget = int(sampling_params.get("max_new_tokens") or args.rollout_max_response_len)
    episode = _start(sample, chat, instruction, budget)
    url = f"http://{args.sglang_router_ip}:{args.sglang_router_port}/generate"
    end = await _play(episode, url, sampling_params, config)
    meta = sample.metadata if isinstance(sample.metadata, dict) else {}
    meta["holdem"] = {"turns": episode.turns, "end": end, "tools": episode.tool_counts}
    sample.metadata = meta
    return sample


def _instruction(prompt: Any) -> str:
    if isinstance(prompt, list):  # chat-message prompts: the instruction is the user turn
        for message in reversed(prompt):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else ""
        return ""
    return prompt if isinstance(prompt, str) else ("" if prompt is None else str(prompt))


def _start(sample: Any, chat: ChatFormat, instruction: str, budget: int) -> _Episode:
    """A fresh episode, or the continuation of a partial rollout (sample.tokens kept)."""
    if not sample.tokens:
        sample.tokens = chat.prompt_ids(instruction)
        sample.response, sample.response_length = "", 0
    if sample.response_length is None:
        sample.response_length = 0
    if sample.response is None:
        sample.response = ""
    length = sample.response_length
    if sample.loss_mask is None:
        sample.loss_mask = [1] * length
    if sample.rollout_log_probs is None:
        sample.rollout_log_probs = [0.0] * length
    if not (len(sample.loss_mask) == len(sample.rollout_log_probs) == length <= len(sample.tokens)):
        raise RolloutError(
            f"sample {sample.index}: inconsistent partial rollout: response_length {length}, "
            f"loss_mask {len(sample.loss_mask)}, rollout_log_probs {len(sample.rollout_log_probs)}, "
            f"tokens {len(sample.tokens)}"
        )
    response = sample.response
    header = response.rfind(ASSISTANT_HEADER)
    turn_text = response if header < 0 else response[header:]
    old = sample.metadata.get("holdem") if isinstance(sample.metadata, dict) else None
    old_counts = old.get("tools") if isinstance(old, dict) else None
    counts = dict(old_counts) if isinstance(old_counts, dict) else {}
    return _Episode(sample, chat, make_context(instruction), budget, 1 + response.count(ASSISTANT_HEADER), turn_text, counts)


async def _play(ep: _Episode, url: str, sampling_params: dict, config: RolloutConfig) -> str:
    """The turn loop. Returns why the episode ended (also reflected in sample.status)."""
    sample, chat = ep.sample, ep.chat
    status = type(sample).Status
    # A partial rollout can stop right after the model closed its turn: handle that turn first.
    # (Tool turns we append never end with <|im_end|>, so that token last means the model's.)
    turn_closed = sample.response_length > 0 and sample.tokens[-1] == chat.turn_end_id
    while True:
        if not turn_closed:
            remaining = ep.budget - sample.response_length
            if remaining <= 0:
                sample.status = status.TRUNCATED
                return "budget"
            reply = await _post(url, _payload(sample.tokens, sampling_params, remaining, chat))
            ids, logprobs, finish = _read_reply(reply)
            if len(ids) > remaining:  # never past the budget, whatever the server sent
                ids, logprobs, finish = ids[:remaining], logprobs[:remaining], "length"
            text = chat.decode(ids)
            _append(sample, ids, logprobs, 1, text)
            ep.turn_text += text
            if finish == "abort":
                sample.status = status.ABORTED
                return "abort"
            if finish == "length":
                sample.status = status.TRUNCATED
                return "length"
            if not ids or ids[-1] != chat.turn_end_id:
                sample.status = status.COMPLETED
                return "eos"  # ended without closing the turn (EOS or a caller's stop string)
        turn_closed = False
        results, acted = await _run_tools(ep)
        if acted:
            sample.status = status.COMPLETED
            return "action"
        if not results:
            sample.status = status.COMPLETED
            return "no_tool_call"
        if ep.turns >= config.max_turns:
            sample.status = status.COMPLETED
            return "turn_limit"
        ids, text = chat.tool_turn(results)
        if sample.response_length + len(ids) >= ep.budget:
            sample.status = status.TRUNCATED  # no room left for the model to answer
            return "budget"
        _append(sample, ids, [0.0] * len(ids), 0, text)
        ep.turns += 1
        ep.turn_text = ""


async def _run_tools(ep: _Episode) -> tuple[list[str], bool]:
    """Execute the turn's calls in order until a make_action is accepted. Returns the tool
    results for the model and whether the episode ended."""
    parsed = parse_tool_calls(ep.turn_text)
    results = list(_error_json(message) for message in parsed.errors)
    for call in parsed.calls:
        key = call.name if call.name in TOOL_NAMES else UNKNOWN_TOOL
        ep.tool_counts[key] = ep.tool_counts.get(key, 0) + 1
        if call.name in SLOW_TOOLS:
            result = await asyncio.to_thread(execute_tool, call, ep.ctx)  # keep the event loop free
        else:
            result = execute_tool(call, ep.ctx)
        if result.ends_episode:
            return results, True
        results.append(_encodable(result.text))
    return results, False


def _error_json(message: str) -> str:
    return json.dumps({"error": message})


def _encodable(text: str) -> str:
    """`text` as the tokenizer accepts it: a lone surrogate (from a JSON escape such as
    "\\ud800" in the model's call, echoed back) becomes its escape."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _append(sample: Any, ids: list[int], logprobs: list[float], mask: int, text: str) -> None:
    if not isinstance(sample.tokens, list):
        sample.tokens = list(sample.tokens)
    if not isinstance(sample.loss_mask, list):
        sample.loss_mask = list(sample.loss_mask)
    if not isinstance(sample.rollout_log_probs, list):
        sample.rollout_log_probs = list(sample.rollout_log_probs)
    sample.tokens.extend(ids)
    sample.loss_mask.extend([mask] * len(ids))
    sample.rollout_log_probs.extend(logprobs)
    sample.response_length += len(ids)
    sample.response += text


def _payload(tokens: list[int], sampling_params: dict, remaining: int, chat: ChatFormat) -> dict:
    params = dict(sampling_params)
    params["max_new_tokens"] = remaining
    stops = list(params.get("stop_token_ids") or [])
    params["stop_token_ids"] = stops + [t for t in chat.stop_token_ids if t not in stops]
    return {"input_ids": tokens, "sampling_params": params, "return_logprob": True}


def _read_reply(reply: Any) -> tuple[list[int], list[float], str]:
    try:
        meta = reply["meta_info"]
        pairs = meta.get("output_token_logprobs") or []
        ids = [int(pair[1]) for pair in pairs]
        logprobs = [float(pair[0]) for pair in pairs]
        finish = meta["finish_reason"]["type"] if meta.get("finish_reason") else "stop"
        if ids and not (0 <= min(ids) and max(ids) < _MAX_TOKEN_ID):
            raise ValueError(f"token id out of range: {min(ids)} .. {max(ids)}")
    except (KeyError, TypeError, IndexError, ValueError, AttributeError, OverflowError) as exc:
        raise RolloutError(f"/generate reply is not in the SGLang format ({exc!r}): {str(reply)[:200]}") from None
    return ids, logprobs, finish


# ---- HTTP: one aiohttp session per event loop ----

_sessions: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession]] = {}


def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    entry = _sessions.get(id(loop))
    if entry is None or entry[0] is not loop or entry[1].closed:
        connector = aiohttp.TCPConnector(limit=0)  # concurrency is bounded by slime's semaphore
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        _sessions[id(loop)] = (loop, session)
        return session
    return entry[1]


async def close_sessions() -> None:
    """Close this loop's HTTP session (tests and benchmarks call it before their loop ends)."""
    entry = _sessions.pop(id(asyncio.get_running_loop()), None)
    if entry is not None:
        await entry[1].close()


async def _post(url: str, payload: dict) -> dict:
    last: BaseException | None = None
    for attempt in range(HTTP_ATTEMPTS):
        try:
            async with _session().post(url, json=payload) as response:
                if response.status >= 500:
                    raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
                if response.status != 200:
                    body = await response.text()
                    raise RolloutError(f"POST {url}: HTTP {response.status}: {body[:200]}", status=response.status)
                return await response.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            last = exc
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))  # back-off between retries, not a sync wait
    raise RolloutError(f"POST {url} failed {HTTP_ATTEMPTS} times; last error: {last!r}")

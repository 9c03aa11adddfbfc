"""One evaluation episode per PokerBench row, in either mode, turned into a scored prediction.

`plain`: the paper's prompt (the instruction as the only user turn, thinking off, through the
served model's own chat template); the reply text is the answer. `tools`: the rollout's own
tool-calling episode (`holdem.eval.tools`); the answer is the action passed to `make_action`.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from holdem.eval.client import RequestFailed, RetryPolicy, post_json
from holdem.eval.score import action_match, exact_match, paper_score, parse_action, render_action, strict_score
from holdem.table import Action
from holdem.toolcall import render_tool_call


class EvalInputError(Exception):
    """Bad evaluation input or settings (exit 2)."""


@dataclass(frozen=True)
class EvalRow:
    index: int
    where: str
    instruction: str
    label: str
    street: str


@dataclass(frozen=True)
class EvalSettings:
    server: str
    mode: str = "plain"
    prompt_format: str = "chat"
    max_new_tokens: int = 32
    temperature: float = 0.0
    amount_tol: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    tokenizer: str | None = None
    connect_deadline_s: float = 30.0


@dataclass(frozen=True)
class Answer:
    """What one episode produced: its text, the action it states, and how it ended.
    `reward_response` is the text the reward scores when it differs from `text`."""

    text: str
    action: Action | None
    finish_reason: str
    error: str | None = None
    reward_response: str | None = None
    episode: dict | None = None  # tools mode: turns and tool counts


Scorer = Callable[[str, str, str], float | None]
Episode = Callable[[aiohttp.ClientSession, EvalRow], Awaitable[Answer]]


def load_eval_tokenizer(path: str | None) -> Any:
    """The served model's tokenizer (both modes send token ids, as the rollout does)."""
    if not path:
        raise EvalInputError("no tokenizer: pass --tokenizer DIR (the served checkpoint's tokenizer) or set HF_CHECKPOINT")
    from holdem.chat import load_tokenizer

    try:
        return load_tokenizer(path)
    except Exception as exc:  # transformers raises OSError, ValueError, ... for a bad directory
        raise EvalInputError(f"--tokenizer {path}: cannot load a tokenizer ({type(exc).__name__}: {exc})") from exc


def plain_prompt_ids(tokenizer: Any, instruction: str, prompt_format: str) -> list[int]:
    """The paper's prompt: the instruction as the only user turn (thinking off), or bare."""
    if prompt_format == "chat":
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True,
            enable_thinking=False,
        )
    else:
        text = instruction
    return list(tokenizer.encode(text, add_special_tokens=False))


def make_plain_episode(cfg: EvalSettings, tokenizer: Any) -> Episode:
    url = f"{cfg.server}/generate"

    async def episode(session: aiohttp.ClientSession, row: EvalRow) -> Answer:
        payload = {
            "input_ids": plain_prompt_ids(tokenizer, row.instruction, cfg.prompt_format),
            "sampling_params": {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature},
            "return_logprob": True,
        }
        # Server failures (RequestFailed, ServerUnreachable) propagate: they stop the evaluation.
        text, reason = read_plain_reply(url, await post_json(session, url, payload, cfg.retry))
        action = parse_action(text)
        # The reward scores tool calls: hand it the stated action as a make_action call.
        return Answer(text, action, reason, reward_response=make_action_text(action) if action else None)

    return episode


def read_plain_reply(url: str, reply: dict) -> tuple[str, str]:
    """(text, finish reason) of a /generate reply; RequestFailed when it is not SGLang's shape (a
    server fault: the model's text, whatever it is, always comes as a string)."""
    text = reply.get("text")
    if not isinstance(text, str):
        raise RequestFailed(f"{url}: reply has no 'text' string (keys: {', '.join(map(str, reply))[:120] or 'none'}). "
                            "Check that --server points at an SGLang router or server", status=200)
    meta = reply.get("meta_info", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise RequestFailed(f"{url}: reply's 'meta_info' is a JSON {type(meta).__name__}, not an object", status=200)
    finish = meta.get("finish_reason")
    if finish is None:
        return text, "stop"
    if isinstance(finish, dict) and isinstance(finish.get("type", "stop"), str):
        return text, finish.get("type", "stop")
    if isinstance(finish, str):
        return text, finish
    raise RequestFailed(f"{url}: reply's 'meta_info.finish_reason' is {str(finish)[:80]!r}, "
                        "not an object with a 'type' string", status=200)


def make_action_text(action: Action) -> str:
    args: dict = {"action": action.kind} if action.amount is None else {"action": action.kind, "amount": action.amount}
    return render_tool_call("make_action", args)


def score_prediction(row: EvalRow, answer: Answer, cfg: EvalSettings, reward: Scorer | None) -> dict:
    """One results.jsonl record. A protocol error is a reply that states no single grammatical
    action (plain) or an episode that ended without an accepted `make_action` (tools)."""
    scored_text = answer.text if cfg.mode == "plain" else (render_action(answer.action) if answer.action else "")
    paper = paper_score(row.label, scored_text) if scored_text else 0.0
    reward_value = None
    if reward is not None:
        reward_value = reward(row.instruction, row.label, answer.reward_response or answer.text)
    return {
        "index": row.index,
        "where": row.where,
        "street": row.street,
        "label": row.label,
        "response": answer.text,
        "predicted": render_action(answer.action) if answer.action else None,
        "paper_score": paper,
        "exact_match": exact_match(paper),
        "action_match": action_match(paper),
        "strict": strict_score(row.label, answer.action, cfg.amount_tol),
        "protocol_error": int(answer.action is None),
        "reward": reward_value,
        "finish_reason": answer.finish_reason,
        "error": answer.error,
        **({"episode": answer.episode} if answer.episode is not None else {}),
    }

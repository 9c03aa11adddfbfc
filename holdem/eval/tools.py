"""`python -m holdem.eval --mode tools`: the rollout's own tool-calling episode, run once per row.

The episode is `holdem.rollout.generate` itself, called with a minimal args namespace and a
Sample-like object, so evaluation sees exactly what training samples see. The answer is the
first well-formed `make_action` of the response (the call that ended the episode).
"""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import Enum
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp

from holdem.eval.client import (
    RequestFailed,
    ServerUnreachable,
    describe_error,
    is_fatal_status,
    refused_hint,
)
from holdem.eval.run import Answer, EvalInputError, EvalRow, EvalSettings, Episode
from holdem.table import Action
from holdem.toolcall import action_from_arguments, parse_tool_calls


@dataclass
class EvalSample:
    """The fields of slime's Sample (slime/utils/types.py) that the rollout reads and writes."""

    class Status(Enum):
        PENDING = "pending"
        COMPLETED = "completed"
        TRUNCATED = "truncated"
        ABORTED = "aborted"
        FAILED = "failed"

    index: int | None = None
    prompt: str = ""
    label: str | None = None
    tokens: list[int] = field(default_factory=list)
    response: str = ""
    response_length: int = 0
    loss_mask: list[int] | None = None
    rollout_log_probs: list[float] | None = None
    status: Status = Status.PENDING
    metadata: dict = field(default_factory=dict)


def rollout_args(cfg: EvalSettings) -> SimpleNamespace:
    """The slime args the rollout reads, from the evaluation settings."""
    url = urlsplit(cfg.server)
    if url.scheme != "http" or url.path not in ("", "/") or not url.hostname:
        raise EvalInputError(
            f"--server {cfg.server}: tools mode needs http://HOST:PORT (the rollout posts to "
            "http://HOST:PORT/generate, as slime's router address)"
        )
    if not cfg.tokenizer:
        raise EvalInputError("tools mode needs --tokenizer DIR (or HF_CHECKPOINT): the rollout encodes the chat with it")
    args = SimpleNamespace(
        sglang_router_ip=url.hostname,
        sglang_router_port=url.port or 80,
        hf_checkpoint=cfg.tokenizer,
        rollout_max_response_len=cfg.max_new_tokens,
    )
    from holdem.rollout import RolloutConfig

    try:
        RolloutConfig.from_args(args)  # HOLDEM_* settings: a usage error now, not a failed episode later
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None
    return args


def final_action(response: str) -> Action | None:
    """The first well-formed make_action of a response, as the episode accepted it."""
    for call in parse_tool_calls(response).calls:
        if call.name != "make_action":
            continue
        try:
            return action_from_arguments(call.arguments)
        except ValueError:
            continue
    return None


def rollout_status(exc: Exception) -> int | None:
    """The HTTP status behind a rollout failure, when the server answered with one."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def make_tools_episode(cfg: EvalSettings) -> Episode:
    from holdem.rollout import RolloutError, generate

    args = rollout_args(cfg)
    params = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature}

    async def episode(session: aiohttp.ClientSession, row: EvalRow) -> Answer:
        end = time.monotonic() + cfg.retry.deadline_s
        backoff = cfg.retry.first_backoff_s
        while True:
            sample = EvalSample(index=row.index, prompt=row.instruction, label=row.label)
            try:
                await run_with_deadline(generate(args, sample, dict(params), evaluation=True), sample,
                                        cfg, row)
                break
            except RolloutError as exc:
                # The rollout raises at once for a non-5xx error reply (that status is kept) and,
                # after its own retries, for connection errors, 5xx and replies outside the
                # SGLang format (no status): only the latter are worth another episode.
                status = rollout_status(exc)
                if is_fatal_status(status):
                    raise RequestFailed(f"{cfg.server}/generate: {exc}. {refused_hint(status)}", status=status) from exc
                if time.monotonic() + backoff > end:
                    raise ServerUnreachable(
                        f"{cfg.server}: the episode for row {row.where} failed for {cfg.retry.deadline_s:g} s "
                        f"({exc}). Check the server's health and logs"
                    ) from exc
            except (ValueError, RecursionError) as exc:  # a 200 reply whose body is not JSON
                raise RequestFailed(f"{cfg.server}/generate: the reply is not JSON ({describe_error(exc)}). "
                                    "Check that --server points at an SGLang router or server") from exc
            # A fresh episode after a pause: the server may be restarting.
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, cfg.retry.max_backoff_s)
        info = sample.metadata.get("holdem", {}) if isinstance(sample.metadata, dict) else {}
        ended = str(info.get("end", sample.status.value))
        action = final_action(sample.response) if ended == "action" else None
        return Answer(sample.response, action, ended, episode={"turns": info.get("turns"), "tools": info.get("tools")})

    return episode


async def run_with_deadline(episode: Awaitable[object], sample: EvalSample, cfg: EvalSettings, row: EvalRow) -> None:
    """Run one rollout episode; ServerUnreachable when the server sends nothing for
    `--request-deadline` seconds (every reply grows the response, so a working server that is
    merely slow over many turns is never cut off). The rollout's own HTTP timeout is far longer."""
    task = asyncio.ensure_future(episode)
    seen = sample.response_length
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=cfg.retry.deadline_s)
            if done:
                task.result()
                return
            if sample.response_length == seen:
                raise ServerUnreachable(
                    f"{cfg.server}/generate: no successful reply within {cfg.retry.deadline_s:g} s (--request-deadline) "
                    f"during the episode for row {row.where}, after {sample.response_length} response tokens. "
                    "Check the server's health and logs"
                )
            seen = sample.response_length
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def close_rollout_sessions() -> None:
    from holdem.rollout import close_sessions

    await close_sessions()


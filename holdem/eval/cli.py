"""`python -m holdem.eval`: measure a served policy on PokerBench rows.

Sends every row to `--server` (an SGLang router or anything speaking its `/generate` protocol),
either as the paper's plain prompt or as the rollout's tool-calling episode, and reports the
paper's exact-match and action accuracy (the authors' lenient scorer), a strict accuracy, the
protocol-error rate and the mean reward, overall and by street. Every prediction is written to
`--out` (atomically), the summary to `OUT.summary.json` beside it.

Exit codes: 0 ok, 2 bad input or usage (one `error:` line), 3 the server does not answer.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from holdem.data.output import write_text_atomic
from holdem.data.source import DataInputError, iter_rows, resolve_source
from holdem.data.validate import BadRow, check_row
from holdem.eval.client import RetryPolicy, ServerUnreachable, probe_server
from holdem.eval.report import render_table, summarize
from holdem.eval.run import (
    EvalInputError,
    EvalRow,
    EvalSettings,
    Episode,
    Scorer,
    load_eval_tokenizer,
    make_plain_episode,
    score_prediction,
)
from holdem.eval.tools import close_rollout_sessions, make_tools_episode, rollout_args


UsageError = EvalInputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m holdem.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", required=True, help="base URL, e.g. http://127.0.0.1:30000")
    p.add_argument("--data", required=True, help="PokerBench rows: JSON/JSONL/Parquet file or directory")
    p.add_argument("--split", default="test", help="split when --data is a directory or hub name")
    p.add_argument("--mode", choices=("tools", "plain"), default="plain")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N rows")
    p.add_argument("--out", required=True, type=Path, help="results.jsonl (one scored prediction per row)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="response budget (default 32 plain, 1024 tools)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--prompt-format", choices=("chat", "raw"), default="chat",
                   help="plain mode: Qwen3 user turn with thinking off (chat) or the bare instruction (raw)")
    p.add_argument("--amount-tol", type=float, default=0.5, help="strict accuracy: chips of slack on amounts")
    p.add_argument("--tokenizer", default=None, help="tools mode: tokenizer dir (default $HF_CHECKPOINT)")
    p.add_argument("--connect-deadline", type=float, default=30.0,
                   help="seconds to wait for the server to answer at start")
    p.add_argument("--request-deadline", type=float, default=120.0,
                   help="seconds of retries per request before the server counts as down")
    p.add_argument("--no-reward", action="store_true", help="skip the reward (holdem.reward) column")
    return p


def check_args(ns: argparse.Namespace) -> None:
    if not ns.server.startswith(("http://", "https://")):
        raise UsageError(f"--server {ns.server}: expected an http:// or https:// URL such as http://127.0.0.1:30000")
    if ns.concurrency < 1:
        raise UsageError(f"--concurrency {ns.concurrency}: must be at least 1")
    if ns.limit is not None and ns.limit < 1:
        raise UsageError(f"--limit {ns.limit}: must be at least 1")
    if not ns.out.parent.is_dir():
        raise UsageError(f"--out {ns.out}: directory {ns.out.parent} does not exist. Create it first")


def load_eval_rows(data: str, split: str, limit: int | None) -> list[EvalRow]:
    """Read and validate the rows to evaluate (instructions are parsed by the tools, not here)."""
    rows: list[EvalRow] = []
    for where, obj in iter_rows(resolve_source(data, split)):
        checked = check_row(obj, None)
        if isinstance(checked, BadRow):
            raise UsageError(f"{where}: {checked.detail}. Evaluation needs PokerBench rows with a valid label")
        rows.append(EvalRow(len(rows), where, checked.instruction, checked.output, checked.street))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise UsageError(f"--data {data}: the input holds no rows")
    return rows


def load_reward() -> Scorer | None:
    try:
        from holdem.reward import score_response
    except ImportError:
        return None

    def reward(prompt: str, label: str, response: str) -> float | None:
        value = score_response(prompt, label, response)
        return float(value["score"]) if isinstance(value, dict) else float(value)

    return reward


async def evaluate(rows: list[EvalRow], cfg: EvalSettings, concurrency: int, reward: Scorer | None) -> list[dict]:
    """Probe the server, run every row's episode (at most `concurrency` at once), score them."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await probe_server(session, cfg.server, cfg.connect_deadline_s)
        episode = make_episode(cfg)
        gate = asyncio.Semaphore(concurrency)

        async def one(row: EvalRow) -> dict:
            async with gate:
                answer = await episode(session, row)
            return score_prediction(row, answer, cfg, reward)

        tasks = [asyncio.ensure_future(one(row)) for row in rows]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            # A dead server stops everything: cancel the rest rather than retry each of them.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if cfg.mode == "tools":
                await close_rollout_sessions()


def make_episode(cfg: EvalSettings) -> Episode:
    tokenizer = load_eval_tokenizer(cfg.tokenizer)
    if cfg.mode == "plain":
        return make_plain_episode(cfg, tokenizer)
    return make_tools_episode(cfg)


def write_results(out: Path, predictions: list[dict], summary: dict, meta: dict) -> Path:
    lines = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    write_text_atomic(out, lines)
    summary_path = out.with_name(out.stem + ".summary.json")
    write_text_atomic(summary_path, json.dumps({**meta, **summary}, indent=2) + "\n")
    return summary_path


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        check_args(ns)
        rows = load_eval_rows(ns.data, ns.split, ns.limit)
        cfg = EvalSettings(
            server=ns.server.rstrip("/"),
            mode=ns.mode,
            prompt_format=ns.prompt_format,
            max_new_tokens=ns.max_new_tokens or (32 if ns.mode == "plain" else 1024),
            temperature=ns.temperature,
            amount_tol=ns.amount_tol,
            retry=RetryPolicy(deadline_s=ns.request_deadline),
            tokenizer=ns.tokenizer or os.environ.get("HF_CHECKPOINT"),
            connect_deadline_s=ns.connect_deadline,
        )
        if cfg.mode == "tools":
            rollout_args(cfg)  # checks the URL and tokenizer before any request
        load_eval_tokenizer(cfg.tokenizer)
        reward = None if ns.no_reward else load_reward()
        predictions = asyncio.run(evaluate(rows, cfg, ns.concurrency, reward))
    except (UsageError, DataInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServerUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    summary = summarize(predictions)
    meta = {"server": cfg.server, "data": ns.data, "mode": ns.mode, "rows": len(rows)}
    summary_path = write_results(ns.out, predictions, summary, meta)
    print(render_table(summary))
    print(f"wrote {ns.out} and {summary_path.name}")
    return 0

"""`python -m holdem.eval`: measure a served policy on PokerBench rows.

Sends every row to `--server` (an SGLang router or anything speaking its `/generate` protocol),
either as the paper's plain prompt or as the rollout's tool-calling episode, and reports the
paper's exact-match and action accuracy (the authors' lenient scorer), a strict accuracy, the
protocol-error rate and the mean reward, overall and by street. Every prediction is written to
`--out` (atomically), the summary to `OUT.summary.json` beside it.

Exit codes: 0 ok; 2 bad input or usage (one `error:` line, nothing sent); 3 the server failed (no
answer within the deadlines, an HTTP error, a reply outside the /generate protocol: the server's
fault, never scored as the model's); 128+N stopped by signal N; 1 the results could not be written.
When a run stops early, the rows finished so far are written with `"complete": false` in the summary.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from holdem.data.output import write_text_atomic
from holdem.data.source import DataInputError, iter_rows, resolve_source
from holdem.data.validate import BadRow, check_row
from holdem.eval.client import RetryPolicy, ServerFailure, probe_server
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
    check_server_url(ns.server)
    if ns.concurrency < 1:
        raise UsageError(f"--concurrency {ns.concurrency}: must be at least 1")
    if ns.limit is not None and ns.limit < 1:
        raise UsageError(f"--limit {ns.limit}: must be at least 1")
    for flag in ("request_deadline", "connect_deadline"):
        value = getattr(ns, flag)
        if not (0 < value < float("inf")):
            raise UsageError(f"--{flag.replace('_', '-')} {value}: must be a positive number of seconds")
    check_output(ns.out)


def check_server_url(server: str) -> None:
    url = urlsplit(server)
    try:
        port_ok = url.port is None or url.port > 0
    except ValueError:
        port_ok = False
    if url.scheme not in ("http", "https") or not url.hostname or not port_ok:
        raise UsageError(f"--server {server}: expected an http:// or https:// URL such as http://127.0.0.1:30000")


def check_output(out: Path) -> None:
    """Refuse an --out that cannot be written before any request is sent."""
    if out.is_dir():
        raise UsageError(f"--out {out}: is a directory. Give a file name such as {out}/results.jsonl")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist. Create it first")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: directory {out.parent} is not writable. Pick another --out")


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


async def evaluate(rows: list[EvalRow], cfg: EvalSettings, concurrency: int, reward: Scorer | None,
                   done: dict[int, dict]) -> None:
    """Probe the server, run every row's episode (at most `concurrency` at once) and score it into
    `done` (row index -> prediction) as it finishes, so whatever stops the run keeps what is done."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await probe_server(session, cfg.server, cfg.connect_deadline_s)
        episode = make_episode(cfg)
        gate = asyncio.Semaphore(concurrency)

        async def one(row: EvalRow) -> None:
            async with gate:
                answer = await episode(session, row)
            done[row.index] = score_prediction(row, answer, cfg, reward)

        tasks = [asyncio.ensure_future(one(row)) for row in rows]
        try:
            await asyncio.gather(*tasks)
        finally:
            # A failed server stops everything: cancel the rest rather than retry each of them.
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
    summary_path = summary_path_for(out)
    write_text_atomic(summary_path, json.dumps({**meta, **summary}, indent=2) + "\n")
    return summary_path


def summary_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


_signals_received: list[int] = []


def _interrupt(signum: int, frame: object) -> None:
    # KeyboardInterrupt, not a custom exception: asyncio lets only it and SystemExit out of a
    # callback (anything else is logged and swallowed by the loop's exception handler).
    _signals_received.append(signum)
    raise KeyboardInterrupt


async def _until_signal(work):
    """Run `work`; SIGTERM/SIGINT cancel it through the event loop (never a KeyboardInterrupt
    raised inside one of aiohttp's callbacks, which would leave a task's exception unretrieved and
    print a traceback) and then end as KeyboardInterrupt for `main`'s one-line report."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()

    def on_signal(signum: int) -> None:
        _signals_received.append(signum)
        task.cancel()

    sigs = (signal.SIGTERM, signal.SIGINT)
    for sig in sigs:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await work
    except asyncio.CancelledError:
        if _signals_received:
            raise KeyboardInterrupt from None
        raise
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)
            signal.signal(sig, _interrupt)  # remove_signal_handler leaves the default behind


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    done: dict[int, dict] = {}
    meta: dict = {}
    try:
        return run(ns, done, meta)
    except KeyboardInterrupt:
        signum = _signals_received[-1] if _signals_received else signal.SIGINT
        why = f"interrupted by {signal.Signals(signum).name}"
        if not meta:
            print(f"error: {why} before any request; nothing written", file=sys.stderr)
            return 128 + signum
        return stop_early(ns.out, done, meta, why, 128 + signum)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(ns: argparse.Namespace, done: dict[int, dict], meta: dict) -> int:
    """The evaluation; fills `done` as rows finish and `meta` once requests may be sent."""
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
            rollout_args(cfg)  # checks the URL, the tokenizer and the rollout settings before any request
        load_eval_tokenizer(cfg.tokenizer)
    except (UsageError, DataInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reward = None if ns.no_reward else load_reward()
    meta.update(server=cfg.server, data=ns.data, mode=ns.mode, rows=len(rows))
    try:
        asyncio.run(_until_signal(evaluate(rows, cfg, ns.concurrency, reward, done)))
    except ServerFailure as exc:
        return stop_early(ns.out, done, meta, f"{exc}", 3)
    predictions = [done[i] for i in sorted(done)]
    summary = summarize(predictions)
    try:
        summary_path = write_results(ns.out, predictions, {"complete": True, **summary}, meta)
    except OSError as exc:
        print(f"error: --out {ns.out}: cannot write the results ({exc.strerror or exc}); nothing written", file=sys.stderr)
        return 1
    print(render_table(summary))
    print(f"wrote {ns.out} and {summary_path.name}")
    return 0


def stop_early(out: Path, done: dict[int, dict], meta: dict, why: str, code: int) -> int:
    """Write the rows finished so far (summary marked incomplete) and print one error line."""
    predictions = [done[i] for i in sorted(done)]
    if not predictions:
        print(f"error: {why}; no row was finished, nothing written", file=sys.stderr)
        return code
    summary = {"complete": False, "stopped": why, **summarize(predictions)}
    try:
        write_results(out, predictions, summary, meta)
    except OSError as exc:
        print(f"error: {why}; the {len(predictions)} finished row(s) could not be written to {out} "
              f"({exc.strerror or exc})", file=sys.stderr)
        return code
    print(f"error: {why}; wrote the {len(predictions)} of {meta['rows']} rows finished to {out} "
          f"({summary_path_for(out).name} says complete: false)", file=sys.stderr)
    return code

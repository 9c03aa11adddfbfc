"""The eval stage inside its allocation (`python -m cluster.launcher.evaluate`, one task): score the
newest complete checkpoint of the run against the model it started from.

1. the newest complete checkpoint of `--save` (the resume rule, cluster/outputs.py); when
   `<save>/eval.json` already scores it, say so and exit 0;
2. export it to HF with the `--export` command (`{checkpoint}` -> the iter dir, `{output}` -> a
   fresh dir renamed to `<save>/hf/<iter>/` once the command succeeded; an export already there
   is reused);
3. for the trained model, then the starting model (`--base-model`): start the `--server` command
   (`{model}`, `{host}` = 127.0.0.1, `{port}` derived from the job id like Ray's ports, the next
   free one on a clash; TMPDIR `<tmp-root>/holdem-eval-<job>-<restart>`), wait for `GET /health`
   under a deadline (failing at once if the server exits), run `python -m holdem.eval` against it,
   stop the server by PID (its own process group and tagged descendants, never by name);
4. write `<save>/eval.json` atomically: both models' scores (the paper's exact-match, strict,
   action accuracy, protocol errors, mean reward) and the deltas.

With `--base-scores DIR` (a sweep gives every point's eval the same dir, under the sweep's shared
chain dir) the starting model is scored once for all of them: its score is kept in
`DIR/base-<hash>.json`, keyed by the base model (path and its files' names, sizes, mtimes) and
every setting that changes the score (data, split, mode, limit, server command). An eval that
finds a matching file there takes the base score from it; one that does not scores the base model
and writes the file atomically (a temporary file renamed into place, so a reader sees the whole
file or none). Two evals missing it at the same time both score it, which only costs time.

Exit codes: 0 ok (or already scored), 1 a step failed, 2 bad arguments. Stdlib only: it runs
holdem.eval and the server as processes and never imports them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cluster.outputs import write_json_atomic
from cluster.launcher.procs import start_owned, stop_owned
from cluster.launcher.render import TAG_ENV
from cluster.outputs import check_hf_dir, newest_complete_checkpoint

EVAL_FILE = "eval.json"
METRICS = ("exact_match", "strict_accuracy", "action_accuracy", "protocol_error_rate", "mean_reward")
HOST = "127.0.0.1"  # the server is for this node's holdem.eval only: never reachable from elsewhere
PORT_STRIDE = 4  # SGLang opens a few ports next to --port
PORT_SLOTS = 1000
STOP_GRACE_S = 20.0


class EvalFailed(Exception):
    """A step of the eval stage failed; the message is one line for `error: `."""


def say(text: str) -> None:
    print(f"[eval {time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclass(frozen=True)
class Ident:
    job_id: int
    restart: int

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Ident:
        job = env.get("SLURM_JOB_ID") or ""
        return cls(int(job) if job.isdigit() else os.getpid(), int(env.get("SLURM_RESTART_COUNT") or 0))


def port_candidates(port_base: int, ident: Ident, slots: int = PORT_SLOTS) -> list[int]:
    """Ports to try, in order: `job id mod slots` keeps jobs started close together apart."""
    first = (ident.job_id + ident.restart) % slots
    return [port_base + PORT_STRIDE * ((first + i) % slots) for i in range(slots)
            if port_base + PORT_STRIDE * ((first + i) % slots) + PORT_STRIDE <= 65535]


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(port_base: int, ident: Ident) -> int:
    for port in port_candidates(port_base, ident):
        if all(port_is_free(p) for p in range(port, port + PORT_STRIDE)):
            return port
    raise EvalFailed(f"no free port block of {PORT_STRIDE} at or above --port-base {port_base} on {socket.gethostname()}")


def fill(command: str, **fields: str) -> list[str]:
    words = shlex.split(command)
    out = []
    for word in words:
        for key, value in fields.items():
            word = word.replace("{" + key + "}", value)
        out.append(word)
    return out


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text if line.strip())[-1500:]


# --- steps ---------------------------------------------------------------------------------------

def export_checkpoint(ckpt: Path, save: Path, command: str, env: dict[str, str], log_dir: Path) -> Path:
    """`<save>/hf/<iter>/`, exported now unless a complete one is there."""
    target = save / "hf" / ckpt.name
    done, _why = check_hf_dir(target)
    if done:
        say(f"export: {target} is complete already; reusing it")
        return target
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    argv = fill(command, checkpoint=str(ckpt), output=str(partial))
    log = log_dir / "export.log"
    say(f"export: {shlex.join(argv)} (log: {log})")
    t0 = time.monotonic()
    with open(log, "ab") as fh:
        code = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise EvalFailed(f"export of {ckpt} exited with code {code}; last lines of {log}: {log_tail(log)}")
    done, why = check_hf_dir(partial)
    if not done:
        shutil.rmtree(partial, ignore_errors=True)
        raise EvalFailed(f"export of {ckpt} finished but left no complete HF dir ({why}); log: {log}")
    shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier export
    os.replace(partial, target)
    say(f"export: {target} in {time.monotonic() - t0:.1f} s")
    return target


def wait_healthy(url: str, proc: subprocess.Popen, deadline_s: float, log: Path) -> float:
    """Seconds until `GET url/health` answered 200; EvalFailed if the server exits or the deadline passes."""
    t0 = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - t0 < deadline_s:
        if proc.poll() is not None:
            raise EvalFailed(f"the server exited with code {proc.returncode} before it was healthy; "
                             f"last lines of {log}: {log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2.0) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.25)  # polls the server's health endpoint, bounded by the deadline
    raise EvalFailed(f"the server was not healthy within {deadline_s:g} s ({url}/health: {last}); "
                     f"last lines of {log}: {log_tail(log)}")


@contextmanager
def served(model: str, which: str, args: argparse.Namespace, ident: Ident, env: dict[str, str],
           log_dir: Path) -> Iterator[str]:
    """The server for `model` on this node, healthy; stopped (by PID and tag) on the way out."""
    port = pick_port(args.port_base, ident)
    tmp = Path(args.tmp_root) / f"holdem-eval-{ident.job_id}-{ident.restart}-{which}"
    tmp.mkdir(parents=True, exist_ok=True)
    tag = f"holdem-eval-{ident.job_id}-{ident.restart}-{which}-{os.getpid()}"
    argv = fill(args.server, model=model, host=HOST, port=str(port))
    log = log_dir / f"server-{which}.log"
    url = f"http://{HOST}:{port}"
    say(f"server ({which}): {shlex.join(argv)} (log: {log})")
    proc = start_owned(argv, {**env, "TMPDIR": str(tmp), TAG_ENV: tag}, log)
    try:
        took = wait_healthy(url, proc, args.server_timeout_s, log)
        say(f"server ({which}) pid {proc.pid} healthy at {url} after {took:.1f} s")
        yield url
    finally:
        report = stop_owned(proc, tag, STOP_GRACE_S)
        say(f"server ({which}) pid {proc.pid} stopped in {report.seconds:.1f} s"
            + (f" ({report.killed} process(es) needed SIGKILL)" if report.killed else ""))
        shutil.rmtree(tmp, ignore_errors=True)


def score(url: str, model: str, which: str, args: argparse.Namespace, env: dict[str, str], out_dir: Path) -> dict:
    out = out_dir / f"{which}.jsonl"
    argv = [sys.executable, "-m", "holdem.eval", "--server", url, "--data", args.data, "--split", args.split,
            "--mode", args.mode, "--out", str(out), "--tokenizer", model]
    argv += ["--limit", str(args.limit)] if args.limit else []
    say(f"holdem.eval ({which}): {shlex.join(argv)}")
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise EvalFailed(f"holdem.eval on the {which} model exited with code {proc.returncode}: {last}")
    summary = json.loads(out.with_name(out.stem + ".summary.json").read_text())
    return {"model": model, "results": str(out), "rows": summary.get("rows"),
            **{m: summary["overall"].get(m) for m in METRICS}}


# --- the base model's score, shared by the points of a sweep -------------------------------------

def base_score_key(args: argparse.Namespace) -> dict:
    """What the base model's score depends on: the model (its path, and the names, sizes and mtimes
    of its files, so a model replaced at the same path is scored again) and the eval settings."""
    model = Path(args.base_model)
    try:
        files = sorted([p.name, st.st_size, st.st_mtime_ns] for p in model.iterdir() if p.is_file() and (st := p.stat()))
    except OSError:
        files = []
    return {"base_model": args.base_model, "model_files": files, "data": args.data, "split": args.split,
            "mode": args.mode, "limit": args.limit, "server": args.server}


def base_score_path(cache_dir: str | Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"base-{digest}.json"


def read_base_score(cache_dir: str | Path, key: dict) -> dict | None:
    """The base score another eval stored under this key, or None (no file, unreadable, another key,
    not a score): then this eval scores the base model itself."""
    try:
        data = json.loads(base_score_path(cache_dir, key).read_text())
    except (OSError, ValueError):
        return None
    base = data.get("base") if isinstance(data, dict) and data.get("key") == key else None
    return base if isinstance(base, dict) and all(m in base for m in METRICS) else None


def write_base_score(cache_dir: str | Path, key: dict, base: dict, job_id: str | None) -> Path:
    """Store the base score for the other evals (atomically: written aside, renamed into place)."""
    return write_json_atomic(base_score_path(cache_dir, key),
                             {"key": key, "base": base, "slurm_job_id": job_id, "written_at": time.time()})


def base_result(args: argparse.Namespace, ident: Ident, env: dict[str, str], log_dir: Path,
                out_dir: Path) -> tuple[dict, dict | None]:
    """(the base model's score, how it was shared or None): taken from `--base-scores` when a
    matching score is there, else scored here (and stored there for the next eval)."""
    if not args.base_scores:
        with served(args.base_model, "base", args, ident, env, log_dir) as url:
            return score(url, args.base_model, "base", args, env, out_dir), None
    key = base_score_key(args)
    path = base_score_path(args.base_scores, key)
    cached = read_base_score(args.base_scores, key)
    if cached is not None:
        say(f"base model: reusing its score from {path} (same model and eval settings)")
        return cached, {"file": str(path), "reused": True}
    with served(args.base_model, "base", args, ident, env, log_dir) as url:
        result = score(url, args.base_model, "base", args, env, out_dir)
    try:
        write_base_score(args.base_scores, key, result, env.get("SLURM_JOB_ID"))
        say(f"base model: stored its score in {path} for the other evals")
    except OSError as err:  # sharing is an optimisation: this eval's own result stands
        say(f"base model: could not store its score in {path} ({err}); the other evals will score it again")
    return result, {"file": str(path), "reused": False}


def evaluate(args: argparse.Namespace, env: dict[str, str]) -> int:
    ident = Ident.from_env(env)
    save = Path(args.save)
    ckpt, why = newest_complete_checkpoint(save)
    if ckpt is None:
        raise EvalFailed(f"--save {save}: no complete checkpoint to score ({why}); did the train stage save one?")
    target = save / EVAL_FILE
    try:
        previous = json.loads(target.read_text())
    except (OSError, ValueError):
        previous = None
    if isinstance(previous, dict) and previous.get("checkpoint") == str(ckpt):
        say(f"{target} already scores {ckpt.name}: nothing to do")
        return 0
    log_dir = Path(args.log_dir) / str(ident.job_id) if args.log_dir else save / "eval"
    log_dir.mkdir(parents=True, exist_ok=True)
    out_dir = save / "eval" / ckpt.name
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"scoring {ckpt} against the starting model {args.base_model} on {args.data} [{args.split}], mode {args.mode}"
        + (f", first {args.limit} rows" if args.limit else ""))
    t0 = time.monotonic()
    hf = export_checkpoint(ckpt, save, args.export, env, log_dir)
    results = {}
    with served(str(hf), "trained", args, ident, env, log_dir) as url:
        results["trained"] = score(url, str(hf), "trained", args, env, out_dir)
    results["base"], shared = base_result(args, ident, env, log_dir, out_dir)  # after: another eval may have stored it
    delta = {m: results["trained"][m] - results["base"][m] for m in METRICS
             if isinstance(results["trained"][m], (int, float)) and isinstance(results["base"][m], (int, float))}
    record = {"checkpoint": str(ckpt), "iteration": ckpt.name, "hf_export": str(hf), "data": args.data,
              "split": args.split, "mode": args.mode, "limit": args.limit, "rows": results["trained"]["rows"],
              "trained": results["trained"], "base": results["base"], "delta": delta,
              **({"base_shared": shared} if shared else {}),
              "slurm_job_id": env.get("SLURM_JOB_ID"), "seconds": round(time.monotonic() - t0, 1),
              "finished_at": time.time()}
    write_json_atomic(target, record)
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    say(f"wrote {target}: exact-match {pct(results['trained']['exact_match'])} (base {pct(results['base']['exact_match'])}, "
        f"{100 * delta.get('exact_match', 0):+.1f}), strict {pct(results['trained']['strict_accuracy'])} "
        f"(base {pct(results['base']['strict_accuracy'])}, {100 * delta.get('strict_accuracy', 0):+.1f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cluster.launcher.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--save", required=True, help="the run's save dir (paths.save)")
    p.add_argument("--base-model", required=True, help="the starting HF checkpoint (paths.hf-checkpoint)")
    p.add_argument("--data", required=True, help="PokerBench test rows: hub name, file or dir")
    p.add_argument("--split", default="test")
    p.add_argument("--mode", choices=("tools", "plain"), default="tools")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--export", required=True, help="export command, {checkpoint} and {output} filled in")
    p.add_argument("--server", required=True, help="server command, {model} {host} {port} filled in")
    p.add_argument("--server-timeout-s", type=float, default=1200.0)
    p.add_argument("--port-base", type=int, default=15000)
    p.add_argument("--tmp-root", default="/tmp")
    p.add_argument("--log-dir", default=None, help="where the export and server logs go (<log-dir>/<job id>/)")
    p.add_argument("--base-scores", default=None,
                   help="a dir shared with other evals of the same base model (a sweep's): score it once for all")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1024 <= args.port_base <= 65535 - PORT_STRIDE or (args.limit is not None and args.limit < 1):
        print(f"error: --port-base {args.port_base} must be in 1024..{65535 - PORT_STRIDE} and --limit at least 1",
              file=sys.stderr)
        return 2

    def stop(signum: int, _frame: object) -> None:  # Slurm's SIGTERM: unwind, so `served` stops the server
        raise EvalFailed(f"got {signal.Signals(signum).name}; stopped")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return evaluate(args, dict(os.environ))
    except EvalFailed as err:
        print(f"error: eval stage: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())

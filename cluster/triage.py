"""Why did a stage fail? One line with the cause and its fix, from the logs of every node.

    classify(files, slurm_state) -> Finding | None

The rules are a table, tried in order (a root cause before what it sets off: an OOM on one rank
makes the others time out in NCCL; a dead node makes everyone time out). Files are read in order
too: the driver log, the launcher's node logs (node 0 first), the tails of Ray's own logs, then
Slurm/submitit's task files; only the last LIMIT bytes of each. When no rule matches, the last
error line of the first file that has one is the finding, with its file. Stdlib only.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from cluster.launcher.ray_logs import strip_ansi

LIMIT = 4 * 1024 * 1024  # bytes read from the end of each file
_NODE_FILE = re.compile(r"^node-(\d+)-(.+?)(?:\.log)?$")

OOM_FIX = ("the seed's OOM order, one step at a time: 1. lower max-tokens-per-gpu (--set max-tokens-per-gpu=4096), "
           "2. raise context-parallel-size (--set context-parallel-size=2), 3. lower sglang-mem-fraction-static "
           "(--set sglang-mem-fraction-static=0.35), 4. lower sglang-server-concurrency (--set sglang-server-concurrency=128)")


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    cause: str  # may use {0}, {1}: the pattern's groups
    fix: str


def _r(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


RULES: tuple[Rule, ...] = (
    Rule("stall", _r(r"(stalled \d+ s after (?:rollout \S+|the start))"), "{0} (watchdog)",
         "the Python stacks of the driver and the Ray workers at that moment are in the run's stacks/ dir: "
         "look for the frame they all wait in (NCCL collective, SGLang request, data loading); "
         "watchdog.stall_s sets the patience"),
    Rule("restart-limit", _r(r"(restart \d+ exceeds slurm\.max_restarts = \d+)"), "{0}",
         "resubmit the chain: it resumes from the newest checkpoint (raise slurm.max_restarts if requeues are routine)"),
    Rule("cuda-oom", _r(r"(CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError|CUDA error: out of memory"
                        r"|cudaErrorMemoryAllocation|RuntimeError: out of memory)"),
         "CUDA out of memory", OOM_FIX),
    Rule("pybase64", _r(r"(ModuleNotFoundError: No module named '?pybase64'?)"), "{0}",
         "pip install pybase64 in the environment that runs train.py (or the container image); "
         "python -m cluster.doctor reports it before anything starts"),
    Rule("loss-mask", _r(r"(loss[ _]mask length \d+ != response length \d+|len\(loss_mask\)\s*!=\s*response_length)"),
         "{0}: the rollout wrote a loss mask that does not match the response tokens",
         "keep tokens, loss_mask and rollout_log_probs the same length (and the earlier mask when continuing a "
         "partial rollout); run python -m pytest tests/unit/holdem -q after changing the rollout"),
    Rule("prompt-parse", _r(r"(ValueError: instruction: (?:could not find [^\n]{0,60}|unexpected text after the street lines)"
                            r"|prompts? (?:do not|does not|failed to) parse)"),
         "prompts do not parse ({0})",
         "leave apply-chat-template out of the profile (the rollout builds the Qwen3 chat itself); keep "
         "PokerBench's instruction/output keys (--input-key instruction --label-key output)"),
    Rule("ray-auth", _r(r"(HTTP 40[13]\b[^\n]{0,80}|401 Unauthorized|Unauthenticated[^\n]{0,60}|invalid (?:auth(?:entication)? )?token)"),
         "Ray auth failure: {0}",
         "the dashboard at that port is not this run's (another cluster on the port) or runs another auth mode; "
         "see docs/TROUBLESHOOTING.md \"Ray token\""),
    Rule("port-in-use", _r(r"(Address already in use|EADDRINUSE|no free block of \d+ Ray ports[^\n]{0,40}"
                           r"|no block of \d+ ports[^\n]{0,40})"),
         "port in use: {0}",
         "another process holds the port: set ray.port_base to a free range below the ephemeral range; the ports "
         "used are in restart-<n>/ports-node-<i>-<host>.json"),
    # a node that stopped on a signal (preemption, scancel) reported a failure: it was not lost
    Rule("lost-node", _r(r"(?:Ray node on (\S+) is DEAD|node \d+ \((\S+)\) failed(?!: launcher got SIG)|lost the head (\S+)"
                         r"|head (\S+) unreachable|NODE_FAIL)"),
         "lost node {0}",
         "while restarts remain the launcher leaves the node out of the requeued job (slurm.max_excluded_nodes; "
         "cluster.status says which); otherwise leave it out yourself (--set slurm.extra.exclude=NODE) and tell "
         "the admins"),
    Rule("nccl-timeout", _r(r"(Watchdog caught collective operation timeout[^\n]{0,60}|NCCL[^\n]{0,80}time(?:d)? ?out[^\n]{0,40}"
                            r"|ProcessGroupNCCL[^\n]{0,80}timed out)"),
         "NCCL timeout: {0}",
         "a rank stopped or cannot reach the others: look for the first error on the other nodes; check that "
         "network.interface (or network.cidr) names the network the nodes share: the node logs show the "
         "NCCL_SOCKET_IFNAME it set (NCCL_DEBUG=INFO in env shows what NCCL used)"),
    Rule("time-limit", _r(r"(DUE TO TIME LIMIT)"), "Slurm time limit reached",
         "raise slurm.time (--set slurm.time=48:00:00); with requeue on, lower checkpoint.save-interval so a "
         "restart loses less"),
)
_ERROR_LINE = re.compile(r"\w*(?:Error|Exception)\b|\b(?:error|ERROR|fatal|FATAL|failed|FAILED|[Kk]illed)\b")
_NOISE = re.compile(r"^\s*(?:Traceback \(most recent call last\):|File \"|\^+\s*$)")


@dataclass(frozen=True)
class Finding:
    rule: str  # a Rule name, or "unknown"
    cause: str
    fix: str
    file: str | None
    line_no: int | None
    line: str
    node: str | None

    def one_line(self) -> str:
        where = f" [{self.node + ': ' if self.node else ''}{self.file}{f':{self.line_no}' if self.line_no else ''}]" if self.file else ""
        if self.rule == "unknown":
            return f"unknown cause; last error line{where}: {self.line}"
        return f"{self.cause}{where}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.one_line()}


def log_files(log_dir: str | Path, restart: int | None = None) -> list[Path]:
    """A stage's log files in reading order. With `restart`, only that run's dir (plus the job's
    Slurm/submitit files, which every run shares)."""
    root = Path(log_dir)
    if not root.is_dir():
        return []
    runs = [root / f"restart-{restart}"] if restart is not None else sorted(
        (p for p in root.glob("restart-*") if p.name.removeprefix("restart-").isdigit()),
        key=lambda p: -int(p.name.removeprefix("restart-")))  # the newest run first
    out: list[Path] = []
    for run in [*runs, root]:
        if not run.is_dir():
            continue
        out += [run / "driver.log"] if (run / "driver.log").is_file() else []
        out += sorted(run.glob("node-*.log"), key=_node_order)
        out += sorted((run / "ray-logs").glob("*/*")) if (run / "ray-logs").is_dir() else []
        out += sorted(p for p in run.glob("*") if p.is_file() and p.suffix in (".out", ".err", ".log")
                      and p.name != "driver.log" and not p.name.startswith("node-"))
    return out


def _node_order(p: Path) -> tuple[int, str]:
    m = _NODE_FILE.match(p.name)
    return (int(m.group(1)), p.name) if m else (1 << 30, p.name)


def _node_of(path: Path) -> str | None:
    for part in (path.name, path.parent.name):
        m = _NODE_FILE.match(part)
        if m:
            return m.group(2)
    return "driver" if path.name == "driver.log" else None


def _read_tail(path: Path) -> tuple[int, list[str]]:
    """(number of the first line read, 0 when unknown; lines) of the file's last LIMIT bytes."""
    try:
        with open(path, "rb") as fh:
            start = max(0, fh.seek(0, os.SEEK_END) - LIMIT)
            fh.seek(start)
            data = fh.read()
    except OSError:
        return 0, []
    first = 1
    if start:  # a cut first line is dropped; line numbers are unknown then
        cut = data.find(b"\n")
        data, first = (data[cut + 1:] if cut >= 0 else b""), 0
    return first, [strip_ansi(line) for line in data.decode("utf-8", "replace").splitlines()]


def classify(files: Iterable[Path], slurm_state: str | None = None, root: Path | None = None) -> Finding | None:
    """The first rule that matches any file (rules in order, then files in order); else the last
    error line; None when there is nothing to go on."""
    texts = [(p, *_read_tail(p)) for p in files]

    def rel(p: Path) -> str:
        if root is not None:
            try:
                return str(p.relative_to(root))
            except ValueError:
                pass
        return str(p)

    for rule in RULES:
        for path, first, lines in texts:
            for i, line in enumerate(lines):
                m = rule.pattern.search(line)
                if m is None:
                    continue
                groups = [g for g in m.groups() if g]
                node = _node_of(path)
                if rule.name == "lost-node":
                    node = groups[0] if groups else node
                    groups = groups or ["(Slurm NODE_FAIL)"]
                return Finding(rule.name, rule.cause.format(*(groups or [m.group(0)])), rule.fix, rel(path),
                               first + i if first else None, line.strip()[:300], node)
        if rule.name == "time-limit" and slurm_state == "TIMEOUT":
            return Finding(rule.name, rule.cause, rule.fix, None, None, "", None)
    if slurm_state == "NODE_FAIL":
        rule = next(r for r in RULES if r.name == "lost-node")
        return Finding(rule.name, "lost node (Slurm NODE_FAIL)", rule.fix, None, None, "", None)
    for path, first, lines in texts:
        for i in range(len(lines) - 1, -1, -1):
            line = lines[i]
            if _ERROR_LINE.search(line) and not _NOISE.match(line):
                return Finding("unknown", "", "", rel(path), first + i if first else None, line.strip()[:300],
                               _node_of(path))
    return None


def triage_dir(log_dir: str | Path | None, slurm_state: str | None = None,
               restart: int | None = None) -> Finding | None:
    """The cause for one stage's log dir (one run of it with `restart`)."""
    if not log_dir:
        return None
    files = log_files(log_dir, restart)
    if not files and slurm_state not in ("TIMEOUT", "NODE_FAIL"):
        return None
    return classify(files, slurm_state, root=Path(log_dir))


TRIAGED_RUN_STATES = ("failed", "stalled")  # a run's final state (done.json) worth a cause
TRIAGED_STAGE_STATES = ("FAILED", "TIMEOUT")


def add_causes(rows: list[dict[str, Any]], slurm_states: dict[str, str]) -> None:
    """cluster.status's hook: a `cause` (one line) on every failed run of a stage and, when no run
    has one, on the failed stage itself. `slurm_states`: job id -> Slurm's own state word."""
    for row in rows:
        for run in row.get("runs", []):
            if run.get("final") in TRIAGED_RUN_STATES:
                found = triage_dir(row.get("log_dir"), None, restart=run["restart"])
                if found is not None:
                    run["cause"] = found.one_line()
        if row.get("state") in TRIAGED_STAGE_STATES and not any("cause" in run for run in row.get("runs", [])):
            raw = slurm_states.get(str(row.get("job_id")), row.get("state"))
            found = triage_dir(row.get("log_dir"), (raw or "").split(" ")[0])
            if found is not None:
                row["cause"] = found.one_line()

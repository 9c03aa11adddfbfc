"""python -m cluster.metrics CHAIN|JOB [-f] [--plot FILE.png|.svg] [--json]: the seed's health
metrics per rollout, read from the metric lines slime prints into the Ray driver log of every run
(restarts included), each flagged when it crosses a threshold of docs/TROUBLESHOOTING.md.

What slime prints (../shared/SLIME.md, "What slime prints"; Python dict reprs after slime's logging
prefix `[2026-01-01 12:00:00] model.py:660 - `, often behind Ray's `(Actor pid=…, ip=…)` prefix):
    rollout {rollout_id}: {'rollout/raw_reward': ..., ...}          (Megatron side, per rollout)
    perf {rollout_id}: {'perf/tokens_per_gpu_per_sec': ..., ...}    (rollout side, per rollout)
    eval {rollout_id}: {...}
    step {n}: {'train/ppo_kl': ..., 'train/grad_norm': ..., ...}    (actor; `critic-step` is ignored)

A train step belongs to rollout n // steps_per_rollout (rollout-batch-size × n-samples-per-prompt /
global-batch-size from the chain record's slime args), else to the newest rollout seen before it.
Per rollout the table shows the mean of its steps' logprob diff, and the largest |ppo_kl| and
grad_norm of its steps (spikes are what matter there). A rollout that a later run redoes (resumed
from an older checkpoint) shows the later run's values.

Stdlib only; matplotlib is imported for --plot alone (Agg backend, pip install -e '.[plot]').
"""
from __future__ import annotations

import ast
import json
import math
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Callable, Sequence, TextIO

from cluster.chain import find_chain, read_chain
from cluster.cli import ArgumentParser, run_cli
from cluster.errors import ConfigError
from cluster.logs import Tail
from cluster.launcher.ray_logs import strip_ansi

# `… - perf 3: {…}`, `step 12: {…}`, `critic-step 12: {…}`; Ray may append `[repeated 2x across cluster]`.
_LINE = re.compile(r"(?:^|[\s\]\)>:-])(?P<role>[A-Za-z_]+-)?(?P<kind>rollout|perf|eval|step) (?P<id>\d+): "
                   r"(?P<dict>\{.*\})\s*(?:\[repeated \d+x across cluster\]\s*)?$")
_RESTART = re.compile(r"^restart-(\d+)$")

# (column, key in slime's dicts, source: "rollout" = the rollout/perf lines, "step" = train steps,
#  aggregation over a rollout's steps)
METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("tokens_per_gpu_per_sec", "perf/tokens_per_gpu_per_sec", "rollout", "last"),
    ("longest_sample_tokens_per_sec", "perf/longest_sample_tokens_per_sec", "rollout", "last"),
    ("raw_reward", "rollout/raw_reward", "rollout", "last"),
    ("logprob_abs_diff", "train/train_rollout_logprob_abs_diff", "step", "mean"),
    ("ppo_kl", "train/ppo_kl", "step", "maxabs"),
    ("grad_norm", "train/grad_norm", "step", "max"),
)
SHORT = {"tokens_per_gpu_per_sec": "tok/gpu/s", "longest_sample_tokens_per_sec": "longest tok/s",
         "raw_reward": "reward", "logprob_abs_diff": "logp diff", "ppo_kl": "|ppo_kl|", "grad_norm": "grad_norm"}

# Thresholds of docs/TROUBLESHOOTING.md ("Metrics to watch") made concrete. A rollout is compared
# with the median of up to WINDOW rollouts before it, once MIN_HISTORY of them exist.
WINDOW, MIN_HISTORY = 10, 3
LOGPROB_DIFF_HIGH = 0.05       # healthy ~0.01 and steady
LOGPROB_DIFF_GROWTH = 2.0      # × the median of the first WINDOW rollouts (and above 0.02)
KL_SPIKE, KL_FLOOR = 5.0, 1e-3  # × the recent median |ppo_kl|, and above the floor
GRAD_SPIKE = 5.0               # × the recent median grad_norm
THROUGHPUT_DROP = 0.5          # below half the recent median
MALFORMED_SCORE, FLAT_ROLLOUTS = -1.0, 3  # holdem/reward_config.py MIN_SCORE, for this many rollouts

FLAG_HINTS = {
    "nan": "a metric is NaN/inf: lower lr; check the data for degenerate rows",
    "logp-diff-high": "logprob diff high: SGLang and Megatron disagree (weights not synced, different "
                      "precision/attention backend)",
    "logp-diff-growing": "logprob diff growing: SGLang and Megatron drift apart (weights not synced, "
                         "different precision/attention backend)",
    "kl-spike": "ppo_kl spike: lower lr, or check eps-clip / eps-clip-high",
    "grad-spike": "grad_norm spike: lower lr; check the data for degenerate rows",
    "throughput-drop": "tokens_per_gpu_per_sec dropped: OOM retries, stragglers, over-sampling too high",
    "longest-slow": "longest_sample_tokens_per_sec dropped: one long sample holds up the batch; lower "
                    "rollout-max-response-len or use --partial-rollout",
    "reward-flat": "raw_reward flat at the malformed-output score: prompts do not parse (no "
                   "--apply-chat-template) or the tools fail",
}


class _NotLiteral(ValueError):
    pass


def parse_dict(text: str) -> dict[str, Any]:
    """A slime log dict (a Python repr): literals, plus what reprs of floats and tensors print that
    `ast.literal_eval` refuses: nan, inf, -inf, `tensor(0.5)`, `np.float64(0.5)`."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise _NotLiteral(str(err)) from None
    value = _literal(tree)
    if not isinstance(value, dict):
        raise _NotLiteral("not a dict")
    return value


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in ("nan", "inf", "NaN", "Infinity"):
        return float("nan") if node.id.lower() == "nan" else float("inf")
    if isinstance(node, ast.Call) and node.args and isinstance(node.func, (ast.Name, ast.Attribute)):
        name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        if name in ("tensor", "float64", "float32", "float16", "int64", "int32", "float", "array"):
            return _literal(node.args[0])
    raise _NotLiteral(f"unsupported value {ast.dump(node)[:60]}")


@dataclass(frozen=True)
class MetricLine:
    kind: str  # rollout | perf | eval | step
    ident: int  # rollout id (step: the accumulated step id)
    values: dict[str, Any]
    role: str = ""  # "" for the actor, "critic-" …


def parse_line(line: str) -> MetricLine | None:
    """One of slime's metric lines (any prefix: logging, Ray's actor prefix, colour codes), else None."""
    if ": {" not in line:
        return None
    m = _LINE.search(strip_ansi(line).rstrip("\r\n"))
    if m is None:
        return None
    try:
        values = parse_dict(m.group("dict"))
    except (_NotLiteral, RecursionError, ValueError):
        return None
    return MetricLine(m.group("kind"), int(m.group("id")), values, m.group("role") or "")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass(frozen=True)
class Run:
    """One run of the train job: a driver log (job, restart)."""

    job_id: str
    restart: int
    path: Path

    @property
    def label(self) -> str:
        return f"{self.job_id}/r{self.restart}"


def find_runs(chain_dir: Path, record: dict[str, Any], job_id: str | None = None) -> list[Run]:
    """Every driver log of the chain's train stage, oldest run first (as cluster.logs finds them)."""
    stage = next((s for s in record.get("stages", []) if s.get("name") == "train"), None)
    roots: list[Path] = []
    if stage and stage.get("log_dir"):
        roots.append(Path(stage["log_dir"]))
    train = chain_dir / "train"
    if train.is_dir():
        roots += sorted(p for p in train.iterdir() if p.is_dir() and p.name.isdigit())
    runs: dict[Path, Run] = {}
    for root in dict.fromkeys(roots):
        if job_id and root.name != job_id:
            continue
        for path in [root / "driver.log", *sorted(root.glob("restart-*/driver.log"))]:
            if not path.is_file():
                continue
            m = _RESTART.match(path.parent.name)
            runs[path.resolve()] = Run(root.name, int(m.group(1)) if m else 0, path)
    return sorted(runs.values(), key=lambda r: (int(r.job_id) if r.job_id.isdigit() else 0, r.restart))


def steps_per_rollout(record: dict[str, Any]) -> int | None:
    """slime's num_steps_per_rollout from the train stage's rendered args, when they say."""
    stage = next((s for s in record.get("stages", []) if s.get("name") == "train"), None)
    args = list((stage or {}).get("slime_args") or [])

    def value(flag: str) -> int | None:
        if f"--{flag}" in args:
            i = args.index(f"--{flag}")
            if i + 1 < len(args) and str(args[i + 1]).isdigit():
                return int(args[i + 1])
        return None

    if value("num-steps-per-rollout"):
        return value("num-steps-per-rollout")
    rbs, n, gbs = value("rollout-batch-size"), value("n-samples-per-prompt") or 1, value("global-batch-size")
    if rbs and gbs and (rbs * n) % gbs == 0 and rbs * n >= gbs:
        return rbs * n // gbs
    return None


@dataclass
class Row:
    rollout: int
    run: Run
    values: dict[str, Any] = field(default_factory=dict)  # merged rollout/perf/eval dicts
    steps: dict[int, dict[str, Any]] = field(default_factory=dict)  # accumulated step id -> dict
    redone: bool = False  # an earlier run had logged this rollout too

    def metric(self, name: str) -> float | None:
        col = next(m for m in METRICS if m[0] == name)
        _, key, source, agg = col
        if source == "rollout":
            return _number(self.values.get(key))
        nums = [v for s in self.steps.values() if (v := _number(s.get(key))) is not None]
        if not nums:
            return None
        if any(math.isnan(v) or math.isinf(v) for v in nums):
            return next(v for v in nums if math.isnan(v) or math.isinf(v))
        if agg == "mean":
            return sum(nums) / len(nums)
        if agg == "maxabs":
            return max(abs(v) for v in nums)
        return max(nums)

    def to_dict(self) -> dict[str, Any]:
        return {"rollout": self.rollout, "job_id": self.run.job_id, "restart": self.run.restart,
                "redone": self.redone, **{m[0]: _json_num(self.metric(m[0])) for m in METRICS},
                "steps": sorted(self.steps)}


def _json_num(v: float | None) -> float | str | None:
    if v is None or math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


class Collector:
    """Rows by rollout id, fed line by line from each run's driver log."""

    def __init__(self, steps_per_rollout: int | None = None) -> None:
        self.spr = steps_per_rollout
        self.rows: dict[int, Row] = {}
        self.runs: list[Run] = []
        self.first_rollout: dict[Run, int] = {}  # where each run started (restart markers)
        self.last_rollout: dict[Run, int] = {}
        self.lines = 0

    def _row(self, run: Run, rollout: int) -> Row:
        row = self.rows.get(rollout)
        if row is None or row.run != run:
            redone = row is not None
            row = self.rows[rollout] = Row(rollout, run, redone=redone)
        self.first_rollout.setdefault(run, rollout)
        self.last_rollout[run] = max(rollout, self.last_rollout.get(run, rollout))
        return row

    def feed(self, run: Run, line: str) -> bool:
        parsed = parse_line(line)
        if parsed is None:
            return False
        if run not in self.runs:
            self.runs.append(run)
        if parsed.kind == "step":
            if parsed.role:
                return False  # critic steps: not among the seed's metrics
            if self.spr:
                rollout = parsed.ident // self.spr
            elif run in self.last_rollout:
                rollout = self.last_rollout[run]
            else:
                return False
            self._row(run, rollout).steps[parsed.ident] = parsed.values
        else:
            self._row(run, parsed.ident).values.update(parsed.values)
        self.lines += 1
        return True

    def ordered(self) -> list[Row]:
        return [self.rows[k] for k in sorted(self.rows)]

    def restarts(self) -> list[tuple[Run, int]]:
        """(run, first rollout it logged) for every run after the first that logged something."""
        return [(run, self.first_rollout[run]) for run in self.runs[1:] if run in self.first_rollout]


def compute_flags(rows: Sequence[Row]) -> dict[int, list[str]]:
    """Per rollout id, the threshold crossings (keys of FLAG_HINTS), each judged against the rollouts before it."""
    out: dict[int, list[str]] = {}
    series = {m[0]: [r.metric(m[0]) for r in rows] for m in METRICS}
    for i, row in enumerate(rows):
        flags: list[str] = []

        def history(name: str) -> list[float]:
            prev = [v for v in series[name][max(0, i - WINDOW):i] if v is not None and math.isfinite(v)]
            return prev if len(prev) >= MIN_HISTORY else []

        values = {m[0]: series[m[0]][i] for m in METRICS}
        if any(v is not None and not math.isfinite(v) for v in values.values()):
            flags.append("nan")
        diff = values["logprob_abs_diff"]
        if diff is not None and math.isfinite(diff):
            # growth is judged against the run's first rollouts: a slow drift never looks like a jump
            early = [v for v in series["logprob_abs_diff"][:i] if v is not None and math.isfinite(v)][:WINDOW]
            if diff > LOGPROB_DIFF_HIGH:
                flags.append("logp-diff-high")
            elif len(early) >= MIN_HISTORY and diff > LOGPROB_DIFF_GROWTH * median(early) and diff > 0.02:
                flags.append("logp-diff-growing")
        kl = values["ppo_kl"]
        if kl is not None and math.isfinite(kl):
            prev = [abs(v) for v in history("ppo_kl")]
            if prev and abs(kl) > KL_SPIKE * median(prev) and abs(kl) > KL_FLOOR:
                flags.append("kl-spike")
        grad = values["grad_norm"]
        if grad is not None and math.isfinite(grad):
            prev = history("grad_norm")
            if prev and grad > GRAD_SPIKE * median(prev) and median(prev) > 0:
                flags.append("grad-spike")
        for name, flag in (("tokens_per_gpu_per_sec", "throughput-drop"),
                           ("longest_sample_tokens_per_sec", "longest-slow")):
            v = values[name]
            prev = history(name)
            if v is not None and math.isfinite(v) and prev and v < THROUGHPUT_DROP * median(prev):
                flags.append(flag)
        recent = series["raw_reward"][max(0, i - FLAT_ROLLOUTS + 1):i + 1]
        if len(recent) == FLAT_ROLLOUTS and all(v is not None and v <= MALFORMED_SCORE + 1e-6 for v in recent):
            flags.append("reward-flat")
        if flags:
            out[row.rollout] = flags
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 1 or abs(v) >= 0.01:
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
    return f"{v:.2e}"


HEADER = ("rollout", "run", *(SHORT[m[0]] for m in METRICS), "flags")


def table_cells(row: Row, flags: list[str]) -> list[str]:
    run = row.run.label + ("*" if row.redone else "")
    return [str(row.rollout), run, *(_fmt(row.metric(m[0])) for m in METRICS), ",".join(flags)]


WIDTHS = (7, 10, 10, 13, 8, 10, 9, 10)


def format_cells(cells: Sequence[str]) -> str:
    return "  ".join(c.rjust(w) if i < len(WIDTHS) - 1 else c for i, (c, w) in enumerate(zip(cells, WIDTHS))).rstrip()


def render_table(collector: Collector) -> str:
    rows = collector.ordered()
    flags = compute_flags(rows)
    out = [format_cells(HEADER)] + [format_cells(table_cells(r, flags.get(r.rollout, []))) for r in rows]
    out += legend(flags)
    return "\n".join(out)


def legend(flags: dict[int, list[str]]) -> list[str]:
    seen: dict[str, list[int]] = {}
    for rollout, names in sorted(flags.items()):
        for name in names:
            seen.setdefault(name, []).append(rollout)
    return [f"  {name} (rollout {', '.join(map(str, ids[:5]))}{', …' if len(ids) > 5 else ''}): {FLAG_HINTS[name]}"
            for name, ids in seen.items()]


def to_json(chain_id: str | None, collector: Collector) -> dict[str, Any]:
    rows = collector.ordered()
    flags = compute_flags(rows)
    return {"chain_id": chain_id,
            "runs": [{"job_id": r.job_id, "restart": r.restart, "driver_log": str(r.path),
                      "first_rollout": collector.first_rollout.get(r)} for r in collector.runs],
            "rows": [{**r.to_dict(), "flags": flags.get(r.rollout, [])} for r in rows],
            "thresholds": {"window": WINDOW, "min_history": MIN_HISTORY, "logprob_diff_high": LOGPROB_DIFF_HIGH,
                           "logprob_diff_growth": LOGPROB_DIFF_GROWTH, "kl_spike": KL_SPIKE, "kl_floor": KL_FLOOR,
                           "grad_spike": GRAD_SPIKE, "throughput_drop": THROUGHPUT_DROP,
                           "malformed_score": MALFORMED_SCORE, "flat_rollouts": FLAT_ROLLOUTS}}


def plot(collector: Collector, path: Path, title: str) -> Path:
    """One panel per metric over the rollouts, flagged points in red, restarts as dashed lines."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install -e '.[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = collector.ordered()
    flags = compute_flags(rows)
    fig, axes = plt.subplots(3, 2, figsize=(11, 8.5), sharex=True)
    for ax, (name, key, _source, agg) in zip(axes.flat, METRICS):
        xs = [r.rollout for r in rows if (v := r.metric(name)) is not None and math.isfinite(v)]
        ys = [v for r in rows if (v := r.metric(name)) is not None and math.isfinite(v)]
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, color="tab:blue")
        bad = [(r.rollout, r.metric(name)) for r in rows if _flagged(name, flags.get(r.rollout, []))
               and r.metric(name) is not None and math.isfinite(r.metric(name))]
        if bad:
            ax.scatter(*zip(*bad), color="tab:red", zorder=3, s=28, label="flagged")
            ax.legend(loc="best", fontsize=7)
        nans = [r.rollout for r in rows if (v := r.metric(name)) is not None and not math.isfinite(v)]
        for x in nans:
            ax.axvline(x, color="tab:red", linewidth=0.8)
        for run, first in collector.restarts():
            ax.axvline(first - 0.5, color="grey", linestyle="--", linewidth=0.9)
            ax.annotate(f"restart {run.restart}", (first - 0.5, 1.0), xycoords=("data", "axes fraction"),
                        fontsize=7, color="grey", ha="left", va="top", rotation=90)
        what = {"mean": " (mean over steps)", "maxabs": " (max |·| over steps)", "max": " (max over steps)"}.get(agg, "")
        ax.set_title(f"{key}{what}", fontsize=9)
        ax.grid(True, alpha=0.3)
        if not xs:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="grey")
    for ax in axes[-1]:
        ax.set_xlabel("rollout")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rollouts are whole numbers
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _flagged(name: str, flags: list[str]) -> bool:
    owner = {"logp-diff-high": "logprob_abs_diff", "logp-diff-growing": "logprob_abs_diff", "kl-spike": "ppo_kl",
             "grad-spike": "grad_norm", "throughput-drop": "tokens_per_gpu_per_sec",
             "longest-slow": "longest_sample_tokens_per_sec", "reward-flat": "raw_reward"}
    return any(owner.get(f) == name for f in flags)


class Reader:
    """Follows every driver log of the chain (new runs included) into a Collector."""

    def __init__(self, chain_dir: Path, record: dict[str, Any], job_id: str | None) -> None:
        self.chain_dir, self.record, self.job_id = chain_dir, record, job_id
        self.collector = Collector(steps_per_rollout(record))
        self.tails: dict[Path, tuple[Run, Tail]] = {}

    def pump(self, final: bool = False) -> int:
        for run in find_runs(self.chain_dir, self.record, self.job_id):
            if run.path not in self.tails:
                self.tails[run.path] = (run, Tail(run.path, run.label))
        new = 0
        for run, tail in self.tails.values():
            for line in tail.read_lines(final=final):
                new += self.collector.feed(run, line)
        return new


def _follow(reader: Reader, out: TextIO, as_json: bool, jobs_final: Callable[[], bool],
            poll_s: float = 1.0, stop: threading.Event | None = None) -> None:
    """Print rows as they settle (a row is settled once a later rollout has appeared, or the jobs
    ended); on a terminal, redraw the whole table instead."""
    stop = stop or threading.Event()
    printed: set[int] = set()
    tty = out.isatty() and not as_json
    if not as_json and not tty:
        out.write(format_cells(HEADER) + "\n")
    while True:
        final = jobs_final()
        reader.pump(final=final)
        rows = reader.collector.ordered()
        if tty:
            out.write("\x1b[H\x1b[2J" + render_table(reader.collector) + "\n")
        else:
            flags = compute_flags(rows)
            newest = rows[-1].rollout if rows else -1
            for row in rows:
                if row.rollout in printed or (row.rollout == newest and not final):
                    continue
                printed.add(row.rollout)
                f = flags.get(row.rollout, [])
                out.write((json.dumps({**row.to_dict(), "flags": f}) if as_json
                           else format_cells(table_cells(row, f))) + "\n")
            if final and not as_json:
                out.write("\n".join(legend(flags)) + ("\n" if flags else ""))
        out.flush()
        if final or stop.wait(poll_s):  # a poll interval, like tail -F; the exit is the job state
            return


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m cluster.metrics",
        description="The seed's health metrics per rollout from slime's metric lines in the Ray driver log "
                    "(every restart), flagged where they cross the thresholds of docs/TROUBLESHOOTING.md.",
        epilog="examples:\n  python -m cluster.metrics smoke-20261124-101500-ab12\n"
               "  python -m cluster.metrics 4812 -f\n  python -m cluster.metrics 4812 --plot run.png")
    parser.add_argument("ref", help="chain id, chain dir, or a job id of one of its stages")
    parser.add_argument("-f", "--follow", action="store_true", help="keep updating until the train job ends")
    parser.add_argument("--plot", metavar="FILE", help="draw the curves into FILE.png or FILE.svg (needs matplotlib)")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table (with -f: one row per line)")
    parser.add_argument("--log-dir", default="logs", help="where chains are recorded (default: ./logs)")
    args = parser.parse_args(argv)
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".svg"):
        parser.error(f"--plot {args.plot}: give a .png or .svg file")
    if args.plot and args.follow:
        parser.error("--plot draws the run so far; leave out -f")
    chain_dir, stage = find_chain(args.ref, args.log_dir)
    record = read_chain(chain_dir)
    job_id = args.ref if stage == "train" else None
    if stage not in (None, "train"):
        raise ConfigError(f"job {args.ref} is the {stage} stage of chain {record.get('chain_id')}; metrics come "
                          f"from the train stage: pass the chain id or the train job's id")
    reader = Reader(chain_dir, record, job_id)
    if args.follow:
        train = next((s for s in record.get("stages", []) if s.get("name") == "train"), {})
        if not train.get("job_id"):
            raise ConfigError(f"chain {record.get('chain_id')} has no submitted train job to follow")
        from cluster.logs import _jobs_final

        try:
            _follow(reader, sys.stdout, args.json, _jobs_final([str(train["job_id"])]))
        except KeyboardInterrupt:
            sys.stderr.write("\nstopped following; the job keeps running\n")
            return 130
        return 0
    reader.pump(final=True)
    collector = reader.collector
    if not collector.runs:
        where = ", ".join(str(r.path) for r in find_runs(chain_dir, record, job_id)) or f"{chain_dir}/train/*/restart-*/driver.log"
        if not find_runs(chain_dir, record, job_id):
            raise ConfigError(f"chain {record.get('chain_id')}: no driver log yet ({where}); the train job has not "
                              f"started its Ray job. Follow it with python -m cluster.metrics {args.ref} -f")
    if args.plot:
        if not collector.rows:
            raise ConfigError(f"chain {record.get('chain_id')}: no slime metric lines in the driver log(s) yet; "
                              f"nothing to plot")
        path = plot(collector, Path(args.plot), f"{record.get('chain_id')}: the seed's metrics per rollout")
        print(f"wrote {path} ({len(collector.rows)} rollouts, {len(collector.runs)} run(s))")
        return 0
    if args.json:
        print(json.dumps(to_json(record.get("chain_id"), collector), indent=2))
    elif not collector.rows:
        print(f"chain {record.get('chain_id')}: no slime metric lines in the driver log(s) yet")
    else:
        print(render_table(collector))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

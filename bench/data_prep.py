"""Benchmark: the data stage on PokerBench's size (563,200 train rows) -> JSONL.

    python bench/data_prep.py [--rows 563200] [--input rows.jsonl] [--workdir DIR] [--quick]

Generates the input once with `python -m holdem.rowgen` (or reuses --input), then runs, each in
its own process so time and peak RSS are its own:
  1. `python -m holdem.data --source IN --out OUT` (validation with the instruction parser, one
     worker process per core),
  2. the same with --workers 1 (everything in one process: the output must be byte-identical),
  3. the same as 1 with --drop-duplicates --drop-conflicts (a second pass over the input),
  4. the baseline: a plain `datasets.load_dataset("json", ...)` followed by `.to_json(OUT)`
     (no validation at all; its Arrow cache goes to a fresh directory).
Prints wall time, rows/s, peak RSS (the largest process, and the sum over the process tree,
sampled) for each, and the ratios against the baseline. Targets (issue 16): <= 30 s, <= 3x the
baseline and < 1 GiB on a 2-core machine. Figures are printed, never asserted.
`--quick` (CI): 300 rows, a few seconds. In both modes the exit code is non-zero only when the
bench itself breaks: a run exits non-zero, an output does not hold the rows it should (every
generated row is valid, so each output must have all of them; the deduplicated one at least one),
or the parallel and single-process outputs differ.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from verdict import verdict  # noqa: E402  (bench/ is on sys.path when a bench runs as a script)

ROOT = Path(__file__).resolve().parents[1]
QUICK_ROWS = 300
BASELINE = """
import sys
import datasets
datasets.disable_progress_bars()
ds = datasets.load_dataset("json", data_files=sys.argv[1], split="train", cache_dir=sys.argv[3])
ds.to_json(sys.argv[2], lines=True, force_ascii=False)
"""


@dataclass(frozen=True)
class Measure:
    name: str
    seconds: float
    peak_rss_mib: float  # the largest single process (wait4)
    tree_rss_mib: float  # the sum over the process and its children, sampled every 50 ms
    exit_code: int


def tree_rss_kib(pid: int) -> int:
    """VmRSS of `pid` and all its descendants (0 when they are gone); Linux /proc only."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in open(f"/proc/{p}/task/{task}/children").read().split()]
        except (OSError, ValueError):
            continue
    return total


def run_measured(name: str, argv: list[str]) -> Measure:
    """Run `argv` as a child process; wall time, the child's own peak RSS (wait4) and the peak of
    the whole tree's RSS (a sampling thread: a measurement, nothing waits on it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_rss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(f"{name}: exit {proc.returncode}\n{err[-2000:]}", file=sys.stderr)
    return Measure(name, seconds, usage.ru_maxrss / 1024, peak[0] / 1024, proc.returncode)


def generate_input(path: Path, rows: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "holdem.rowgen", "--n", str(rows), "--seed", "0", "--out", str(path)],
                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    return time.perf_counter() - start


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 22), b""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=563_200)
    p.add_argument("--input", type=Path, help="reuse this PokerBench-format JSONL instead of generating one")
    p.add_argument("--workdir", type=Path, help="where inputs and outputs go (default: a temp dir, removed)")
    p.add_argument("--quick", action="store_true", help="300 rows, for CI: fails only if the bench itself breaks")
    ns = p.parse_args()
    if ns.quick:
        ns.rows = min(ns.rows, QUICK_ROWS)
    with tempfile.TemporaryDirectory(prefix="bench-data-", dir=ns.workdir) as tmp:
        work = Path(tmp)
        src = ns.input
        if src is None:
            src = work / "rows.jsonl"
            gen_s = generate_input(src, ns.rows)
            print(f"generated {ns.rows:,} rows with holdem.rowgen in {gen_s:.1f} s ({src.stat().st_size / 2**20:.0f} MiB)")
        rows = count_lines(src)
        py = sys.executable
        runs = [
            run_measured("holdem.data",  # all cores
                         [py, "-m", "holdem.data", "--source", str(src), "--out", str(work / "a.jsonl")]),
            run_measured("holdem.data --workers 1",
                         [py, "-m", "holdem.data", "--source", str(src), "--out", str(work / "s.jsonl"),
                          "--workers", "1"]),
            run_measured("holdem.data --drop-duplicates --drop-conflicts",
                         [py, "-m", "holdem.data", "--source", str(src), "--out", str(work / "b.jsonl"),
                          "--drop-duplicates", "--drop-conflicts"]),
            run_measured("datasets load_dataset + to_json (baseline)",
                         [py, "-c", BASELINE, str(src), str(work / "c.jsonl"), str(work / "hf-cache")]),
        ]
        problems = [f"{m.name}: exit {m.exit_code}" for m in runs if m.exit_code != 0]
        problems += check_outputs(work, rows, generated=ns.input is None)
        if not problems and (work / "a.jsonl").read_bytes() != (work / "s.jsonl").read_bytes():
            problems.append("holdem.data: the all-cores output differs from the --workers 1 output")
    base = runs[-1]
    print(f"\n{rows:,} rows, {os.cpu_count()} cores")
    print(f"{'run':<48}{'seconds':>9}{'rows/s':>10}{'peak RSS':>11}{'tree RSS':>11}{'time/base':>11}{'exit':>6}")
    for m in runs:
        ratio = m.seconds / base.seconds if base.seconds else float("nan")
        print(f"{m.name:<48}{m.seconds:>9.1f}{rows / m.seconds:>10,.0f}{m.peak_rss_mib:>8.0f} MiB"
              f"{m.tree_rss_mib:>7.0f} MiB{ratio:>10.2f}x{m.exit_code:>6}")
    main_run, single = runs[0], runs[1]
    print(f"\nratio holdem.data / baseline: time {main_run.seconds / base.seconds:.2f}x, "
          f"peak RSS {main_run.peak_rss_mib / base.peak_rss_mib:.2f}x")
    print(f"speed-up over one process: {single.seconds / main_run.seconds:.2f}x; outputs byte-identical: "
          f"{'no' if any('differs' in p for p in problems) else 'yes'}")
    print(f"targets: <= 30 s -> {main_run.seconds:.1f} s; <= 3x baseline -> {main_run.seconds / base.seconds:.2f}x; "
          f"< 1024 MiB -> {max(main_run.peak_rss_mib, main_run.tree_rss_mib):.0f} MiB (tree)")
    return verdict(problems)


def check_outputs(work: Path, rows: int, generated: bool) -> list[str]:
    """What is wrong with the three outputs (empty when nothing is). Generated rows are all
    valid, so then every output holds every row; a user's --input may have rows the data stage
    drops, so then only non-empty outputs are required."""
    problems = []
    for name, what, want_all in (("a.jsonl", "holdem.data", generated), ("s.jsonl", "holdem.data --workers 1", generated),
                                 ("b.jsonl", "holdem.data --drop-*", False), ("c.jsonl", "the baseline", True)):
        path = work / name
        if not path.is_file():
            problems.append(f"{what} wrote no {path.name}")
            continue
        got = count_lines(path)
        if (want_all and got != rows) or not 0 < got <= rows:
            problems.append(f"{what} wrote {got:,} rows to {path.name}; the input has {rows:,}")
    return problems


if __name__ == "__main__":
    sys.exit(main())

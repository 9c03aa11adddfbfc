"""Time to submit the four-stage chain with `python -m cluster.submit` (profile loading, checks,
plan, submitit, chain record) beside four bare `sbatch --wrap` calls with the same afterok
dependencies one after the other, in the same run on the local Slurm (target ratio <= 1.5).
cluster.submit starts sbatch for the first stages while it checks the profile (they read their
job script on stdin), hands data and model to Slurm at the same time and each later stage as soon
as the ids it waits for are known; the bench also prints bare sbatch with data and model at the
same time, for reference. Every job is submitted held and cancelled at once, so the bench leaves
nothing running.

    python bench/submit_chain.py [--runs 15] [--quick]

`--quick` (CI): two runs, a few seconds. In both modes the exit code is non-zero only when the
bench itself breaks: a submission fails or does not give four job ids. The ratio target is
printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("data", "model", "convert", "train")


def bare_chain(plan: dict, parallel: bool = False) -> float:
    """Four sbatch --wrap calls with each stage's own options and afterok dependencies, as a
    shell user would write them: one after the other, or with `parallel` the stages that wait for
    nothing submitted yet (data and model) at the same time, as cluster.submit does."""
    start = time.perf_counter()
    ids: dict[str, str] = {}

    def one(stage: dict) -> None:
        opts = [f"--{k}" if v is True else f"--{k}={v}" for k, v in stage["slurm"].items() if k not in ("dependency",)]
        deps = [ids[d] for d in stage["depends_on"]]
        dep = [f"--dependency=afterok:{':'.join(deps)}"] if deps else []
        out = subprocess.run(["sbatch", "--parsable", *opts, *dep, "--wrap", "true"], check=True,
                             capture_output=True, text=True).stdout
        ids[stage["name"]] = out.strip().split(";")[0]

    stages = list(plan["stages"])
    while stages:
        ready = [s for s in stages if all(d in ids for d in s["depends_on"])] if parallel else stages[:1]
        threads = [threading.Thread(target=one, args=(s,)) for s in ready[1:]]
        for thread in threads:
            thread.start()
        one(ready[0])
        for thread in threads:
            thread.join()
        stages = [s for s in stages if s not in ready]
    elapsed = time.perf_counter() - start
    subprocess.run(["scancel", *ids.values()], check=False)
    check_ids("bare sbatch", list(ids.values()))
    return elapsed


def spread(runs: list[float]) -> str:
    """', middle half a-b ms': how much the runs of one side vary (a shared 2-core VM is noisy)."""
    if len(runs) < 4:
        return ""
    q = statistics.quantiles(runs, n=4)
    return f"; middle half {q[0] * 1000:.1f}-{q[2] * 1000:.1f} ms"


def check_ids(what: str, ids: list) -> None:
    if len(ids) != len(STAGES) or not all(str(i).isdigit() for i in ids):
        raise SystemExit(f"error: {what} gave job ids {ids}, expected {len(STAGES)}")


def in_process_chain(work: Path) -> float:
    """What `python -m cluster.submit` does after its imports (parse the arguments, profile ->
    checks -> plan -> submission of 4 jobs), inside one warm interpreter."""
    from cluster.submit import build_parser, submit_chain

    cwd = os.getcwd()
    os.chdir(work)
    try:
        start = time.perf_counter()
        record = submit_chain(build_parser().parse_args(submit_args(work)))
        elapsed = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    ids = [s["job_id"] for s in record["stages"] if s["job_id"]]
    subprocess.run(["scancel", *ids], check=False)
    check_ids("cluster.submit in-process", ids)
    return elapsed


def submit_args(work: Path) -> list[str]:
    for d in ("slime", "Megatron-LM"):
        (work / d).mkdir(exist_ok=True)
    return ["--profile", "smoke", "--nodes", "1", "--set", f"paths.root={work}", "--set", "slurm.extra.hold=true",
            "--set", "slurm.exclusive=false"]


def our_chain(work: Path) -> float:
    """The whole command as a user runs it (interpreter start-up included)."""
    argv = [sys.executable, "-m", "cluster.submit", "--json", *submit_args(work)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: python -m cluster.submit exited {proc.returncode}: {proc.stderr.strip()}")
    ids = [s["job_id"] for s in json.loads(proc.stdout)["stages"] if s["job_id"]]
    subprocess.run(["scancel", *ids], check=False)
    check_ids("python -m cluster.submit", ids)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="two runs, for CI: fails only if the bench breaks")
    args = parser.parse_args()
    if args.quick:
        args.runs = 2
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        first = Path(tmp) / "warm-up"
        first.mkdir()
        dry = subprocess.run([sys.executable, "-m", "cluster.submit", "--dry-run", "--json", *submit_args(first)],
                             cwd=first, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
        plan = json.loads(dry.stdout)
        in_process_chain(first)  # imports submitit & co.: the warm interpreter is warm from here on
        cli, inproc, bare, bare_par = [], [], [], []
        for i in range(args.runs):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            # back to back, in alternating order, so neither side always follows the other's scancel
            if i % 2:
                inproc.append(in_process_chain(work))
                bare.append(bare_chain(plan))
                bare_par.append(bare_chain(plan, parallel=True))
            else:
                bare_par.append(bare_chain(plan, parallel=True))
                bare.append(bare_chain(plan))
                inproc.append(in_process_chain(work))
        for i in range(max(1, args.runs // 3)):
            work = Path(tmp) / f"cli{i}"
            work.mkdir()
            cli.append(our_chain(work))
    c, i, b, bp = (statistics.median(x) for x in (cli, inproc, bare, bare_par))
    print(f"4 x sbatch --wrap, same options and afterok:  {b * 1000:7.1f} ms median of {len(bare)}  (baseline{spread(bare)})")
    print(f"cluster.submit in a warm interpreter:         {i * 1000:7.1f} ms   ratio {i / b:.2f}  (target <= 1.5: "
          f"{'met' if i / b <= 1.5 else 'NOT met'}; runs alternate with the baseline's{spread(inproc)})")
    print(f"  for reference: 4 x sbatch, data and model at the same time (as cluster.submit does them): "
          f"{bp * 1000:.1f} ms; cluster.submit's ratio to that: {i / bp:.2f}")
    print(f"python -m cluster.submit, whole command:      {c * 1000:7.1f} ms   ratio {c / b:.2f}  (median of {len(cli)}; "
          f"interpreter + imports included; target < 250 ms: {'met' if c < 0.25 else 'NOT met'})")


if __name__ == "__main__":
    main()

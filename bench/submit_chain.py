"""Time to submit the four-stage chain with `python -m cluster.submit` (profile loading, checks,
plan, submitit, chain record) beside four bare `sbatch --wrap` calls with the same afterok
dependencies, in the same run on the local Slurm (target ratio <= 1.5). Every job is submitted
held and cancelled at once, so the bench leaves nothing running.

    python bench/submit_chain.py [--runs 5] [--quick]

`--quick` (CI): one run, a few seconds. In both modes the exit code is non-zero only when the
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("data", "model", "convert", "train")


def bare_chain(plan: dict) -> float:
    """Four sbatch --wrap calls with each stage's own options and afterok dependencies, as a
    shell user would write them."""
    start = time.perf_counter()
    ids: dict[str, str] = {}
    for stage in plan["stages"]:
        opts = [f"--{k}" if v is True else f"--{k}={v}" for k, v in stage["slurm"].items() if k not in ("dependency",)]
        deps = [ids[d] for d in stage["depends_on"]]
        dep = [f"--dependency=afterok:{':'.join(deps)}"] if deps else []
        out = subprocess.run(["sbatch", "--parsable", *opts, *dep, "--wrap", "true"], check=True,
                             capture_output=True, text=True).stdout
        ids[stage["name"]] = out.strip().split(";")[0]
    elapsed = time.perf_counter() - start
    subprocess.run(["scancel", *ids.values()], check=False)
    check_ids("bare sbatch", list(ids.values()))
    return elapsed


def check_ids(what: str, ids: list) -> None:
    if len(ids) != len(STAGES) or not all(str(i).isdigit() for i in ids):
        raise SystemExit(f"error: {what} gave job ids {ids}, expected {len(STAGES)}")


def in_process_chain(work: Path) -> float:
    """Profile -> checks -> plan -> submitit submission of 4 jobs, inside one warm interpreter."""
    from cluster.slurm import submit_plan
    from cluster.submit import build_parser, make_plan

    cwd = os.getcwd()
    os.chdir(work)
    try:
        start = time.perf_counter()
        profile, plan = make_plan(build_parser().parse_args(submit_args(work)), strict_paths=True)
        record = submit_plan(plan, profile.data)
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
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run, for CI: fails only if the bench breaks")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        cli, inproc, bare = [], [], []
        for i in range(args.runs):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            cli.append(our_chain(work))
            inproc.append(in_process_chain(work))
            dry = subprocess.run([sys.executable, "-m", "cluster.submit", "--dry-run", "--json", *submit_args(work)],
                                 cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
            bare.append(bare_chain(json.loads(dry.stdout)))
    c, i, b = (statistics.median(x) for x in (cli, inproc, bare))
    print(f"4 x sbatch --wrap, same options and afterok:  {b * 1000:7.0f} ms median of {args.runs}  (baseline)")
    print(f"cluster.submit in a warm interpreter:         {i * 1000:7.0f} ms   ratio {i / b:.2f}  (target <= 1.5: {'met' if i / b <= 1.5 else 'NOT met'})")
    print(f"python -m cluster.submit, whole command:      {c * 1000:7.0f} ms   ratio {c / b:.2f}  (interpreter + imports included)")


if __name__ == "__main__":
    main()

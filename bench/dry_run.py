"""Wall time of `python -m cluster.submit --profile full --nodes 1 --dry-run --json` beside a bare
`python -c "import yaml"` measured in the same run (target: under 0.5 s), and proof that the path
imports none of ray, torch, datasets.

    python bench/dry_run.py [--runs 7] [--quick]

`--quick` (CI): one timed run of each, about a second. In both modes the exit code is non-zero
only when the bench itself breaks: the dry run fails or prints no plan with a train stage and
its slime arguments (the JSON contract of DESIGN.md), or the dry-run path imports ray, torch or
datasets (a broken contract). The time target is printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from verdict import verdict  # noqa: E402  (bench/ is on sys.path when a bench runs as a script)

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7
HEAVY = ("ray", "torch", "datasets")
DRY_ARGS = ["--profile", "full", "--nodes", "1", "--dry-run", "--json"]
PROBE = ("import json, sys\n"
         "from cluster.submit import main\n"
         "code = main({args!r})\n"
         "print('HEAVY=' + json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)\n"
         "sys.exit(code or 0)\n")


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def check_plan(argv: list[str]) -> list[str]:
    """What is wrong with the dry run's output (empty when nothing is)."""
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return [f"dry run exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"]
    try:
        stages = {s["name"]: s for s in json.loads(proc.stdout)["stages"]}
    except (ValueError, KeyError, TypeError) as err:
        return [f"dry run printed no plan ({type(err).__name__}: {err}): {proc.stdout[:500]!r}"]
    if not (stages.get("train") or {}).get("slime_args"):
        return [f"dry run planned no train stage with slime_args (stages: {list(stages)})"]
    return []


def heavy_imports() -> tuple[list[str] | None, str]:
    """Heavy modules the in-process dry run imported (None if the probe broke), and its stderr."""
    probe = PROBE.format(args=DRY_ARGS, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY=")), None)
    if proc.returncode != 0 or line is None:
        return None, proc.stderr.strip()[-2000:]
    return json.loads(line.removeprefix("HEAVY=")), ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--quick", action="store_true", help="one run of each, for CI: fails only if the bench breaks")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    dry = [sys.executable, "-m", "cluster.submit", *DRY_ARGS]
    base = [sys.executable, "-c", "import yaml"]
    problems = check_plan(dry)  # also warms the page cache and .pyc files
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    dry_t = statistics.median(timed(dry) for _ in range(runs))
    base_t = statistics.median(timed(base) for _ in range(runs))
    heavy, probe_err = heavy_imports()
    print(f"dry-run --json (full, 1 node): {dry_t * 1000:.0f} ms median of {runs}")
    print(f"python -c 'import yaml':       {base_t * 1000:.0f} ms median of {runs}")
    print(f"ratio: {dry_t / base_t:.2f}x   target: dry-run under 500 ms -> {'met' if dry_t < 0.5 else 'NOT met'}")
    print(f"heavy modules imported on the dry-run path: {heavy if heavy is not None else 'unknown (probe failed)'}")
    if heavy is None:
        problems.append(f"the import probe failed: {probe_err}")
    elif heavy:
        problems.append(f"the dry-run path imports {', '.join(heavy)} (it must import none of {', '.join(HEAVY)})")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main())

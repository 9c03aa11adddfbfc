"""Wall time of `python -m cluster.submit --profile full --nodes 1 --dry-run --json` beside a bare
`python -c "import yaml"` measured in the same run (target: under 0.5 s), and proof that the path
imports none of ray, torch, datasets."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    dry = [sys.executable, "-m", "cluster.submit", "--profile", "full", "--nodes", "1", "--dry-run", "--json"]
    base = [sys.executable, "-c", "import yaml"]
    timed(dry)  # warm the page cache and .pyc files
    dry_t = statistics.median(timed(dry) for _ in range(RUNS))
    base_t = statistics.median(timed(base) for _ in range(RUNS))
    probe = ("import sys; from cluster.submit import main; main(['--profile','full','--nodes','1','--dry-run','--json']);"
             "print([m for m in ('ray','torch','datasets') if m in sys.modules], file=sys.stderr)")
    heavy = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True).stderr.strip()
    print(f"dry-run --json (full, 1 node): {dry_t * 1000:.0f} ms median of {RUNS}")
    print(f"python -c 'import yaml':       {base_t * 1000:.0f} ms median of {RUNS}")
    print(f"ratio: {dry_t / base_t:.2f}x   target: dry-run under 500 ms -> {'met' if dry_t < 0.5 else 'NOT met'}")
    print(f"heavy modules imported on the dry-run path: {heavy}")


if __name__ == "__main__":
    main()

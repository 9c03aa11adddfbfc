"""Time of `scripts/local-slurm.sh up N` from nothing (packages installed, empty state dir) and
from a stopped cluster (state dir kept), beside `sinfo` answering on the running cluster (the
baseline), all in the same run; plus a 2-node job's submit → RUNNING time.

Runs a private instance (its own state dir, names, subnet, ports, and no /etc/slurm link: the
same kind of second instance tests/integration/test_local_slurm.py runs) so the shared cluster
is left alone, and purges it at the end. Needs root.

    python bench/local_slurm_up.py [--nodes N] [--runs R] [--quick]

`--quick` (CI): 2 nodes, one run, one submit -> RUNNING sample (about 30 s). In both modes the
exit code is non-zero only when the bench itself breaks: a command fails, the cluster comes up
without its N idle nodes, or a job never starts. Times are printed, never asserted."""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "local-slurm.sh"
ENV = {
    **os.environ,
    "LOCAL_SLURM_STATE_DIR": "/var/lib/holdem-local-slurm-bench",
    "LOCAL_SLURM_NAME": "hlsbench",
    "LOCAL_SLURM_SUBNET": "10.88.0",
    "LOCAL_SLURM_NODE_PREFIX": "b",
    "LOCAL_SLURM_PORT_BASE": "10817",
    "LOCAL_SLURM_ETC_LINK": "0",
    "SLURM_CONF": "/var/lib/holdem-local-slurm-bench/etc/slurm.conf",
}


def run(*argv: str) -> str:
    proc = subprocess.run(list(argv), env=ENV, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(argv)} exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()}")
    return proc.stdout


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def submit_to_running(deadline_s: float = 60) -> float:
    """Seconds from `sbatch` being called to squeue showing the 2-node job RUNNING."""
    start = time.perf_counter()
    job = run("sbatch", "--parsable", "-N2", "-o", "/dev/null", "--wrap", "srun sleep 60").strip()
    try:
        while time.perf_counter() - start < deadline_s:
            if run("squeue", "-h", "-j", job, "-o", "%T").strip() == "RUNNING":
                return time.perf_counter() - start
            time.sleep(0.02)
        sys.exit(f"error: job {job} not RUNNING after {deadline_s:g} s (squeue -j {job})")
    finally:
        run("scancel", job)


def wait_queue_empty(deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while run("squeue", "-h", "-o", "%A").strip():
        if time.monotonic() > deadline:
            sys.exit(f"error: queue not empty after {deadline_s:g} s")
        time.sleep(0.05)


def check_nodes_idle(nodes: int) -> None:
    """After `up`: the private instance has exactly its N nodes, all idle."""
    states = run("sinfo", "-h", "-N", "-p", "debug", "-o", "%N %T").split()
    names, node_states = states[0::2], states[1::2]
    want = [f"{ENV['LOCAL_SLURM_NODE_PREFIX']}{i}" for i in range(1, nodes + 1)]
    if sorted(names) != want or set(node_states) != {"idle"}:
        sys.exit(f"error: after up {nodes}, sinfo lists {list(zip(names, node_states))}; expected {want} idle")


def describe(name: str, values: list[float]) -> str:
    return f"{name:<34} median {statistics.median(values):7.3f} s  (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 nodes, 1 run, for CI: fails only if the bench breaks")
    args = parser.parse_args()
    samples = 3
    if args.quick:
        args.nodes, args.runs, samples = 2, 1, 1
    if args.nodes < 2:
        sys.exit("error: --nodes must be at least 2 (the submit -> RUNNING sample is a 2-node job)")
    if os.geteuid() != 0:
        how = "sudo python3 bench/local_slurm_up.py (or the same from a root shell)" if shutil.which("sudo") \
            else "python3 bench/local_slurm_up.py from a root shell (this machine has no sudo)"
        sys.exit(f"error: bench/local_slurm_up.py needs root (it runs scripts/local-slurm.sh). Run: {how}")
    up = ["bash", str(SCRIPT), "up", str(args.nodes)]
    down = ["bash", str(SCRIPT), "down"]
    fresh, stopped, sinfo, running = [], [], [], []
    try:
        for _ in range(args.runs):
            run(*down, "--purge")
            fresh.append(timed(lambda: run(*up)))
            check_nodes_idle(args.nodes)
            run(*down)
            stopped.append(timed(lambda: run(*up)))
            check_nodes_idle(args.nodes)
            sinfo.extend(timed(lambda: run("sinfo")) for _ in range(10))
            for _ in range(samples):
                running.append(submit_to_running())
                wait_queue_empty()
    finally:
        subprocess.run([*down, "--purge"], env=ENV, capture_output=True)
    base = statistics.median(sinfo)
    print(f"local-slurm.sh up {args.nodes} (private instance, packages installed)")
    print(describe("up from nothing (empty state dir)", fresh))
    print(describe("up from a stopped cluster", stopped))
    print(describe("2-node job submit -> RUNNING", running))
    print(describe("sinfo answering (baseline)", sinfo))
    print(f"ratios to sinfo: up from nothing {statistics.median(fresh) / base:.0f}x, "
          f"from stopped {statistics.median(stopped) / base:.0f}x, submit->RUNNING {statistics.median(running) / base:.0f}x")


if __name__ == "__main__":
    main()

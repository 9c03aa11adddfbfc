"""Faults to try on a running demo chain (README: the demo's fail-fast and requeue paths).

    python -m demo.faults kill-node [CHAIN] [--node 1]   # node n2 dies: launcher + its Ray, SIGKILL
    python -m demo.faults preempt [CHAIN]                # the preemption signal: scancel --signal=USR2

CHAIN is a chain dir; default: the newest chain under ./demo-run/logs. Only the train job's own
processes are touched: the node's launcher (pid from its heartbeat file) and the Ray processes
carrying the job's tag, never anything found by name.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cluster.chain import list_chains, read_chain
from cluster.cli import ArgumentParser
from cluster.launcher.procs import find_tree
from cluster.launcher.rendezvous import RendezvousPaths

DEFAULT_LOGS = Path("demo-run/logs")


class FaultError(Exception):
    """The chain is not in a state where the fault can be injected."""


def find_train(chain: Path) -> tuple[str, int, RendezvousPaths]:
    """The train job id, its newest restart and that restart's launcher paths."""
    job = next((s.get("job_id") for s in read_chain(chain).get("stages", []) if s["name"] == "train"), None)
    if not job:
        raise FaultError(f"{chain}: the chain has no submitted train job")
    restarts = [int(p.name.removeprefix("restart-")) for p in (chain / "train" / job).glob("restart-*")
                if p.name.removeprefix("restart-").isdigit()]
    if not restarts:
        raise FaultError(f"{chain}: train job {job} has not started yet; wait for its first log lines")
    restart = max(restarts)
    return job, restart, RendezvousPaths.of(str(chain), "train", job, restart)


def kill_node(chain: Path, node: int) -> str:
    job, restart, paths = find_train(chain)
    try:
        beat = json.loads(paths.heartbeat(node).read_text())
    except (OSError, ValueError) as err:
        raise FaultError(f"{paths.heartbeat(node)}: no heartbeat of node {node} ({err}); is the train job running "
                         f"on that many nodes?") from None
    pids = {int(beat["pid"]), *find_tree(None, f"{job}-{node}-{restart}")}
    for pid in sorted(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return f"killed node {node} of train job {job} (restart {restart}): launcher {beat['pid']} and {len(pids) - 1} Ray process(es)"


def preempt(chain: Path) -> str:
    job, _restart, _paths = find_train(chain)
    proc = subprocess.run(["scancel", "--signal=USR2", job], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise FaultError(f"scancel --signal=USR2 {job} failed: {proc.stderr.strip()}")
    return f"sent USR2 (the preemption warning) to train job {job}"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m demo.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("fault", choices=["kill-node", "preempt"])
    parser.add_argument("chain", nargs="?", help="chain dir (default: the newest under ./demo-run/logs)")
    parser.add_argument("--node", type=int, default=1, help="kill-node: which node (0 is the Ray head)")
    args = parser.parse_args(argv)
    try:
        chains = [Path(args.chain)] if args.chain else list_chains(DEFAULT_LOGS)
        if not chains:
            raise FaultError(f"no chain under {DEFAULT_LOGS}; run scripts/demo.sh first or pass a chain dir")
        print(kill_node(chains[0], args.node) if args.fault == "kill-node" else preempt(chains[0]))
    except FaultError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

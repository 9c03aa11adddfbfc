"""One node's launcher: the process each task of the train job runs (`python -m cluster.launch`).

    python -m cluster.launch --spec SPEC.json     # one task per node: srun / sbatch wrappers
    run_node(spec) -> int                         # the same, in-process

Node 0 starts the Ray head, checks that the live cluster has exactly the GPUs slime will ask for,
runs the entrypoint as a Ray job and reports its real final state; the other nodes join as
workers and leave when node 0 is done or gone (cluster/launcher/node.py). Exit codes: 0 ok, 1 job
failed, 2 bad config, 3 infrastructure (Ray/Slurm). `ray` is never imported here.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from cluster.errors import EXIT_CONFIG, ConfigError, HoldemClusterError, Interrupted
from cluster.launcher.spec import LaunchSpec, check_spec, load_spec, parse_slurm_identity


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM/SIGINT/SIGUSR2 -> Interrupted in the main thread, so every `finally` tears down what this
    node started. Only the first signal raises; previous handlers (submitit's) come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if not fired:
            fired.append(signum)
            why = " (Slurm's warning: preemption or time limit; the job will be requeued)" if signum == signal.SIGUSR2 else ""
            raise Interrupted(f"launcher got {signal.Signals(signum).name}{why}; stopping the Ray job and this node's Ray")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_node(spec: LaunchSpec, env: Mapping[str, str] | None = None) -> int:
    """This task's part of the cluster; returns the exit code (never raises a HoldemClusterError)."""
    t0 = time.monotonic()
    env = dict(os.environ if env is None else env)
    try:
        check_spec(spec)
        ident = parse_slurm_identity(env)
    except ConfigError as err:
        _print_error(err)
        return EXIT_CONFIG
    from cluster.launcher.node import run_ray_node  # after the cheap checks: keeps `error:` paths instant

    try:
        with _signals_raise():
            return run_ray_node(spec, ident, env, t0)
    except HoldemClusterError as err:  # raised before the node log existed
        _print_error(err)
        return err.exit_code


def _print_error(err: HoldemClusterError) -> None:
    sys.stderr.write(f"error: {err}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.launch",
        description="Run this Slurm task's part of the job's Ray cluster (one task per node).")
    parser.add_argument("--spec", required=True, help="launch spec JSON written by the plan")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except ConfigError as err:
        _print_error(err)
        return EXIT_CONFIG
    return run_node(spec)


if __name__ == "__main__":
    sys.exit(main())

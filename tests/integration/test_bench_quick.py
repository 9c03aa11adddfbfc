"""The benches that need the local Slurm, in their quick mode (what CI runs), against the
session's cluster: each runs to the end, exits 0 and prints its figures with the ratio against
the baseline it measured in the same run. A bench fails only when it breaks (the launcher never
got ready, a requeued run did not resume, ...), never on a time, so nothing here asserts one.

Quick-mode cost on a 2-core machine (quiet / shared with other test sessions): submit_chain
1 s, local_slurm_up 17-27 s (a private instance), ray_bringup 17-35 s (1 node), requeue 22-90 s
(a 2-node job requeued once; Slurm holds a requeued job 5-30 s)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import LocalSlurm
from tests.unit.test_bench_quick import assert_ok_with_ratio
from tests.unit.test_bench_quick import run_quick as run_bench_quick

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 1200  # only ends a hung bench (it may queue behind other jobs for free nodes)


def run_quick(cluster: LocalSlurm, script: str) -> subprocess.CompletedProcess[str]:
    """`python bench/SCRIPT --quick` as a client of the session's cluster (SLURM_CONF names it)."""
    return run_bench_quick(script, env={**cluster.env, "PYTHONPATH": str(ROOT)}, timeout=HANG_S)


def test_submit_chain_quick(local_slurm: LocalSlurm) -> None:
    assert_ok_with_ratio(run_quick(local_slurm, "submit_chain.py"), "cluster.submit in a warm interpreter:")


def test_ray_bringup_quick(local_slurm: LocalSlurm) -> None:
    """The launcher reaches ready (found through its own RendezvousPaths) beside the bare sequence."""
    proc = run_quick(local_slurm, "ray_bringup.py")
    assert_ok_with_ratio(proc, "ratio launcher/bare, 1 node(s)")


def test_requeue_quick(local_slurm: LocalSlurm) -> None:
    """A 2-node train job warned with USR2 comes back and resumes from its checkpoint."""
    proc = run_quick(local_slurm, "requeue.py")
    assert_ok_with_ratio(proc, "ratio requeue / bring-up:")


def test_local_slurm_up_quick(local_slurm: LocalSlurm) -> None:
    """Up/down cycles of a private instance (own state dir, names, subnet, ports, no /etc link:
    like test_local_slurm.py's scratch instance), beside the shared cluster, which stays up."""
    proc = run_quick(local_slurm, "local_slurm_up.py")
    assert_ok_with_ratio(proc, "ratios to sinfo:")
    assert local_slurm.script("status", timeout=120).returncode == 0, "the shared cluster is no longer up"

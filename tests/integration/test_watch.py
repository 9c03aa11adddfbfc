"""Watching a run on the real local Slurm: a stand-in driver (tests/standins/metrics_driver.py)
prints slime's metric lines through a Ray actor, then stalls (the watchdog dumps every node's
Python stacks and ends the job) or prints a CUDA OOM trace (cluster.status shows the triaged cause);
cluster.metrics reads the lines back from the driver log.

Every wait is a condition with a deadline (the job's final state); nothing asserts how long it took."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cluster.launcher.spec import WatchdogSpec
from tests.integration.conftest import LocalSlurm
from tests.integration.test_ray_launch import ROOT, RayRun, make_spec, submit

pytestmark = pytest.mark.integration

DRIVER = ROOT / "tests" / "standins" / "metrics_driver.py"
STALL_S = 15  # far above the stand-in's 0.5 s ticks, so only its real stall trips the watchdog


def metrics_spec(chain: Path, nodes: int, driver_args: list[str], stall_s: float | None = None):
    spec = make_spec(chain, nodes, 4)
    entry = ["python3", str(DRIVER), *driver_args, "--rollout-batch-size", "8"]
    return replace(spec, entrypoint=entry, resume={"save_dir": str(chain / "save")},
                   watchdog=WatchdogSpec(stall_s=stall_s, dump_timeout_s=60))


def write_chain(run: RayRun) -> Path:
    """The chain record status and metrics read (the launcher tests submit without cluster.submit)."""
    (run.chain / "chain.json").write_text(json.dumps({
        "chain_id": run.chain.name, "profile": "test", "stages": [
            {"name": "train", "job_id": run.job_id, "log_dir": str(run.chain / "train" / run.job_id),
             "slime_args": ["--rollout-batch-size", "8", "--n-samples-per-prompt", "2", "--global-batch-size", "16"]}]}))
    return run.chain


def cli(slurm: LocalSlurm, module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**slurm.env, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_stalled_driver_dumps_stacks_of_every_node_and_ends_the_job(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    chain = tmp_path / "watch-stall"
    release = tmp_path / "release"  # never created: the stall lasts until the watchdog ends it
    run = submit(local_slurm, metrics_spec(chain, 2, ["--rollouts", "3", "--then", "stall", "--release", str(release),
                                                      "--save", str(chain / "save")], STALL_S),
                 nodelist=",".join(local_slurm.nodes[:2]), name="stall")
    state, done = run.finish()
    assert (state, done["state"], done["exit_code"]) == ("FAILED", "stalled", 1), run.tails()
    assert "stalled " in done["message"], done
    assert "after rollout 2 (no new metric line, checkpoint or driver output" in done["message"], done
    stacks = run.log_dir / "stacks"
    files = sorted(p.name for p in stacks.glob("*.txt"))
    assert files == [f"node-0-{local_slurm.nodes[0]}.txt", f"node-1-{local_slurm.nodes[1]}.txt"], run.tails()
    text = "".join(p.read_text() for p in stacks.glob("*.txt"))
    assert "py-spy" in text and "wait_in_allreduce" in text, text[-3000:]  # the actor's frame, wherever it ran
    assert "metrics_driver.py" in text  # and the driver's own stack
    run.assert_no_ray_left()

    write_chain(run)
    status = cli(local_slurm, "cluster.status", str(chain))
    assert status.returncode == 0, status.stderr
    assert "train run 0: stalled: job" in status.stdout
    assert "train run 0: cause: stalled 15 s after rollout 2 (watchdog) [n1: restart-0/node-0-n1.log:" in status.stdout \
        or "(watchdog) [" in status.stdout, status.stdout
    table = cli(local_slurm, "cluster.metrics", str(chain))
    assert table.returncode == 0, table.stderr
    rows = [ln.split() for ln in table.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["0", "1", "2"] and rows[2][2] == "1520", table.stdout


def test_cuda_oom_is_the_triaged_cause_in_status(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    chain = tmp_path / "watch-oom"
    run = submit(local_slurm, metrics_spec(chain, 1, ["--rollouts", "1", "--then", "oom"]),
                 nodelist=local_slurm.nodes[0], name="oom")
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("FAILED", 1), run.tails()
    write_chain(run)
    status = cli(local_slurm, "cluster.status", str(chain))
    assert status.returncode == 0, status.stderr
    line = next((ln for ln in status.stdout.splitlines() if "cause:" in ln), "")
    assert line.startswith("  train run 0: cause: CUDA out of memory [driver: restart-0/driver.log:"), status.stdout
    assert "Fix: the seed's OOM order, one step at a time: 1. lower max-tokens-per-gpu" in line
    as_json = json.loads(cli(local_slurm, "cluster.status", str(chain), "--json").stdout)
    assert as_json["stages"][0]["runs"][0]["cause"].startswith("CUDA out of memory")

"""Bad-node quarantine on the real local Slurm (3 nodes, a 2-node train job through cluster.submit):
node 1's launcher and Ray are killed mid-run (demo/faults.py `kill_node`); node 0 blames that node,
leaves it out of the requeued job (`scontrol requeuehold`, `update ExcNodeList`, `release`), the
next run lands on the other nodes and completes, and cluster.status names the node left out.

The trainer (tests/standins/ckpt_trainer.py) holds after its last iteration while a hold file
exists, so the kill always lands mid-run; every wait is a condition with a deadline."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from demo.faults import kill_node
from tests.integration.test_chain import cli, wait_chain_final
from tests.integration.test_requeue import (  # noqa: F401  (_cancel_leftover_jobs: the autouse fixture)
    WAIT_S, _cancel_leftover_jobs, held, records, submit_train, wait_for,
)

pytestmark = pytest.mark.integration
_NODE_LOG = re.compile(r"^node-(\d+)-(.+)\.log$")


def run_hosts(run_dir: Path) -> list[str]:
    """The hosts of one run, node 0 first, from its launchers' node logs."""
    found = sorted((int(m.group(1)), m.group(2)) for p in run_dir.glob("node-*.log") if (m := _NODE_LOG.match(p.name)))
    return [host for _, host in found]


def test_a_node_lost_mid_run_is_left_out_of_the_requeued_job(local_slurm, tmp_path):
    hold = held(tmp_path)
    chain = submit_train(tmp_path, iterations=2, interval_s=0.5, hold=hold)
    job = chain["stages"][-1]["job_id"]
    job_dir = Path(chain["chain_dir"]) / "train" / job
    wait_for(lambda: len(records(tmp_path)) == 1, "run 0's trainer to start", chain, tmp_path)
    first = run_hosts(job_dir / "restart-0")
    assert len(first) == 2, first
    victim = first[1]
    print(kill_node(Path(chain["chain_dir"]), 1))  # node 1's launcher and its Ray, SIGKILL

    wait_for(lambda: len(records(tmp_path)) == 2, f"the requeued run's trainer to start (without {victim})",
             chain, tmp_path)
    second = run_hosts(job_dir / "restart-1")
    assert len(second) == 2 and victim not in second, (first, second)
    assert records(tmp_path)[1]["restart"] == "1"
    record = json.loads((job_dir / "restart-0" / "quarantine.json").read_text())
    assert record["node"] == victim and record["left_out"] and record["requeued"], record
    assert victim in record["exclude"] and record["why"].startswith("lost mid-run"), record
    done = json.loads((job_dir / "restart-0" / "rendezvous" / "done.json").read_text())
    assert f"leaving {victim} out of the requeued job" in done["message"], done

    hold.unlink()
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=WAIT_S)
    train = status["stages"][-1]
    assert train["state"] == "COMPLETED" and train["restarts"] == 1, status
    assert [e["node"] for e in train["excluded_nodes"]] == [victim], train
    text = cli("cluster.status", chain["chain_id"], cwd=tmp_path).stdout
    assert f"train run 0: left {victim} out of the requeued job (lost mid-run" in text, text
    assert f"train: nodes left out (slurm.max_excluded_nodes): {victim} (after run 0)" in text, text

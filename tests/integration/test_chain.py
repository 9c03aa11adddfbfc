"""The chain on the real local Slurm: submission through submitit, dependencies, skipping,
failure propagation, half-failed submissions, status and log following.

Stage commands are stand-ins (tests/standins/stage_outputs.py): real processes that write what
the real stages write."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.cluster.helpers import clean_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ["{python}", "-m", "tests.standins.stage_outputs"]


def standin_sets(root: Path, **commands: list[str]) -> list[str]:
    (root / "slime").mkdir(exist_ok=True)
    (root / "Megatron-LM").mkdir(exist_ok=True)
    cmds = {
        "data": STANDIN + ["data", "{paths.prompt-data}"],
        "model": STANDIN + ["model", "{paths.hf-checkpoint}"],
        "convert": STANDIN + ["convert", "{paths.ref-load}"],
    }
    cmds.update(commands)
    sets = [f"paths.root={root}", "slurm.exclusive=false", "slurm.time=00:05:00"]
    return sets + [f"stages.{name}.command={json.dumps(argv)}" for name, argv in cmds.items()]


def cli(module: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)


def submit(tmp_path: Path, *extra: str, stages: str = "data,model,convert", sets: list[str] | None = None) -> subprocess.CompletedProcess:
    args = ["--profile", "smoke", "--nodes", "1", "--stages", stages, "--json"]
    for item in sets if sets is not None else standin_sets(tmp_path):
        args += ["--set", item]
    return cli("cluster.submit", *args, *extra, cwd=tmp_path)


def wait_chain_final(tmp_path: Path, chain_id: str, deadline_s: float = 120) -> dict:
    """Poll cluster.status until every submitted stage is in a final state."""
    deadline = time.monotonic() + deadline_s
    status: dict = {}
    while time.monotonic() < deadline:
        proc = cli("cluster.status", chain_id, "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        status = json.loads(proc.stdout)
        states = [s["state"] for s in status["stages"] if s["state"] not in ("SKIPPED", "NOT SUBMITTED")]
        if states and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states):
            return status
        time.sleep(0.5)
    logs = cli("cluster.logs", chain_id, cwd=tmp_path).stdout[-3000:]
    pytest.fail(f"chain {chain_id} not final after {deadline_s} s: {status}\n--- logs ---\n{logs}")


def test_chain_runs_in_dependency_order_and_resubmission_skips(local_slurm, tmp_path):
    proc = submit(tmp_path)
    assert proc.returncode == 0, proc.stderr
    chain = json.loads(proc.stdout)
    ids = {s["name"]: s["job_id"] for s in chain["stages"]}
    assert all(ids.values())
    record = json.loads((Path(chain["chain_dir"]) / "chain.json").read_text())
    assert record["chain_id"] == chain["chain_id"] and record["profile_snapshot"]["rollout"]["rollout-batch-size"] == 4
    status = wait_chain_final(tmp_path, chain["chain_id"])
    assert [s["state"] for s in status["stages"]] == ["COMPLETED"] * 3, status
    model = local_slurm.wait_for_accounting(ids["model"], "COMPLETED", fields=("Start", "End"))
    convert = local_slurm.wait_for_accounting(ids["convert"], "COMPLETED", fields=("Start", "End"))
    assert convert["Start"] >= model["End"], (model, convert)
    # convert: one node, one task per GPU, and every task sees the node's 4 GPUs
    logs = cli("cluster.logs", chain["chain_id"], "--stage", "convert", cwd=tmp_path).stdout
    assert logs.count("stand-in convert on n") == 4 and "CUDA_VISIBLE_DEVICES=0,1,2,3" in logs
    assert "[convert n" in logs
    # everything done: a second submission skips every stage and submits nothing
    again = submit(tmp_path)
    assert again.returncode == 0, again.stderr
    chain2 = json.loads(again.stdout)
    assert [s["skip"] for s in chain2["stages"]] == [True, True, True]
    assert all(s["job_id"] is None for s in chain2["stages"])
    assert "output complete" in chain2["stages"][0]["reason"]


def test_failing_stage_cancels_dependents_and_status_names_it(local_slurm, tmp_path):
    sets = standin_sets(tmp_path, model=STANDIN + ["fail", "3"])
    proc = submit(tmp_path, stages="model,convert", sets=sets)
    assert proc.returncode == 0, proc.stderr
    chain = json.loads(proc.stdout)
    status = wait_chain_final(tmp_path, chain["chain_id"])
    by_stage = {s["stage"]: s for s in status["stages"]}
    assert by_stage["model"]["state"] == "FAILED" and by_stage["model"]["exit_code"].startswith("1")
    assert by_stage["convert"]["state"] == "CANCELLED"
    assert status["state"] == "FAILED at model"
    text = cli("cluster.status", chain["chain_id"], cwd=tmp_path).stdout
    assert "FAILED" in text and by_stage["model"]["log_dir"] in text
    assert "stand-in failing on purpose" in cli("cluster.logs", chain["chain_id"], cwd=tmp_path).stdout


def test_sbatch_failing_mid_chain_leaves_nothing_behind(local_slurm, tmp_path):
    # Held jobs cannot finish before the third submission fails, so the cancellation is visible.
    sets = standin_sets(tmp_path) + ["slurm.extra.hold=true", "stages.convert.slurm.partition=no-such-partition"]
    proc = submit(tmp_path, sets=sets)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sbatch rejected stage convert"), proc.stderr
    assert "invalid partition" in lines[0].lower() and "Cancelled what was already submitted" in lines[0]
    record = json.loads(next((tmp_path / "logs").glob("*/chain.json")).read_text())
    ids = [s["job_id"] for s in record["stages"] if s["job_id"]]
    assert len(ids) == 2 and record["submit_failed"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True).stdout
        if not out.strip():
            break
        time.sleep(0.3)
    assert not out.strip(), f"jobs still queued after the failed submission: {out}"


@pytest.mark.parametrize("refused, accepted", [(["model"], ["data"]), (["data", "model"], [])])
def test_sbatch_refusing_a_stage_submitted_beside_another_cancels_that_one(local_slurm, tmp_path, refused, accepted):
    # data and model wait for nothing, so they go to sbatch at the same time: a refusal of one
    # must still cancel the other, and the error names the first refused stage in chain order
    sets = standin_sets(tmp_path) + ["slurm.extra.hold=true"] + [f"stages.{n}.slurm.partition=no-such-partition"
                                                                   for n in refused]
    proc = submit(tmp_path, sets=sets)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: sbatch rejected stage {refused[0]}:"), proc.stderr
    assert "invalid partition" in lines[0].lower()
    record = json.loads(next((tmp_path / "logs").glob("*/chain.json")).read_text())
    assert [s["name"] for s in record["stages"] if s["job_id"]] == accepted and record["submit_failed"]
    ids = [s["job_id"] for s in record["stages"] if s["job_id"]]
    assert ("Cancelled what was already submitted: data (" in lines[0]) == bool(accepted)
    deadline = time.monotonic() + 30
    out = ""
    while ids and time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True).stdout
        if not out.strip():
            break
        time.sleep(0.3)
    assert not out.strip(), f"jobs still queued after the failed submission: {out}"


@pytest.mark.parametrize("key, value, fragment", [
    ("slurm.partition", "no-such-partition", "invalid partition"),
    ("slurm.account", "no-such-account", "account"),
])
def test_unknown_partition_or_account_passes_slurms_message(local_slurm, tmp_path, key, value, fragment):
    proc = submit(tmp_path, stages="data", sets=standin_sets(tmp_path) + [f"{key}={value}"])
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sbatch rejected stage data"), proc.stderr
    assert fragment in lines[0].lower() and "Traceback" not in proc.stderr


def test_logs_follow_stops_by_itself_with_node_prefixes(local_slurm, tmp_path):
    proc = submit(tmp_path, stages="data,model")
    chain = json.loads(proc.stdout)
    follow = cli("cluster.logs", chain["chain_id"], "-f", cwd=tmp_path, timeout=120)
    assert follow.returncode == 0, follow.stderr
    assert "stand-in data wrote" in follow.stdout and "stand-in model wrote" in follow.stdout
    prefixes = {line.split("]")[0] + "]" for line in follow.stdout.splitlines() if line.startswith("[")}
    assert any(p.startswith("[data n") for p in prefixes) and any(p.startswith("[model n") for p in prefixes)
    by_job = cli("cluster.logs", chain["stages"][0]["job_id"], cwd=tmp_path)
    assert "stand-in data wrote" in by_job.stdout and "stand-in model" not in by_job.stdout

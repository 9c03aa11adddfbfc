"""W&B across a real-Slurm requeue (issue 17): the train job, requeued by `scontrol requeue`, starts
again with the same `--wandb-run-id` (the chain's, from chain.json), writes its offline run under the
chain's dir, gets the API key through the environment only, and the sync stage (`afterany` the
train, on another partition) uploads both offline segments to that one run, the later one appended.

The entrypoint is tests/standins/wandb_trainer.py (records the W&B flags of every start, leaves what
`wandb.init` leaves offline, then checkpoints like ckpt_trainer); `wandb` on the job's PATH is a
stand-in recording how it was called. Every interruption waits on a condition first; the trainer
holds after its last iteration until the test removes a hold file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.outputs import jsonl_stats, stats_path_for
from tests.integration.test_chain import cli, wait_chain_final
from tests.unit.cluster.helpers import clean_env
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 300  # bounds one wait (Slurm's requeue delay plus a Ray bring-up on a busy machine)
KEY = "wandb-integration-key-5f1e2d3c4b5a69788796"  # a stand-in API key: must never leave the environment
_SUBMITTED: list[str] = []


@pytest.fixture(autouse=True)
def _cancel_leftover_jobs():
    yield
    if _SUBMITTED:
        subprocess.run(["scancel", *_SUBMITTED], check=False, capture_output=True)
        _SUBMITTED.clear()


def prepare(root: Path) -> None:
    """What the earlier stages leave: data with its stats, an HF dir, a converted checkpoint."""
    for d in ("slime", "Megatron-LM", "pokerbench", "Qwen3-8B", "Qwen3-8B_torch_dist/release"):
        (root / d).mkdir(parents=True, exist_ok=True)
    data = root / "pokerbench" / "train.jsonl"
    data.write_text('{"instruction": "x", "output": "fold"}\n')
    stats_path_for(data).write_text(json.dumps(jsonl_stats(data)))
    (root / "Qwen3-8B" / "config.json").write_text("{}")
    (root / "Qwen3-8B" / "model.safetensors").write_bytes(b"w")
    release = root / "Qwen3-8B_torch_dist" / "release"
    (release / "common.pt").write_bytes(b"x")
    (release / "metadata.json").write_text('{"sharded_backend": "torch_dist"}')
    (root / "Qwen3-8B_torch_dist" / "latest_checkpointed_iteration.txt").write_text("release")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_requeued_train_job_keeps_its_wandb_run(local_slurm, tmp_path):
    prepare(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "wandb.calls"
    wandb = bin_dir / "wandb"  # stand-in: records its argv, marks the run dir synced as `--mark-synced` does
    wandb.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nfor last; do :; done\ntouch "$last/run.wandb.synced"\n')
    wandb.chmod(0o755)
    hold, records, wandb_records = tmp_path / "hold", tmp_path / "record.jsonl", tmp_path / "wandb.jsonl"
    hold.touch()
    entry = ["{python}", "-m", "tests.standins.wandb_trainer", "--wandb-record", str(wandb_records),
             "--record", str(records), "--iterations", "4", "--interval-s", "0.5", "--hold-while", str(hold)]
    internet = next((p for p in local_slurm.partitions if p != local_slurm.default_partition), local_slurm.default_partition)
    sets = [f"paths.root={tmp_path}", "slurm.exclusive=false", "slurm.time=00:10:00", "slurm.max_restarts=3",
            f"stages.train.entrypoint={json.dumps(entry)}", f"stages.train.working_dir={ROOT}",
            "stages.train.preflight=false", "ray.object_store_memory=100000000", "ray.ready_timeout_s=120",
            "wandb.wandb-mode=offline", "stages.sync.enabled=true", f"stages.sync.slurm.partition={internet}",
            "stages.sync.slurm.time=00:05:00"]
    env = clean_env(WANDB_API_KEY=KEY, PATH=f"{bin_dir}:{clean_env()['PATH']}")
    proc = subprocess.run([sys.executable, "-m", "cluster.submit", "--profile", "smoke", "--nodes", "1",
                           "--stages", "train,sync", "--json", *(w for s in sets for w in ("--set", s))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    chain = json.loads(proc.stdout)
    _SUBMITTED.extend(s["job_id"] for s in chain["stages"] if s["job_id"])
    ids = {s["name"]: s["job_id"] for s in chain["stages"]}
    chain_dir = Path(chain["chain_dir"])
    run_id = json.loads((chain_dir / "chain.json").read_text())["wandb_run_id"]
    assert run_id and run_id == chain["wandb_run_id"]

    def tails() -> str:
        return (f"; wandb records={jsonl(wandb_records)}\n--- logs ---\n"
                f"{cli('cluster.logs', chain['chain_id'], cwd=tmp_path).stdout[-4000:]}")

    wait_for(lambda: jsonl(wandb_records) and (tmp_path / "Qwen3-8B_slime" / "latest_checkpointed_iteration.txt").exists(),
             "the first run's trainer to start and save a checkpoint", WAIT_S, tails, poll_s=0.2)
    subprocess.run(["scontrol", "requeue", ids["train"]], check=True)
    wait_for(lambda: len(jsonl(wandb_records)) == 2, "the requeued run's trainer to start", WAIT_S, tails, poll_s=0.2)
    hold.unlink()
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=WAIT_S)
    by_stage = {s["stage"]: s for s in status["stages"]}
    assert by_stage["train"]["state"] == "COMPLETED" and by_stage["train"]["restarts"] == 1, status
    assert by_stage["sync"]["state"] == "COMPLETED", status

    first, second = jsonl(wandb_records)
    assert (first["restart"], second["restart"]) == ("0", "1")
    assert first["run_id"] == second["run_id"] == run_id  # one W&B run across the requeue
    assert first["dir"] == second["dir"] == str(chain_dir / "wandb") and first["mode"] == "offline"
    assert all(r["use_wandb"] and r["key_in_env"] and not r["key_on_argv"] for r in (first, second))
    assert second["offline_run"] != first["offline_run"]
    resumed = json.loads((chain_dir / "train" / ids["train"] / "restart-1" / "resume.json").read_text())
    assert resumed["wandb_run_id"] == run_id and resumed["source"] == "save_dir"

    # the sync stage ran after the train job ended, on its own partition, and appended the second segment
    train_acct = local_slurm.wait_for_accounting(ids["train"], "COMPLETED", fields=("End",))
    sync_acct = local_slurm.wait_for_accounting(ids["sync"], "COMPLETED", fields=("Partition", "Start"))
    assert sync_acct["Start"] >= train_acct["End"] and sync_acct["Partition"] == internet, (train_acct, sync_acct)
    made = calls.read_text().splitlines()
    assert made == [f"sync --include-offline --mark-synced {first['offline_run']}",
                    f"sync --include-offline --mark-synced --append --id {run_id} {second['offline_run']}"], made

    # the key travelled in the environment only: no file of the chain holds it
    leaked = [str(p) for p in chain_dir.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []

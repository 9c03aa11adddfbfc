"""Preemption and requeue of the train stage on the real local Slurm with 2-node Ray jobs: the
warning signal (`scancel --signal=USR2`), a bare `scontrol requeue`, a half-written
checkpoint, the restart cap, two requeues in a row with a dependent job waiting.

The entrypoint is a stand-in trainer (tests/standins/ckpt_trainer.py) that saves a checkpoint
in the real Megatron layout every interval and records the --load / --ckpt-step it got."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.test_chain import cli, wait_chain_final

pytestmark = pytest.mark.integration

TIGHT_RAY = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
             "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3",
             "RAY_gcs_rpc_server_reconnect_timeout_s": "5"}


def prepare_inputs(root: Path) -> None:
    for d in ("slime", "Megatron-LM"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "pokerbench").mkdir(exist_ok=True)
    (root / "pokerbench" / "train.jsonl").write_text('{"instruction": "x", "output": "fold"}\n')
    (root / "Qwen3-8B").mkdir(exist_ok=True)
    (root / "Qwen3-8B" / "config.json").write_text("{}")
    (root / "Qwen3-8B" / "model.safetensors").write_bytes(b"w")
    (root / "Qwen3-8B_torch_dist" / "release").mkdir(parents=True, exist_ok=True)
    (root / "Qwen3-8B_torch_dist" / "release" / "common.pt").write_bytes(b"x")
    (root / "Qwen3-8B_torch_dist" / "latest_checkpointed_iteration.txt").write_text("release")


def submit_train(tmp_path: Path, iterations: int = 6, interval_s: float = 1.0, extra_sets: tuple[str, ...] = (),
                 hold: Path | None = None) -> dict:
    prepare_inputs(tmp_path)
    entry = ["{python}", "-m", "tests.standins.ckpt_trainer", "--record", str(tmp_path / "record.jsonl"),
             "--iterations", str(iterations), "--interval-s", str(interval_s)]
    if hold:
        entry += ["--hold-while", str(hold)]
    sets = [f"paths.root={tmp_path}", "slurm.exclusive=false", "slurm.time=00:10:00", "slurm.max_restarts=3",
            f"stages.train.entrypoint={json.dumps(entry)}", f"stages.train.working_dir={Path(__file__).resolve().parents[2]}",
            "stages.train.preflight=false", "ray.object_store_memory=100000000", "ray.ready_timeout_s=120",
            f"ray.health_check={json.dumps(TIGHT_RAY)}", *extra_sets]
    args = ["--profile", "smoke", "--nodes", "2", "--stages", "train", "--json"]
    for item in sets:
        args += ["--set", item]
    proc = cli("cluster.submit", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def records(tmp_path: Path) -> list[dict]:
    path = tmp_path / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def saved(tmp_path: Path) -> int:
    tracker = tmp_path / "Qwen3-8B_slime" / "latest_checkpointed_iteration.txt"
    return int(tracker.read_text()) if tracker.exists() else 0


def wait_for(cond, what: str, chain: dict, tmp_path: Path, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    logs = cli("cluster.logs", chain["chain_id"], cwd=tmp_path).stdout[-4000:]
    pytest.fail(f"waited {deadline_s} s for {what}; records={records(tmp_path)}\n--- logs ---\n{logs}")


def run_dirs(chain: dict) -> list[Path]:
    job = chain["stages"][-1]["job_id"]
    return sorted((Path(chain["chain_dir"]) / "train" / job).glob("restart-*"))


def interrupt_and_check_resume(tmp_path: Path, chain: dict, action: list[str], restarts: int) -> dict:
    """Wait for a checkpoint, interrupt the job with `action`, and check the next run resumed
    from the newest complete checkpoint."""
    wait_for(lambda: len(records(tmp_path)) == restarts and saved(tmp_path) >= records(tmp_path)[-1]["resumed_from"] + 2,
             f"run {restarts - 1} to save two new checkpoints", chain, tmp_path)
    before = len(records(tmp_path))
    subprocess.run(action, check=True)
    wait_for(lambda: len(records(tmp_path)) > before, f"the trainer to start again after {action}", chain, tmp_path)
    latest = records(tmp_path)[-1]
    assert latest["restart"] == str(restarts), latest
    assert latest["load"] == str(tmp_path / "Qwen3-8B_slime"), latest
    assert latest["resumed_from"] >= 2 and latest["gpus"] == 8, latest
    return latest


def test_warning_signal_requeues_and_resumes_from_newest_checkpoint(local_slurm, tmp_path):
    chain = submit_train(tmp_path)
    job = chain["stages"][-1]["job_id"]
    latest = interrupt_and_check_resume(tmp_path, chain, ["scancel", "--signal=USR2", job], restarts=1)
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=180)
    train = status["stages"][-1]
    assert train["state"] == "COMPLETED" and train["restarts"] == 1, status
    assert saved(tmp_path) == 6
    first = records(tmp_path)[0]
    assert first["load"] is None and first["resumed_from"] == 0  # fresh start: no checkpoint yet
    resume = json.loads((run_dirs(chain)[1] / "resume.json").read_text())
    assert resume["source"] == "save_dir" and resume["restart"] == 1
    assert resume["checkpoint"].endswith(f"iter_{latest['resumed_from']:07d}")
    assert [d.name for d in run_dirs(chain)] == ["restart-0", "restart-1"]
    # every checkpoint written is complete: nothing lost or corrupted across the requeue
    for it in range(1, 7):
        assert (tmp_path / "Qwen3-8B_slime" / f"iter_{it:07d}" / ".metadata").is_file()
    logs = cli("cluster.logs", chain["chain_id"], cwd=tmp_path).stdout
    assert "SIGUSR2" in logs and "@r1]" in logs
    text = cli("cluster.status", chain["chain_id"], cwd=tmp_path).stdout
    assert f"train run 1: resumed from iter_{latest['resumed_from']:07d} [save_dir]" in text, text


def test_bare_scontrol_requeue_recovers_from_disk_alone(local_slurm, tmp_path):
    chain = submit_train(tmp_path)
    job = chain["stages"][-1]["job_id"]
    interrupt_and_check_resume(tmp_path, chain, ["scontrol", "requeue", job], restarts=1)
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=180)
    assert status["stages"][-1]["state"] == "COMPLETED" and status["stages"][-1]["restarts"] == 1, status


def test_half_written_checkpoint_is_skipped(local_slurm, tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("")
    chain = submit_train(tmp_path, iterations=3, interval_s=0.5, hold=hold)
    job = chain["stages"][-1]["job_id"]
    wait_for(lambda: saved(tmp_path) == 3, "three checkpoints", chain, tmp_path)
    save_dir = tmp_path / "Qwen3-8B_slime"
    # the job dies while writing iteration 4: its dir has shards but no .metadata, and the
    # tracker already names it (and a later iteration's dir exists without any tracker update)
    (save_dir / "iter_0000004").mkdir()
    (save_dir / "iter_0000004" / "__0_0.distcp").write_bytes(b"partial")
    (save_dir / "latest_checkpointed_iteration.txt").write_text("5")
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for(lambda: len(records(tmp_path)) == 2, "the restart", chain, tmp_path)
    second = records(tmp_path)[1]
    assert second["load"] == str(save_dir) and second["ckpt_step"] == 3 and second["resumed_from"] == 3, second
    hold.unlink()
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=180)
    assert status["stages"][-1]["state"] == "COMPLETED", status


def test_two_requeues_in_a_row_while_a_dependent_waits(local_slurm, tmp_path):
    chain = submit_train(tmp_path, iterations=10, interval_s=1.0)
    job = chain["stages"][-1]["job_id"]
    marker = tmp_path / "dependent-ran"
    dependent = local_slurm.sbatch(f"--dependency=afterok:{job}", "--kill-on-invalid-dep=yes",
                                   f"--output={tmp_path}/dependent.out", "--wrap", f"touch {marker}")
    interrupt_and_check_resume(tmp_path, chain, ["scancel", "--signal=USR2", job], restarts=1)
    assert local_slurm.job_state(dependent) == "PENDING"
    interrupt_and_check_resume(tmp_path, chain, ["scontrol", "requeue", job], restarts=2)
    assert local_slurm.job_state(dependent) == "PENDING"
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=240)
    assert status["stages"][-1]["state"] == "COMPLETED" and status["stages"][-1]["restarts"] == 2, status
    local_slurm.wait_for_job(dependent, "COMPLETED", timeout=60)
    assert marker.exists()
    starts = [r["resumed_from"] for r in records(tmp_path)]
    assert starts[0] == 0 and starts[1] < starts[2], starts  # each run continued from the one before


def test_restart_cap_stops_with_a_clear_final_state(local_slurm, tmp_path):
    """The time limit coming again and again: the warning signal requeues until
    slurm.max_restarts, then the job is left to end."""
    chain = submit_train(tmp_path, iterations=10_000, interval_s=1.0,
                         extra_sets=("slurm.max_restarts=1", "slurm.time=00:01:00", "slurm.signal_grace_s=40"))
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=300)
    train = status["stages"][-1]
    assert train["state"] in ("FAILED", "TIMEOUT") and train["restarts"] == 1, status
    logs = cli("cluster.logs", chain["chain_id"], cwd=tmp_path).stdout
    assert "not requeued" in logs.lower() or "not requeueing" in logs.lower(), logs[-3000:]
    # the second run may be warned before its trainer even starts (its time limit is short)
    assert 1 <= len(records(tmp_path)) <= 2

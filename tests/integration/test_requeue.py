"""Preemption and requeue of the train stage on the real local Slurm with 2-node Ray jobs: the
warning signal (`scancel --signal=USR2`), a bare `scontrol requeue`, a half-written
checkpoint, the restart cap, two requeues in a row with a dependent job waiting.

The entrypoint is a stand-in trainer (tests/standins/ckpt_trainer.py) that saves a checkpoint
in the real Megatron layout every interval and records the --load / --ckpt-step it got.

Every interruption waits on a condition (a run's trainer started, it saved new checkpoints) and
is then sent by the test; trainers that must not finish before that hold after their last
iteration until the test removes a hold file. So nothing here depends on how fast the machine
brings a run up; the deadlines only bound a wait that would otherwise never end."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench._requeue_setup import records, saved  # the job bench/requeue.py times too
from bench._requeue_setup import submit_train as submit_train_job
from tests.integration.test_chain import cli, wait_chain_final
from tests.waiting import wait_for as wait_until

pytestmark = pytest.mark.integration

# A bound on one wait for a condition (a requeued run ~30 s of Slurm's own delay plus a Ray
# bring-up): generous, because a busy machine is slow, not wrong.
WAIT_S = 300


_SUBMITTED: list[str] = []  # train jobs of the running test, cancelled when it ends


@pytest.fixture(autouse=True)
def _cancel_leftover_jobs():
    """A test that fails mid-way must not leave its 2-node job (held, or with 10_000
    iterations) holding nodes until its time limit: later tests would queue behind it."""
    yield
    if _SUBMITTED:
        subprocess.run(["scancel", *_SUBMITTED], check=False, capture_output=True)
        _SUBMITTED.clear()


def submit_train(tmp_path: Path, iterations: int = 6, interval_s: float = 1.0, extra_sets: tuple[str, ...] = (),
                 hold: Path | None = None) -> dict:
    """bench/_requeue_setup.py's job, its ids noted for _cancel_leftover_jobs."""
    chain = submit_train_job(tmp_path, iterations, interval_s, extra_sets, hold)
    _SUBMITTED.extend(s["job_id"] for s in chain["stages"] if s["job_id"])
    return chain


def wait_for(cond, what: str, chain: dict, tmp_path: Path, deadline_s: float = WAIT_S) -> None:
    """Poll cond until it holds; on the deadline fail with the trainer's records and the chain's logs."""
    def tails() -> str:
        logs = cli("cluster.logs", chain["chain_id"], cwd=tmp_path).stdout[-4000:]
        return f"; records={records(tmp_path)}\n--- logs ---\n{logs}"
    wait_until(cond, what, deadline_s, tails, poll_s=0.2)


def held(tmp_path: Path) -> Path:
    """A hold file: the trainer waits after its last iteration while it exists, so the job
    cannot end before the test has interrupted it (however fast or slow the machine is)."""
    hold = tmp_path / "hold"
    hold.touch()
    return hold


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
    hold = held(tmp_path)
    chain = submit_train(tmp_path, hold=hold)
    job = chain["stages"][-1]["job_id"]
    latest = interrupt_and_check_resume(tmp_path, chain, ["scancel", "--signal=USR2", job], restarts=1)
    hold.unlink()
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=WAIT_S)
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
    hold = held(tmp_path)
    chain = submit_train(tmp_path, hold=hold)
    job = chain["stages"][-1]["job_id"]
    interrupt_and_check_resume(tmp_path, chain, ["scontrol", "requeue", job], restarts=1)
    hold.unlink()
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=WAIT_S)
    assert status["stages"][-1]["state"] == "COMPLETED" and status["stages"][-1]["restarts"] == 1, status


def test_half_written_checkpoint_is_skipped(local_slurm, tmp_path):
    hold = held(tmp_path)
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
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=WAIT_S)
    assert status["stages"][-1]["state"] == "COMPLETED", status


def test_two_requeues_in_a_row_while_a_dependent_waits(local_slurm, tmp_path):
    hold = held(tmp_path)
    chain = submit_train(tmp_path, iterations=10, interval_s=1.0, hold=hold)
    job = chain["stages"][-1]["job_id"]
    marker = tmp_path / "dependent-ran"
    dependent = local_slurm.sbatch(f"--dependency=afterok:{job}", "--kill-on-invalid-dep=yes",
                                   f"--output={tmp_path}/dependent.out", "--wrap", f"touch {marker}")
    interrupt_and_check_resume(tmp_path, chain, ["scancel", "--signal=USR2", job], restarts=1)
    assert local_slurm.job_state(dependent) == "PENDING"
    interrupt_and_check_resume(tmp_path, chain, ["scontrol", "requeue", job], restarts=2)
    assert local_slurm.job_state(dependent) == "PENDING"
    hold.unlink()
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=WAIT_S)
    assert status["stages"][-1]["state"] == "COMPLETED" and status["stages"][-1]["restarts"] == 2, status
    local_slurm.wait_for_job(dependent, "COMPLETED", timeout=WAIT_S)
    assert marker.exists()
    starts = [r["resumed_from"] for r in records(tmp_path)]
    assert starts[0] == 0 and starts[1] < starts[2], starts  # each run continued from the one before


def test_restart_cap_stops_with_a_clear_final_state(local_slurm, tmp_path):
    """The time limit coming again and again: the warning signal requeues until
    slurm.max_restarts, then the job is left to end.

    The train job asks Slurm for that warning (`--signal=USR2@<slurm.signal_grace_s>`); the test
    sends the same signal itself (`scancel --signal=USR2`, what Slurm delivers to the steps) once
    each run's trainer has started, instead of a one-minute time limit whose warning could come
    before a slow machine had started the trainer at all."""
    chain = submit_train(tmp_path, iterations=10_000, interval_s=1.0,
                         extra_sets=("slurm.max_restarts=1", "slurm.signal_grace_s=40"))
    train_stage = chain["stages"][-1]
    assert train_stage["slurm"]["signal"] == "USR2@40", train_stage["slurm"]  # the time limit's warning
    job = train_stage["job_id"]
    for run in (0, 1):
        wait_for(lambda n=run + 1: len(records(tmp_path)) == n, f"run {run}'s trainer to start", chain, tmp_path)
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
    status = wait_chain_final(tmp_path, chain["chain_id"], deadline_s=WAIT_S)
    train = status["stages"][-1]
    assert train["state"] == "FAILED" and train["restarts"] == 1, status
    logs = cli("cluster.logs", chain["chain_id"], cwd=tmp_path).stdout
    assert "not requeueing: restart 1 reached slurm.max_restarts = 1" in logs, logs[-3000:]
    assert [r["restart"] for r in records(tmp_path)] == ["0", "1"], records(tmp_path)

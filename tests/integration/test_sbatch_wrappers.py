"""Generated sbatch scripts on the real local Slurm: the chain `--emit-sbatch` writes runs with
real `sbatch` and `afterok` on job ids; a requeueable script's trap requeues on the batch warning
signal (`scancel --signal=USR1 --batch`, what `--signal=B:USR1@N` delivers) and the job restarts
under the same id while a dependent job keeps waiting on it.

The train step here is a stand-in (STANDIN_STEP, named as such): a real process that records each
run's restart count and, on the first run, waits until Slurm stops it. The Ray launcher itself is
tested elsewhere."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cluster.profile.checks import run_checks, scale_topology
from cluster.outputs import check_hf_dir, check_jsonl, check_megatron_dir
from cluster.plan import build_plan
from cluster.profile import load_profile
from cluster.sbatch_render import emit_sbatch, render_sbatch_script
from tests.integration.conftest import log_tails
from tests.integration.test_chain import standin_sets

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

STANDIN_STEP = """\
import os, pathlib, signal, sys
mark = pathlib.Path(sys.argv[1]) / f"run-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
mark.write_text(os.environ.get('SLURM_JOB_ID', ''))
if mark.name == 'run-0':
    signal.sigwait({signal.SIGTERM})   # the first run lasts until the requeue stops it
    sys.exit(143)
"""


def make_plan(root: Path, *sets: str, stages=("data", "model", "convert", "train")):
    profile = load_profile("smoke", sets=[*standin_sets(root), f"paths.log_dir={root / 'logs'}", *sets], env={})
    profile = scale_topology(profile, 1, None, env={})
    run_checks(profile)
    return build_plan(profile, stages, chain_id="emit-test", strict_paths=False)


def test_emitted_chain_runs_with_afterok_on_job_ids(local_slurm, tmp_path):
    plan = make_plan(tmp_path, stages=("data", "model", "convert"))
    emit_sbatch(plan, tmp_path / "emit")
    run = local_slurm.run("bash", str(tmp_path / "emit" / "submit-chain.sh"))
    ids = dict(word.split("=") for word in run.stdout.split(";")[0].split(": ")[1].split())
    assert set(ids) == {"data", "model", "convert"}
    logs = [Path(plan.chain_dir)]
    for stage in ("data", "model", "convert"):
        local_slurm.wait_for_job(ids[stage], "COMPLETED", timeout=180, logs=logs)
    profile_paths = {k: v for k, v in (s.split("=", 1) for s in standin_sets(tmp_path))}
    root = Path(profile_paths["paths.root"])
    assert check_jsonl(root / "pokerbench" / "train.jsonl")[0]
    assert check_hf_dir(root / "Qwen3-8B")[0] and check_megatron_dir(root / "Qwen3-8B_torch_dist")[0]
    convert_dir = Path(plan.chain_dir, "convert", ids["convert"], "restart-0")
    tasks = sorted(p.name for p in convert_dir.glob("task-*.out"))
    assert len(tasks) == 4 and all(name.startswith(f"task-{t}-n") for t, name in enumerate(tasks)), tasks
    assert "step ended with exit code 0" in (convert_dir / "batch.out").read_text()
    dep = local_slurm.run("sacct", "-n", "-X", "-P", "-j", ids["convert"], "-o", "Submit,Start").stdout.split("|")
    model_end = local_slurm.run("sacct", "-n", "-X", "-P", "-j", ids["model"], "-o", "End").stdout.strip()
    assert dep[1].strip() >= model_end, f"convert started {dep[1]} before model ended {model_end}"


def test_warning_signal_requeues_under_the_same_id_and_dependents_wait(local_slurm, tmp_path):
    plan = make_plan(tmp_path, "slurm.max_restarts=2", stages=("train",))
    marks = tmp_path / "marks"
    marks.mkdir()
    standin = (sys.executable, "-c", STANDIN_STEP, str(marks))
    stage = replace(plan.stage("train"), argv=standin, step=standin,
                    slurm={**plan.stage("train").slurm, "exclusive": False, "gpus-per-node": 1})
    script = tmp_path / "train.sbatch"
    script.write_text(render_sbatch_script(stage, plan))
    Path(plan.chain_dir, "train").mkdir(parents=True)
    job = local_slurm.sbatch(str(script))
    after = local_slurm.sbatch("--dependency=afterok:" + job, "--kill-on-invalid-dep=yes", "--wrap=true", f"--output={tmp_path}/after-%j.out")
    logs = [Path(plan.chain_dir)]
    local_slurm.wait_for_job(job, "RUNNING", timeout=120, logs=logs)
    wait_file(marks / "run-0", local_slurm, job, logs)
    local_slurm.run("scancel", "--signal=USR1", "--batch", job)
    wait_file(marks / "run-1", local_slurm, job, logs, timeout=180)
    assert (marks / "run-1").read_text() == job  # same job id after the requeue
    local_slurm.wait_for_job(job, "COMPLETED", timeout=120, logs=logs)
    local_slurm.wait_for_job(after, "COMPLETED", timeout=120)  # the dependent waited, then ran
    first = Path(plan.chain_dir, "train", job, "restart-0", "batch.out").read_text()
    assert "warning signal: job" in first and "restart 0 of 2" in first
    second = Path(plan.chain_dir, "train", job, "restart-1", "batch.out").read_text()
    assert "step ended with exit code 0" in second
    restarts = local_slurm.run("sacct", "-n", "-X", "-P", "-D", "-j", job, "-o", "State").stdout.split()
    assert restarts[0] == "REQUEUED" and restarts[-1] == "COMPLETED", restarts


def test_hand_submitted_data_wrapper_runs_the_stage(local_slurm, tmp_path):
    sets = [f"paths.log_dir={tmp_path / 'logs'}", *standin_sets(tmp_path)]
    args = [w for item in sets for w in ("--set", item)]
    job = local_slurm.sbatch(f"--export=ALL,HOLDEM_ROOT={ROOT},HOLDEM_PYTHON={sys.executable}",
                             f"--output={tmp_path}/slurm-%j.out", str(ROOT / "scripts/sbatch/data.sbatch"),
                             "--profile", "smoke", *args)
    chain = tmp_path / "logs" / f"smoke-sbatch-{job}"
    local_slurm.wait_for_job(job, "COMPLETED", timeout=180, logs=[tmp_path / f"slurm-{job}.out", chain])
    assert check_jsonl(tmp_path / "pokerbench" / "train.jsonl")[0]
    run_dir = chain / "data" / job / "restart-0"
    (task,) = run_dir.glob("task-0-n*.out")  # one task, on whichever node Slurm picked
    assert f"stand-in data on {task.stem.split('-')[-1]}" in task.read_text()
    assert f"logs in {run_dir}/" in (tmp_path / f"slurm-{job}.out").read_text()


def wait_file(path: Path, local_slurm, job: str, logs, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {path} (job {job} state "
                         f"{local_slurm.job_state(job)}){log_tails(logs)}")

"""The rendered job scripts and scripts/sbatch/*.sbatch executed by real bash, with stand-ins for
`srun` and `scontrol` (see conftest.standin_bin): the step runs in the background, the warning
signal's trap requeues until max_restarts, exit codes pass through. Real Slurm:
tests/integration/test_sbatch_wrappers.py."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from cluster.sbatch_render import render_sbatch_script
from tests.unit.ops.conftest import ROOT, Ready, clean_env
from tests.unit.ops.test_sbatch_render import make_plan
from tests.waiting import wait_for

WRAPPERS = sorted((ROOT / "scripts" / "sbatch").glob("*.sbatch"))




def job_env(ready: Ready, standin_bin: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(**ready.env, PATH=f"{standin_bin}:{os.environ['PATH']}", STANDIN_DIR=str(tmp_path),
                     SLURM_JOB_ID="777", SLURM_JOB_NUM_NODES="1", SLURM_GPUS_ON_NODE="4", **extra)


def start(argv, env, cwd=ROOT) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 30.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"script did not end within {timeout} s; stdout {out!r} stderr {err!r}")
    return proc.returncode, out, err


def batch_log(chain_dir: str, stage: str, restart: int = 0) -> str:
    return Path(chain_dir, stage, "777", f"restart-{restart}", "batch.out").read_text()


@pytest.fixture
def train_script(ready, tmp_path):
    _, plan = make_plan(ready)
    path = tmp_path / "train.sbatch"
    path.write_text(render_sbatch_script(plan.stage("train"), plan))
    return plan, path


def test_warning_signal_requeues_the_job(ready, standin_bin, tmp_path, train_script):
    plan, script = train_script
    proc = start(["bash", str(script)], job_env(ready, standin_bin, tmp_path))
    wait_for(lambda: (tmp_path / "srun.pid").exists(), "the srun stand-in to start")
    argv = (tmp_path / "srun.argv").read_text().splitlines()
    assert argv[1:] == ["--ntasks-per-node=1", *plan.stage("train").argv]
    assert argv[0] == f"--output={plan.chain_dir}/train/777/restart-0/task-%t-%N.out"
    proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@120 delivers to the batch shell
    code, out, _ = finish(proc)
    assert (tmp_path / "scontrol.log").read_text().splitlines() == ["requeue 777"]
    assert code == 143  # the step was stopped by the (stand-in) requeue
    log = batch_log(plan.chain_dir, "train")
    assert "warning signal: job 777 nears its end (restart 0 of 3)" in log
    assert "step ended with exit code 143" in log
    assert f"logs in {plan.chain_dir}/train/777/restart-0/" in out


def test_no_requeue_once_max_restarts_are_used(ready, standin_bin, tmp_path, train_script):
    plan, script = train_script
    proc = start(["bash", str(script)], job_env(ready, standin_bin, tmp_path, SLURM_RESTART_COUNT="3"))
    pid = int(wait_for(lambda: (tmp_path / "srun.pid").exists() and (tmp_path / "srun.pid").read_text(), "srun stand-in"))
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "not requeueing" in batch_log(plan.chain_dir, "train", 3), "the trap's log line")
    assert proc.poll() is None  # the step keeps running until Slurm's time limit ends it
    os.kill(pid, signal.SIGTERM)  # what the time limit would do
    code, _, _ = finish(proc)
    assert code == 143
    assert not (tmp_path / "scontrol.log").exists()


@pytest.mark.parametrize("exit_code", [0, 3])
def test_a_stage_exit_code_is_the_job_exit_code(ready, standin_bin, tmp_path, exit_code):
    _, plan = make_plan(ready, env_extra={"PROMPT_DATA": str(tmp_path / "p.jsonl")})
    script = tmp_path / "data.sbatch"
    script.write_text(render_sbatch_script(plan.stage("data"), plan))
    proc = start(["bash", str(script)], job_env(ready, standin_bin, tmp_path, STANDIN_SRUN_EXIT=str(exit_code)))
    code, _, _ = finish(proc)
    assert code == exit_code
    argv = (tmp_path / "srun.argv").read_text().splitlines()
    assert argv[1:] == list(plan.stage("data").argv)
    env = dict(line.split("=", 1) for line in (tmp_path / "srun.env").read_text().splitlines() if "=" in line)
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT) and env["PYTHONUNBUFFERED"] == "1"


def test_a_failing_scontrol_requeue_is_logged_and_the_step_keeps_running(ready, standin_bin, tmp_path, train_script):
    plan, script = train_script
    (standin_bin / "scontrol").write_text('#!/bin/bash\necho "scontrol: error: Requeue of job disabled" >&2; exit 1\n')
    proc = start(["bash", str(script)], job_env(ready, standin_bin, tmp_path))
    pid = int(wait_for(lambda: (tmp_path / "srun.pid").exists() and (tmp_path / "srun.pid").read_text(), "srun stand-in"))
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "scontrol requeue 777 failed" in batch_log(plan.chain_dir, "train"), "the failure's log line")
    assert proc.poll() is None
    os.kill(pid, signal.SIGTERM)
    code, _, _ = finish(proc)
    assert code == 143


def test_a_job_script_outside_slurm_refuses(ready, tmp_path, train_script):
    _, script = train_script
    run = subprocess.run(["bash", str(script)], env=clean_env(), capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and run.stderr.startswith("error: this is a Slurm batch script")


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda p: p.name)
def test_wrappers_pass_bash_n_and_carry_defaults(wrapper):
    assert subprocess.run(["bash", "-n", str(wrapper)]).returncode == 0
    text = wrapper.read_text()
    assert "set -euo pipefail" in text and "#SBATCH --ntasks-per-node=" in text and "#SBATCH --time=" in text
    assert f"-m cluster.sbatch_render job-script --stage {wrapper.stem}" in text


def test_train_wrapper_defaults_are_requeueable():
    lines = (ROOT / "scripts/sbatch/train.sbatch").read_text().splitlines()
    for option in ("--requeue", "--signal=B:USR1@120", "--gpus-per-node=4", "--ntasks-per-node=1", "--exclusive"):
        assert f"#SBATCH {option}" in lines


def test_train_wrapper_hands_over_to_the_rendered_script(ready, standin_bin, tmp_path):
    env = job_env(ready, standin_bin, tmp_path, SLURM_SUBMIT_DIR=str(ROOT))
    argv = ["bash", str(ROOT / "scripts/sbatch/train.sbatch"), "--profile", "smoke",
            *(w for s in ready.sets for w in ("--set", s))]
    proc = start(argv, env, cwd=tmp_path)
    wait_for(lambda: (tmp_path / "srun.pid").exists(), "the srun stand-in to start")
    chain = ready.log_dir / "smoke-sbatch-777"
    words = (tmp_path / "srun.argv").read_text().splitlines()
    assert words[1:4] == ["--ntasks-per-node=1", words[2], "-m"] and words[4:] == [
        "cluster.launch", "--spec", f"{chain}/train/launch.json"]
    assert (chain / "train" / "launch.json").is_file()
    proc.send_signal(signal.SIGUSR1)  # the wrapper exec'd the rendered script: same PID, its trap
    code, _, _ = finish(proc)
    assert code == 143 and (tmp_path / "scontrol.log").read_text().strip() == "requeue 777"


def test_data_wrapper_with_complete_output_runs_nothing(ready, standin_bin, tmp_path):
    env = job_env(ready, standin_bin, tmp_path, SLURM_SUBMIT_DIR=str(ROOT))
    run = subprocess.run(["bash", str(ROOT / "scripts/sbatch/data.sbatch"), "--profile", "smoke",
                          *(w for s in ready.sets for w in ("--set", s))],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "nothing to run" in run.stderr and not (tmp_path / "srun.argv").exists()


def test_wrapper_outside_the_checkout_says_so(ready, standin_bin, tmp_path):
    env = job_env(ready, standin_bin, tmp_path, SLURM_SUBMIT_DIR=str(tmp_path))
    run = subprocess.run(["bash", str(ROOT / "scripts/sbatch/train.sbatch"), "--profile", "smoke"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "is not a holdem-cluster checkout" in run.stderr and "HOLDEM_ROOT" in run.stderr


def test_wrapper_bad_profile_fails_the_job_with_one_line(ready, standin_bin, tmp_path):
    env = job_env(ready, standin_bin, tmp_path, HOLDEM_ROOT=str(ROOT))
    run = subprocess.run(["bash", str(ROOT / "scripts/sbatch/train.sbatch"), "--profile", "nope"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "unknown profile 'nope'" in run.stderr
    assert not (tmp_path / "srun.argv").exists()

"""scripts/run-qwen3-8B-finetuned.sh, the seed's entry: bash only, the profile from the seed's
variables, WANDB_KEY only in the launcher's environment, a one-node Slurm identity, and cleanup
of exactly the process it started. The launcher itself is replaced by a stand-in interpreter
(HOLDEM_PYTHON) that records `-m cluster.launch` instead of starting Ray on the host network."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.ops.conftest import ROOT, Ready, clean_env, write_exe
from tests.unit.ops.test_job_scripts import finish, start, wait_for

SCRIPT = ROOT / "scripts" / "run-qwen3-8B-finetuned.sh"
SECRET = "wandb-test-secret-0123456789"


@pytest.fixture
def standin_python(tmp_path) -> Path:
    """Interpreter stand-in: `-m cluster.launch ...` records argv/env and waits for a signal (or
    exits with STANDIN_LAUNCH_EXIT); anything else runs the real interpreter."""
    path = write_exe(tmp_path / "standin-python", f"""#!/bin/bash
if [ "${{1:-}}" = -m ] && [ "${{2:-}}" = cluster.launch ]; then
  printf '%s\\n' "$@" > "$STANDIN_DIR/launch.argv"
  env > "$STANDIN_DIR/launch.env"
  if [ -n "${{STANDIN_LAUNCH_EXIT:-}}" ]; then exit "$STANDIN_LAUNCH_EXIT"; fi
  sleep infinity &
  sleeper=$!
  trap 'kill "$sleeper"; echo TERM > "$STANDIN_DIR/launch.term"; exit 143' TERM
  echo $$ > "$STANDIN_DIR/launch.pid.tmp" && mv "$STANDIN_DIR/launch.pid.tmp" "$STANDIN_DIR/launch.pid"
  wait "$sleeper"
  exit 0
fi
exec {sys.executable} "$@"
""")
    yield path
    pid_file = tmp_path / "launch.pid"
    if pid_file.exists():  # a failed test may leave the stand-in waiting: stop it by its PID
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def seed_env(ready: Ready, standin_python: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = clean_env(**{**ready.env, "HOLDEM_PYTHON": str(standin_python), "STANDIN_DIR": str(tmp_path),
                       "RUN_PROFILE": "smoke", "WANDB_KEY": SECRET, **extra})
    env.pop("PYTHONPATH")  # the script sets it itself
    return env


def sets(ready: Ready) -> list[str]:
    return [w for s in ready.sets for w in ("--set", s)]


@pytest.mark.parametrize("shell", ["zsh", "sh"])
def test_refuses_zsh_and_sh(shell, tmp_path):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    run = subprocess.run([shell, str(SCRIPT)], capture_output=True, text=True, env=clean_env(), timeout=30)
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "must run under bash, not zsh" in run.stderr
    assert run.stderr.count("\n") == 1


def test_runs_the_launcher_for_one_node_with_the_key_only_in_its_environment(ready, standin_python, tmp_path):
    env = seed_env(ready, standin_python, tmp_path, STANDIN_LAUNCH_EXIT="0", LOAD_CKPT=ready.env["REF_LOAD"])
    run = subprocess.run(["bash", str(SCRIPT), *sets(ready)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    argv = (tmp_path / "launch.argv").read_text().splitlines()
    assert argv[:3] == ["-m", "cluster.launch", "--spec"]
    spec = json.loads(Path(argv[3]).read_text())
    assert spec["nodes"] == 1 and spec["expected_gpus"] == 4
    assert f"--load {ready.env['REF_LOAD']}" in " ".join(spec["entrypoint"])  # LOAD_CKPT reached slime
    launch_env = dict(line.split("=", 1) for line in (tmp_path / "launch.env").read_text().splitlines() if "=" in line)
    assert launch_env["WANDB_API_KEY"] == SECRET and "WANDB_KEY" not in launch_env
    assert launch_env["SLURM_NODEID"] == "0" and launch_env["SLURM_JOB_NUM_NODES"] == "1"
    assert launch_env["SLURM_JOB_NODELIST"] == socket.gethostname().split(".")[0]
    assert launch_env["SLURM_JOB_ID"].isdigit() and launch_env["SLURM_JOB_ID"].startswith("9")
    assert launch_env["PYTHONPATH"].split(":")[0] == str(ROOT)
    assert SECRET not in " ".join(argv) and SECRET not in run.stdout + run.stderr
    for path in ready.log_dir.rglob("*"):  # nothing the run wrote holds the key
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def test_the_launcher_exit_code_is_the_script_exit_code(ready, standin_python, tmp_path):
    env = seed_env(ready, standin_python, tmp_path, STANDIN_LAUNCH_EXIT="3")
    run = subprocess.run(["bash", str(SCRIPT), *sets(ready)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 3


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cleanup_stops_only_what_it_started(ready, standin_python, tmp_path, sig, code):
    bystander = subprocess.Popen(["sleep", "300"])  # ours, not the script's: must survive
    try:
        proc = start(["bash", str(SCRIPT), *sets(ready)], seed_env(ready, standin_python, tmp_path), cwd=tmp_path)
        pid = int(wait_for(lambda: (tmp_path / "launch.pid").exists() and (tmp_path / "launch.pid").read_text(),
                           "the launcher stand-in to start"))
        proc.send_signal(sig)
        rc, _, err = finish(proc)
        assert rc == code
        assert (tmp_path / "launch.term").read_text().strip() == "TERM"
        assert f"stopping the launcher (pid {pid})" in err
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3],
                 f"launcher stand-in {pid} to end")
        assert bystander.poll() is None
    finally:
        bystander.terminate()
        bystander.wait(timeout=10)


@pytest.mark.parametrize("extra,why", [({"RUN_PROFILE": "nope"}, "unknown profile 'nope'"),
                                       ({"PROMPT_DATA": "/nonexistent/train.jsonl"}, "/nonexistent/train.jsonl")])
def test_bad_input_is_one_line_and_starts_nothing(ready, standin_python, tmp_path, extra, why):
    env = seed_env(ready, standin_python, tmp_path, **extra)
    run = subprocess.run(["bash", str(SCRIPT), *sets(ready)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and run.stderr.startswith("error:") and why in run.stderr
    assert not (tmp_path / "launch.argv").exists()


def test_passes_bash_n_and_shellcheck():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", str(SCRIPT), *map(str, (ROOT / "scripts/sbatch").glob("*.sbatch"))],
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout

"""cluster/sbatch_render.py: plan stages -> batch scripts (pure), emit_sbatch, the in-allocation
entry (job-script, launch-spec)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cluster.profile.checks import run_checks, scale_topology
from cluster.errors import ConfigError
from cluster.plan import build_plan
from cluster.profile import load_profile
from cluster.sbatch_render import (
    PROJECT_ROOT, allocation, emit_sbatch, pick_chain_id, render_sbatch_options, render_sbatch_script,
    render_submit_chain,
)
from tests.unit.ops.conftest import ROOT, Ready, clean_env

PYXIS = {"runtime": "pyxis", "image": "nvcr.io#nvidia/pytorch:24.07-py3", "mounts": ["/data:/data:ro"],
         "env": {"HF_HOME": "/data/hf", "WANDB_API_KEY": None}}
APPTAINER = {"runtime": "apptainer", "image": "/images/slime.sif", "mounts": ["/data"], "env": {"HF_TOKEN": ""}}


def make_plan(ready: Ready, *sets: str, stages=("data", "model", "convert", "train"), env_extra=None, nodes=1,
              container=None):
    env = {**ready.env, **(env_extra or {})}
    sets = (*sets, *(f"container.{k}={json.dumps(v)}" for k, v in (container or {}).items()))
    profile = scale_topology(load_profile("smoke", sets=[*ready.sets, *sets], env=env), nodes, None, env={})
    run_checks(profile)
    return profile, build_plan(profile, stages, chain_id="chain-t", strict_paths=False)


def bash_n(text: str, tmp_path: Path) -> None:
    path = tmp_path / "script.sh"
    path.write_text(text)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", "-S", "info", str(path)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


def sbatch_lines(text: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in text.splitlines() if line.startswith("#SBATCH ")]


@pytest.mark.parametrize("container", [None, PYXIS, APPTAINER])
@pytest.mark.parametrize("stage", ["data", "model", "convert", "train"])
def test_every_generated_script_passes_bash_n(stage, container, ready, tmp_path):
    _, plan = make_plan(ready, env_extra={"PROMPT_DATA": str(tmp_path / "missing.jsonl")}, container=container)
    bash_n(render_sbatch_script(plan.stage(stage), plan), tmp_path)


def test_train_options_keep_their_names_and_requeue_on_a_batch_signal(ready):
    _, plan = make_plan(ready, "slurm.signal_grace_s=300", "slurm.extra={reservation: gpu-week}")
    lines = sbatch_lines(render_sbatch_script(plan.stage("train"), plan))
    assert "--job-name=holdem-train" in lines and "--nodes=1" in lines and "--ntasks-per-node=1" in lines
    assert "--gpus-per-node=4" in lines and "--time=01:00:00" in lines and "--reservation=gpu-week" in lines
    assert "--exclusive" in lines and "--requeue" in lines  # booleans bare
    assert "--signal=B:USR1@300" in lines  # to the batch shell, which traps it
    assert "--open-mode=append" in lines  # a requeued run must not truncate the log
    assert f"--output={plan.chain_dir}/train/slurm-%j.out" in lines
    assert f"--error={plan.chain_dir}/train/slurm-%j.out" in lines
    assert "--comment=holdem-chain=chain-t" in lines
    assert not any(line.startswith("--dependency") for line in lines)  # job ids: on submit-chain.sh's command line


def test_false_options_are_left_out_and_depending_stages_keep_kill_on_invalid_dep(ready, tmp_path):
    _, plan = make_plan(ready, env_extra={"HF_CHECKPOINT": str(tmp_path / "nohf")})
    data = sbatch_lines(render_sbatch_script(plan.stage("data"), plan))
    assert not any(line.startswith(("--exclusive", "--requeue", "--signal", "--gpus")) for line in data)
    convert = sbatch_lines(render_sbatch_script(plan.stage("convert"), plan))
    assert "--kill-on-invalid-dep=yes" in convert and "--ntasks-per-node=4" in convert


def test_train_runs_the_launcher_one_task_per_node_in_the_background(ready):
    _, plan = make_plan(ready)
    text = render_sbatch_script(plan.stage("train"), plan)
    step = next(line for line in text.splitlines() if line.startswith("srun "))
    assert step == (f'srun "${{srun_log[@]}}" --ntasks-per-node=1 {sys.executable} -m cluster.launch '
                    f"--spec {plan.chain_dir}/train/launch.json &")
    assert "trap on_warning USR1" in text and 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert "max_restarts=3" in text
    assert text.index("trap on_warning USR1") < text.index(step)  # trap set before the step starts
    assert "set -euo pipefail" in text


def test_the_trap_carries_max_restarts_and_only_the_train_stage_has_one(ready):
    _, plan = make_plan(ready, "slurm.max_restarts=5", env_extra={"PROMPT_DATA": "/nonexistent.jsonl"})
    assert "max_restarts=5" in render_sbatch_script(plan.stage("train"), plan)
    assert "trap on_warning" not in render_sbatch_script(plan.stage("data"), plan)


def test_stage_env_is_exported_and_pythonpath_keeps_the_project(ready, tmp_path):
    _, plan = make_plan(ready, env_extra={"REF_LOAD": str(tmp_path / "noref")})
    text = render_sbatch_script(plan.stage("convert"), plan)
    assert f'export PYTHONPATH={PROJECT_ROOT}"${{PYTHONPATH:+:$PYTHONPATH}}"' in text
    assert f'export PYTHONPATH={ready.root}/Megatron-LM:{ready.root}/slime":$PYTHONPATH"' in text


def test_pyxis_options_go_on_srun_and_the_host_python_becomes_python3(ready):
    _, plan = make_plan(ready, container=PYXIS)
    text = render_sbatch_script(plan.stage("train"), plan)
    step = next(line for line in text.splitlines() if line.startswith("srun "))
    assert ("--ntasks-per-node=1 '--container-image=nvcr.io#nvidia/pytorch:24.07-py3' "
            "--container-mounts=/data:/data:ro --container-env=HF_HOME,WANDB_API_KEY python3 -m cluster.launch") in step
    assert "export HF_HOME=/data/hf" in text and ': "${WANDB_API_KEY?' in text


def test_apptainer_wraps_the_step(ready):
    _, plan = make_plan(ready, container=APPTAINER)
    text = render_sbatch_script(plan.stage("train"), plan)
    step = next(line for line in text.splitlines() if line.startswith("srun "))
    assert "--ntasks-per-node=1 apptainer exec --nv --bind /data:/data /images/slime.sif python3 -m cluster.launch" in step
    assert 'export APPTAINERENV_HF_TOKEN="${HF_TOKEN}"' in text


def test_a_secret_in_a_stage_env_is_refused(ready):
    _, plan = make_plan(ready)
    stage = replace(plan.stage("train"), env={"WANDB_API_KEY": "abc"})
    with pytest.raises(ConfigError, match="WANDB_API_KEY looks like a secret"):
        render_sbatch_script(stage, plan)


def test_a_bad_env_name_in_a_stage_is_refused(ready):
    _, plan = make_plan(ready)
    with pytest.raises(ConfigError, match="not a valid environment variable name"):
        render_sbatch_script(replace(plan.stage("train"), env={"A-B": "1"}), plan)


def test_an_option_with_a_space_is_refused(ready):
    _, plan = make_plan(ready, "slurm.extra={reservation: 'two words'}")
    with pytest.raises(ConfigError, match="reservation=two words"):
        render_sbatch_options(plan.stage("train"), plan.chain_dir)


def test_bad_signal_in_the_plan_is_refused(ready):
    _, plan = make_plan(ready)
    stage = replace(plan.stage("train"), slurm={**plan.stage("train").slurm, "signal": "USR1@soon"})
    with pytest.raises(ConfigError, match="expected"):
        render_sbatch_options(stage, plan.chain_dir)


def test_emit_writes_only_running_stages_and_the_launch_spec(ready, tmp_path):
    _, plan = make_plan(ready)  # every input is complete: only train runs
    out = tmp_path / "emit"
    written = emit_sbatch(plan, out)
    assert [p.name for p in written] == ["launch.json", "train.sbatch", "submit-chain.sh"]
    assert written[0] == Path(plan.chain_dir, "train", "launch.json")  # where the step reads it, as on submission
    assert json.loads(written[0].read_text()) == plan.stage("train").launch.to_dict()
    text = (out / "train.sbatch").read_text()
    assert f"--spec {plan.chain_dir}/train/launch.json &" in text
    assert Path(plan.chain_dir, "train").is_dir()  # --output's directory exists before sbatch
    chain = (out / "submit-chain.sh").read_text()
    assert f"train_id=$(sbatch --parsable {out}/train.sbatch)" in chain
    for path in written[1:]:
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_emit_the_whole_chain_with_afterok_on_job_ids(ready, tmp_path):
    _, plan = make_plan(ready, env_extra={"PROMPT_DATA": str(tmp_path / "p.jsonl"), "HF_CHECKPOINT": str(tmp_path / "hf"),
                                          "REF_LOAD": str(tmp_path / "ref")}, container=PYXIS)
    out = tmp_path / "emit"
    names = [p.name for p in emit_sbatch(plan, out)]
    assert names == ["data.sbatch", "model.sbatch", "convert.sbatch", "launch.json", "train.sbatch", "submit-chain.sh"]
    chain = (out / "submit-chain.sh").read_text()
    # the plan's own dependency option, job-id references and all (one rendering)
    assert plan.stage("train").slurm["dependency"] == "afterok:${data_id}:${model_id}:${convert_id}"
    assert (f'convert_id=$(sbatch --parsable --dependency="afterok:${{model_id}}" --kill-on-invalid-dep=yes '
            f'{out}/convert.sbatch)') in chain
    assert ('--dependency="afterok:${data_id}:${model_id}:${convert_id}" --kill-on-invalid-dep=yes '
            f"{out}/train.sbatch") in chain
    assert "--container-image=" in (out / "train.sbatch").read_text()
    bash_n(chain, tmp_path)


def test_emit_writes_nothing_when_one_stage_cannot_render(ready, tmp_path):
    _, plan = make_plan(ready, env_extra={"PROMPT_DATA": str(tmp_path / "p.jsonl")})
    bad = replace(plan.stage("train"), env={"HF_TOKEN": "x"})
    plan = replace(plan, stages=tuple(bad if s.name == "train" else s for s in plan.stages))
    with pytest.raises(ConfigError):
        emit_sbatch(plan, tmp_path / "emit")
    assert not (tmp_path / "emit").exists()


def test_submit_chain_cancels_what_it_submitted_when_sbatch_fails(ready, tmp_path, standin_bin):
    _, plan = make_plan(ready, env_extra={"PROMPT_DATA": str(tmp_path / "p.jsonl")})
    scripts = {"data": tmp_path / "data.sbatch", "train": tmp_path / "train.sbatch"}
    # sbatch stand-in: accepts the first script (job 41), refuses the second
    (standin_bin / "sbatch").write_text('#!/bin/bash\ncase "$*" in *data.sbatch) echo "41;c";; *) echo "sbatch: error: '
                                        'Invalid account" >&2; exit 1;; esac\n')
    (standin_bin / "sbatch").chmod(0o755)
    (standin_bin / "scancel").write_text(f'#!/bin/bash\necho "$*" > {tmp_path}/scancel.args\n')
    (standin_bin / "scancel").chmod(0o755)
    chain = tmp_path / "chain.sh"
    chain.write_text(render_submit_chain(plan, scripts))
    run = subprocess.run(["bash", str(chain)], capture_output=True, text=True,
                         env=clean_env(PATH=f"{standin_bin}:/usr/bin:/bin"))
    assert run.returncode != 0
    assert (tmp_path / "scancel.args").read_text().strip() == "41"
    assert "cancelled 41" in run.stderr


@pytest.mark.parametrize("existing,restart,expected", [
    ([], 0, "p-sbatch-7"),
    (["p-sbatch-7"], 0, "p-sbatch-7.2"),  # an older cluster lifetime had job 7 too
    (["p-sbatch-7", "p-sbatch-7.2"], 0, "p-sbatch-7.3"),
    (["p-sbatch-7"], 1, "p-sbatch-7"),  # a restart continues in its first run's dir
    (["p-sbatch-7", "p-sbatch-7.2"], 2, "p-sbatch-7.2"),
    ([], 1, "p-sbatch-7"),  # first run's dir gone: start one
])
def test_pick_chain_id(tmp_path, existing, restart, expected):
    for name in existing:
        (tmp_path / name).mkdir()
    assert pick_chain_id(tmp_path, "p-sbatch-7", restart) == expected


def test_allocation_reads_slurm_environment():
    assert allocation({"SLURM_JOB_ID": "12", "SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_PER_NODE": "gpu:4",
                       "SLURM_RESTART_COUNT": "1"}) == ("12", 2, 4, 1)
    assert allocation({"SLURM_JOB_ID": "12", "SLURM_NNODES": "3", "SLURM_GPUS_ON_NODE": "8"}) == ("12", 3, 8, 0)
    assert allocation({"SLURM_JOB_ID": "12"}) == ("12", 1, None, 0)
    with pytest.raises(ConfigError, match="not inside a Slurm job"):
        allocation({})
    with pytest.raises(ConfigError, match="malformed Slurm environment"):
        allocation({"SLURM_JOB_ID": "12", "SLURM_JOB_NUM_NODES": "two"})


def render_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.sbatch_render", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


def slurm_env(ready: Ready, job_id="4242", nodes="1", **extra) -> dict[str, str]:
    return clean_env(**ready.env, SLURM_JOB_ID=job_id, SLURM_JOB_NUM_NODES=nodes, SLURM_GPUS_ON_NODE="4", **extra)


def sets(ready: Ready) -> list[str]:
    return [w for s in ready.sets for w in ("--set", s)]


def test_job_script_renders_for_the_current_allocation(ready):
    run = render_cli("job-script", "--stage", "train", "--profile", "smoke", *sets(ready),
                     env=slurm_env(ready, nodes="2", SLURM_RESTART_COUNT="1"))
    assert run.returncode == 0, run.stderr
    path = Path(run.stdout.strip())
    chain = ready.log_dir / "smoke-sbatch-4242"
    assert path == chain / "train" / "4242" / "restart-1" / "job.sh"
    spec = json.loads((chain / "train" / "launch.json").read_text())
    assert spec["nodes"] == 2 and spec["expected_gpus"] == 8  # scaled to this allocation
    text = path.read_text()
    assert f"--spec {chain}/train/launch.json &" in text and "trap on_warning USR1" in text


def test_job_script_for_a_complete_stage_prints_nothing(ready):
    run = render_cli("job-script", "--stage", "data", "--profile", "smoke", *sets(ready), env=slurm_env(ready))
    assert run.returncode == 0 and run.stdout == ""
    assert "nothing to run" in run.stderr


@pytest.mark.parametrize("args,env_change,why", [
    (["--stage", "train", "--profile", "smoke"], {"SLURM_JOB_ID": None}, "not inside a Slurm job"),
    (["--stage", "train"], {}, "no profile"),
    (["--stage", "train", "--profile", "smoek"], {}, "did you mean smoke"),
    (["--stage", "training", "--profile", "smoke"], {}, "invalid choice"),
    (["--stage", "train", "--profile", "smoke", "--set", "rollout-batch-size=0"], {}, "rollout-batch-size"),
    (["--stage", "train", "--profile", "smoke"], {"PROMPT_DATA": "/nonexistent/p.jsonl"}, "/nonexistent/p.jsonl"),
])
def test_job_script_bad_input_is_one_error_line(ready, args, env_change, why):
    env = slurm_env(ready)
    for key, value in env_change.items():
        env.pop(key) if value is None else env.__setitem__(key, value)
    run = render_cli("job-script", *args, *sets(ready), env=env)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and why in lines[0], run.stderr
    assert run.stdout == ""


def test_launch_spec_for_one_node_outside_slurm(ready):
    run = render_cli("launch-spec", "--profile", "smoke", *sets(ready), env=clean_env(**ready.env))
    assert run.returncode == 0, run.stderr
    path = Path(run.stdout.strip())
    assert path.parent.parent.name.startswith("smoke-") and path.parent.parent.name.endswith("-local")
    spec = json.loads(path.read_text())
    assert spec["nodes"] == 1 and spec["entrypoint"][:2] == ["python3", "train.py"]


def test_launch_spec_bad_input(ready):
    run = render_cli("launch-spec", "--profile", "smoke", *sets(ready),
                     env=clean_env(**{**ready.env, "REF_LOAD": "/nonexistent/ref"}))
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and run.stderr.startswith("error:")

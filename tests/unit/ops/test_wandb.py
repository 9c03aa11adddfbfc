"""W&B across requeues and offline nodes (issue 17): one run id per chain (chain.json, launch.json),
`--wandb-run-id` on every start of the train job, `--wandb-dir` under the chain's dir, the optional
sync stage (`afterany` the train) or the printed upload command, and the sync runner itself."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from cluster.chain import WANDB_RUN_ID, recorded_wandb_run_id, write_chain
from cluster.profile.checks import run_checks, scale_topology
from cluster.errors import CheckError
from cluster.launcher.job import resumed_entrypoint, wandb_run_flags
from cluster.launcher.spec import LaunchSpec
from cluster.plan import build_plan, parse_stages
from cluster.profile import load_profile
from cluster.sbatch_render import render_job_script, render_submit_chain
from cluster.stages.wandb_sync import offline_runs, sync_commands
from tests.unit.ops.conftest import ROOT, Ready, clean_env, write_exe

KEY = "wandb-unit-test-key-0123456789"


def checked(ready: Ready, *sets: str, key: str | None = KEY):
    profile = load_profile("smoke", sets=[*ready.sets, *sets], env=ready.env)
    profile = scale_topology(profile, 1, None, env={"WANDB_API_KEY": key} if key else {})
    run_checks(profile)
    return profile


def make_plan(ready: Ready, *sets: str, stages=None, key: str | None = KEY, chain_id="chain-w", **kw):
    profile = checked(ready, *sets, key=key)
    return build_plan(profile, stages or parse_stages(None, profile), chain_id=chain_id, strict_paths=False, **kw)


def test_one_run_id_per_chain_in_the_record_and_the_launch_spec(ready, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", KEY)  # the plan refuses to carry a secret's value anywhere
    plan = make_plan(ready)
    run_id = plan.wandb_run_id
    assert run_id and len(run_id) == 16 and run_id.isalnum()
    record = plan.to_dict()
    assert record[WANDB_RUN_ID] == run_id and KEY not in json.dumps(record)
    train = plan.stage("train")
    assert train.launch.resume[WANDB_RUN_ID] == run_id
    assert "--wandb-run-id" not in train.slime_args  # the launcher adds it on every start
    assert train.slime_args[train.slime_args.index("--wandb-dir") + 1] == f"{plan.chain_dir}/wandb"
    assert "--use-wandb" in train.slime_args and "--wandb-key" not in train.slime_args
    assert make_plan(ready, chain_id="chain-other").wandb_run_id != run_id  # another chain, another run


def test_wandb_off_means_no_run_id(ready):
    plan = make_plan(ready, key=None)
    assert plan.wandb_run_id is None and plan.to_dict()[WANDB_RUN_ID] is None
    assert WANDB_RUN_ID not in plan.stage("train").launch.resume
    assert "--wandb-dir" not in plan.stage("train").slime_args


def test_a_profile_wandb_dir_and_run_id_are_kept(ready, tmp_path):
    plan = make_plan(ready, f"wandb.wandb-dir={tmp_path / 'wb'}", "wandb.wandb-run-id=my-run-7")
    args = plan.stage("train").slime_args
    assert args[args.index("--wandb-dir") + 1] == str(tmp_path / "wb") and plan.wandb_run_id == "my-run-7"
    assert args[args.index("--wandb-run-id") + 1] == "my-run-7"  # given in the profile: on argv already


def test_the_plan_of_an_existing_chain_keeps_its_run_id(ready):
    first = make_plan(ready)
    write_chain(first.chain_dir, first.to_dict())
    assert recorded_wandb_run_id(first.chain_dir) == first.wandb_run_id
    assert make_plan(ready).wandb_run_id == first.wandb_run_id
    assert make_plan(ready, wandb_run_id="given").wandb_run_id == "given"


def test_a_hand_submitted_train_job_keeps_its_run_id_when_requeued(ready, monkeypatch):
    """scripts/sbatch/train.sbatch renders its plan again on every restart (launch.json, no chain.json)."""
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    env = {**ready.env, "WANDB_API_KEY": KEY, "SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_GPUS_ON_NODE": "4", "SLURM_RESTART_COUNT": "0"}
    sets = list(ready.sets)
    render_job_script("train", "smoke", sets, env)
    launch = ready.log_dir / "smoke-sbatch-77" / "train" / "launch.json"
    first = json.loads(launch.read_text())["resume"][WANDB_RUN_ID]
    render_job_script("train", "smoke", sets, {**env, "SLURM_RESTART_COUNT": "1"})
    assert json.loads(launch.read_text())["resume"][WANDB_RUN_ID] == first


def fake_node(spec: LaunchSpec, tmp_path: Path, restart: int):
    marks: list[str] = []
    node = types.SimpleNamespace(spec=spec, log=types.SimpleNamespace(mark=marks.append),
                                 paths=types.SimpleNamespace(log_dir=tmp_path),
                                 ident=types.SimpleNamespace(restart=restart))
    return node, marks


def test_the_launcher_passes_the_run_id_on_every_start(ready, tmp_path):
    spec = make_plan(ready).stage("train").launch
    run_id = spec.resume[WANDB_RUN_ID]
    for restart in (0, 1, 2):
        node, marks = fake_node(spec, tmp_path, restart)
        argv = resumed_entrypoint(node)
        assert argv[-2:] == ["--wandb-run-id", run_id] and argv.count("--wandb-run-id") == 1
        assert json.loads((tmp_path / "resume.json").read_text())[WANDB_RUN_ID] == run_id
        assert marks[-1].endswith(f"W&B run {run_id}")
    given = LaunchSpec.from_dict({**spec.to_dict(), "entrypoint": [*spec.entrypoint, "--wandb-run-id=x"]})
    assert wandb_run_flags(given) == []
    explicit_load = LaunchSpec.from_dict({**spec.to_dict(), "entrypoint": [*spec.entrypoint, "--load", "/c"]})
    assert resumed_entrypoint(fake_node(explicit_load, tmp_path, 0)[0])[-2:] == ["--wandb-run-id", run_id]
    off = make_plan(ready, key=None).stage("train").launch
    assert "--wandb-run-id" not in resumed_entrypoint(fake_node(off, tmp_path, 0)[0])


# --- offline mode, the sync stage ---------------------------------------------------------------

def test_offline_with_the_sync_stage_afterany_train(ready):
    plan = make_plan(ready, "wandb.wandb-mode=offline", "stages.sync.enabled=true", "stages.sync.slurm.partition=dtn")
    assert [s.name for s in plan.stages][-1] == "sync"
    sync = plan.stage("sync")
    assert sync.depends_on == ("train",) and sync.slurm["dependency"] == "afterany:${train_id}"
    assert sync.slurm["partition"] == "dtn" and "gpus-per-node" not in sync.slurm
    assert sync.argv == (sys.executable, "-m", "cluster.stages.wandb_sync", f"{plan.chain_dir}/wandb")
    args = plan.stage("train").slime_args
    assert args[args.index("--wandb-mode") + 1] == "offline"
    script = render_submit_chain(plan, {s.name: Path(f"/x/{s.name}.sbatch") for s in plan.stages if not s.skip})
    assert 'sync_id=$(sbatch --parsable --dependency="afterany:${train_id}"' in script


def test_offline_without_a_sync_stage_prints_the_upload_command(ready):
    plan = make_plan(ready, "wandb.wandb-mode=offline")
    assert "sync" not in [s.name for s in plan.stages]
    (note,) = [w for w in plan.warnings if w.startswith("W&B runs offline")]
    assert f"python -m cluster.stages.wandb_sync {plan.chain_dir}/wandb" in note
    assert f"wandb sync --include-offline {plan.chain_dir}/wandb/wandb/offline-run-*" in note


def test_the_sync_stage_leaves_when_there_is_nothing_to_upload(ready):
    for key, mode in ((None, "offline"), (KEY, "online")):
        plan = make_plan(ready, f"wandb.wandb-mode={mode}", "stages.sync.enabled=true", key=key)
        assert "sync" not in [s.name for s in plan.stages]
        assert any(w.startswith("stage sync left out") for w in plan.warnings)


def test_sync_alone_in_a_new_chain_has_nothing_to_find(ready):
    with pytest.raises(CheckError, match="stage sync without train"):
        make_plan(ready, "wandb.wandb-mode=offline", stages=("sync",))


def test_w_and_b_online_on_offline_compute_nodes_is_refused(ready):
    with pytest.raises(CheckError, match=r"wandb.wandb-mode = online, but slurm.compute_offline is true .*"
                                          r"Set wandb.wandb-mode: offline"):
        make_plan(ready, "slurm.compute_offline=true")
    make_plan(ready, "slurm.compute_offline=true", key=None)  # W&B off: nothing to reach


def test_the_submit_cli_refuses_it_in_one_line(ready):
    proc = subprocess.run([sys.executable, "-m", "cluster.submit", "--profile", "smoke", "--dry-run",
                           "--set", "slurm.compute_offline=true", *(w for s in ready.sets for w in ("--set", s))],
                          capture_output=True, text=True, env=clean_env(WANDB_API_KEY=KEY, **ready.env), cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:")
    assert "slurm.compute_offline" in proc.stderr and KEY not in proc.stderr


# --- the sync runner ------------------------------------------------------------------------------

def offline_run(root: Path, stamp: str, run_id: str, synced: bool = False) -> Path:
    run = root / "wandb" / f"offline-run-{stamp}-{run_id}"
    run.mkdir(parents=True)
    (run / f"run-{run_id}.wandb").write_bytes(b"W&B")
    if synced:
        (run / f"run-{run_id}.wandb.synced").write_text("")
    return run


def test_runs_are_uploaded_oldest_first_and_later_segments_append(tmp_path):
    second = offline_run(tmp_path, "20250102_000000", "abc")
    first = offline_run(tmp_path, "20250101_000000", "abc", synced=True)
    third = offline_run(tmp_path, "20250103_000000", "abc")
    (tmp_path / "wandb" / "latest-run").mkdir()
    assert offline_runs(tmp_path) == [first, second, third]
    assert sync_commands(offline_runs(tmp_path)) == [
        ["wandb", "sync", "--include-offline", "--mark-synced", "--append", "--id", "abc", str(second)],
        ["wandb", "sync", "--include-offline", "--mark-synced", "--append", "--id", "abc", str(third)]]
    fresh = offline_run(tmp_path / "other", "20250101_000000", "xyz")
    assert sync_commands([fresh]) == [["wandb", "sync", "--include-offline", "--mark-synced", str(fresh)]]


def sync_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.stages.wandb_sync", *args], capture_output=True, text=True,
                          env=clean_env(**env), cwd=ROOT, timeout=60)


def test_sync_cli_end_to_end_with_a_stand_in_wandb(tmp_path):
    bin_dir = tmp_path / "bin"
    write_exe(bin_dir / "wandb", f"#!/bin/sh\necho \"$@\" >> {tmp_path}/wandb.calls\n"
                                 "for last; do :; done\ntouch \"$last\"/run.wandb.synced\n")
    offline_run(tmp_path / "wb", "20250101_000000", "abc")
    offline_run(tmp_path / "wb", "20250102_000000", "abc")
    path = f"{bin_dir}:/usr/bin:/bin"
    proc = sync_cli(str(tmp_path / "wb"), PATH=path, WANDB_API_KEY=KEY)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "wandb.calls").read_text().splitlines()
    assert len(calls) == 2 and "--append --id abc" in calls[1] and "--append" not in calls[0]
    again = sync_cli(str(tmp_path / "wb"), PATH=path, WANDB_API_KEY=KEY)  # everything is marked synced now
    assert again.returncode == 0 and "0 to upload" in again.stdout


def test_sync_cli_without_wandb_or_a_key_says_what_to_do(tmp_path):
    assert sync_cli(str(tmp_path)).returncode == 0  # nothing to upload: fine without either
    offline_run(tmp_path, "20250101_000000", "abc")
    proc = sync_cli(str(tmp_path), PATH="/nonexistent", WANDB_API_KEY=KEY)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "the Python package wandb" in proc.stderr
    write_exe(tmp_path / "bin" / "wandb", "#!/bin/sh\nexit 0\n")
    proc = sync_cli(str(tmp_path), PATH=str(tmp_path / "bin"), HOME=str(tmp_path))
    assert proc.returncode == 2 and "WANDB_API_KEY is not set" in proc.stderr


def test_a_failed_upload_fails_the_stage(tmp_path):
    write_exe(tmp_path / "bin" / "wandb", "#!/bin/sh\nexit 1\n")
    offline_run(tmp_path, "20250101_000000", "abc")
    proc = sync_cli(str(tmp_path), PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin", WANDB_API_KEY=KEY)
    assert proc.returncode == 1 and "wandb sync failed for offline-run-20250101_000000-abc" in proc.stderr

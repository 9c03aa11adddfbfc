"""The rendered environment of each stage (issue 17): PYTHONPATH of convert and train (Megatron-LM AND
slime, unless the container has slime installed), HF_HUB_OFFLINE on offline compute nodes, the
model stage's `hf download` of the seed's model, each stage's program checked on the submit host,
and partitions with internet for the stages that download."""
from __future__ import annotations

import json
import os
import sys

import pytest

from cluster.profile.checks import run_checks, scale_topology
from cluster.errors import CheckError
from cluster.plan import build_plan
from cluster.profile import load_profile
from cluster.sbatch_render import render_sbatch_script
from cluster.stages.env import PROJECT_ROOT, executable_problems, stage_env
from tests.unit.ops.conftest import Ready, write_exe

ALL = ("data", "model", "convert", "train")


def make_plan(ready: Ready, *sets: str, stages=ALL, strict=False, env=None):
    profile = scale_topology(load_profile("smoke", sets=[*ready.sets, *sets], env={**ready.env, **(env or {})}),
                             1, None, env={})
    run_checks(profile)
    return build_plan(profile, stages, chain_id="chain-e", strict_paths=strict)


@pytest.fixture
def fresh(ready):
    """A ready tree whose model and converted checkpoint are still to be made (data is there)."""
    import shutil

    shutil.rmtree(ready.root / "Qwen3-8B")
    shutil.rmtree(ready.root / "Qwen3-8B_torch_dist")
    return ready


def test_rendered_env_of_each_stage(fresh):
    plan = make_plan(fresh, stages=("model", "convert", "train"))
    megatron, slime = str(fresh.root / "Megatron-LM"), str(fresh.root / "slime")
    assert plan.stage("model").env == {}
    assert plan.stage("convert").env == {"PYTHONPATH": f"{megatron}:{slime}"}
    assert plan.stage("train").env == {}  # the launcher itself; the Ray job's env is in the launch spec
    assert plan.stage("train").launch.env_vars == {
        "CUDA_DEVICE_MAX_CONNECTIONS": "1", "NCCL_NVLS_ENABLE": "0", "PYTHONPATH": f"{megatron}:{slime}:{PROJECT_ROOT}"}
    assert plan.stage("train").launch.preflight["pythonpath"] == [megatron, slime, str(PROJECT_ROOT)]
    data_plan = make_plan(fresh, stages=("data",), env={"PROMPT_DATA": str(fresh.root / "new.jsonl")})
    assert data_plan.stage("data").env == {}


def test_the_convert_script_exports_megatron_and_slime(fresh):
    plan = make_plan(fresh, stages=("model", "convert"))
    text = render_sbatch_script(plan.stage("convert"), plan)
    assert f'export PYTHONPATH={fresh.root}/Megatron-LM:{fresh.root}/slime":$PYTHONPATH"' in text


def test_slime_installed_in_the_container_keeps_the_slime_dir_off_pythonpath(fresh):
    plan = make_plan(fresh, "container.slime_installed=true", stages=("model", "convert", "train"))
    megatron = str(fresh.root / "Megatron-LM")
    assert plan.stage("convert").env == {"PYTHONPATH": megatron}
    assert plan.stage("train").launch.env_vars["PYTHONPATH"] == f"{megatron}:{PROJECT_ROOT}"
    assert plan.stage("train").launch.preflight["slime_installed"] is True


def test_offline_compute_nodes_get_hf_hub_offline(fresh):
    plan = make_plan(fresh, "slurm.compute_offline=true", "stages.model.slurm.partition=dtn",
                     stages=("model", "convert", "train"))
    assert plan.stage("convert").env["HF_HUB_OFFLINE"] == "1"
    assert plan.stage("train").launch.env_vars["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in plan.stage("model").env  # the download stage needs the hub
    assert "HF_HUB_OFFLINE" not in make_plan(fresh, stages=("model", "convert")).stage("convert").env
    assert not any("partition" in w for w in plan.warnings)


def test_offline_compute_nodes_give_the_eval_stage_hf_hub_offline_too(ready):
    """eval runs on a compute node like train (export, SGLang, scorer): the same switch, from the
    same key; online nodes leave it out so the evaluator may still fetch from the hub."""
    offline = make_plan(ready, "slurm.compute_offline=true", "wandb.enabled=false", stages=("train", "eval"))
    assert offline.stage("eval").env["HF_HUB_OFFLINE"] == "1"
    assert offline.stage("eval").env["HF_HUB_OFFLINE"] == offline.stage("train").launch.env_vars["HF_HUB_OFFLINE"]
    assert "PYTHONPATH" in offline.stage("eval").env
    assert "HF_HUB_OFFLINE" not in make_plan(ready, stages=("train", "eval")).stage("eval").env
    script = render_sbatch_script(offline.stage("eval"), offline)
    assert "HF_HUB_OFFLINE=1" in script, script  # what the job on the node really exports
    # the evaluator reads its rows from the hub by default: offline, only a cached copy works
    assert any(w.startswith("stage eval reads RZ412/PokerBench from the Hugging Face hub but slurm.compute_offline")
               for w in offline.warnings), offline.warnings
    local = make_plan(ready, "slurm.compute_offline=true", "wandb.enabled=false", f"stages.eval.source={ready.root}/x.jsonl",
                      stages=("train", "eval"))
    assert not any(w.startswith("stage eval") for w in local.warnings)


def test_model_stage_is_hf_download_of_the_seed_model_at_a_revision(fresh):
    model = make_plan(fresh, stages=("model",)).stage("model")
    assert model.argv == ("hf", "download", "Stardust00/poker-qwen3-8b-merged", "--revision", "main",
                          "--local-dir", str(fresh.root / "Qwen3-8B"))
    pinned = make_plan(fresh, "stages.model.revision=0123abc", stages=("model",)).stage("model")
    assert pinned.argv[pinned.argv.index("--revision") + 1] == "0123abc"


def test_download_stages_may_use_a_partition_with_internet(fresh):
    plan = make_plan(fresh, "slurm.partition=gpu", "stages.model.slurm.partition=dtn", stages=("model", "convert"))
    assert plan.stage("model").slurm["partition"] == "dtn"
    assert plan.stage("convert").slurm["partition"] == "gpu"  # null in the stage: the profile's partition
    offline = make_plan(fresh, "slurm.compute_offline=true", stages=("model", "convert"))
    assert any(w.startswith("stage model downloads the model from the Hugging Face hub but slurm.compute_offline "
                            "is true and stages.model.slurm.partition is not set") for w in offline.warnings)


def test_a_missing_hf_names_huggingface_hub(fresh, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    write_exe(bin_dir / "python3", f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(CheckError) as err:
        make_plan(fresh, stages=("model", "convert", "train"), strict=True)
    text = str(err.value)
    assert "stage model runs `hf`, which is not on PATH on this host" in text
    assert "the Python package huggingface_hub: pip install -U huggingface_hub" in text and "\n" not in text
    plan = make_plan(fresh, stages=("model", "convert", "train"))  # the dry-run: a warning
    assert any("`hf`" in w and "huggingface_hub" in w for w in plan.warnings)
    write_exe(bin_dir / "hf", "#!/bin/sh\nexit 0\n")
    make_plan(fresh, stages=("model", "convert", "train"), strict=True)  # now it resolves


def test_the_old_huggingface_cli_says_what_replaced_it(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    cmd = json.dumps(["huggingface-cli", "download", "x", "--local-dir", "{paths.hf-checkpoint}"])
    with pytest.raises(CheckError, match=r"huggingface-cli.*ship `hf` instead: use \[hf, download, \.\.\.\]"):
        make_plan(fresh, f"stages.model.command={cmd}", stages=("model",), strict=True)


def test_the_train_entrypoint_interpreter_is_checked(ready, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # the launcher is this interpreter (a full path); python3 is not here
    with pytest.raises(CheckError, match="stage train runs `python3`, which is not on PATH on this host"):
        make_plan(ready, stages=("train",), strict=True)


def test_in_a_container_the_programs_are_only_warned_about(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing resolves here: the image decides
    plan = make_plan(fresh, "container.runtime=pyxis", "container.image=nvcr.io#nvidia/pytorch:24.07-py3",
                     stages=("model", "convert", "train"), strict=True)
    (note,) = [w for w in plan.warnings if "were not checked on this host" in w]
    assert "(hf, python3)" in note and "huggingface_hub" in note


def test_executable_problems_is_pure_over_its_env(tmp_path):
    write_exe(tmp_path / "hf", "#!/bin/sh\n")
    env = {"PATH": str(tmp_path)}
    assert executable_problems([("model", ["hf"])], None, env) == ([], [])
    problems, _ = executable_problems([("sync", ["wandb"]), ("x", [str(tmp_path / "nope")])], None, env)
    assert "it comes with the Python package wandb: pip install wandb" in problems[0]
    assert "does not exist or is not executable" in problems[1]


def test_stage_env_only_for_the_python_stages(ready):
    profile = load_profile("smoke", sets=list(ready.sets), env=ready.env)
    assert stage_env(profile, "data") == stage_env(profile, "model") == stage_env(profile, "sync") == {}
    assert os.pathsep.join([str(ready.root / "Megatron-LM"), str(ready.root / "slime")]) == \
        stage_env(profile, "convert")["PYTHONPATH"]

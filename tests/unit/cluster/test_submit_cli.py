"""The submit command line as a user runs it: real subprocesses, real profile files."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.cluster.helpers import ROOT, clean_env, run_submit


def assert_config_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("profile", ["smoke", "full"])
@pytest.mark.parametrize("nodes", ["1", "2"])
def test_dry_run_json(profile, nodes):
    proc = run_submit("--profile", profile, "--nodes", nodes, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    chain = ["data", "model", "convert", "train"] + (["eval"] if profile == "full" else [])  # eval: on in full only
    assert plan["profile"] == profile and [s["name"] for s in plan["stages"]] == chain
    train = next(s for s in plan["stages"] if s["name"] == "train")
    args = train["slime_args"]
    assert args[args.index("--actor-num-nodes") + 1] == nodes
    assert args[args.index("--num-rollout") + 1] == {"smoke": "2", "full": "3000"}[profile]
    assert train["slurm"]["nodes"] == int(nodes)


def test_dry_run_text_is_readable():
    proc = run_submit("--profile", "smoke", "--nodes", "1", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    for fragment in ("chain smoke-", "[RUN ] data", "[RUN ] train after data, model, convert", "sbatch --job-name=holdem-train", "slime  train.py --actor-num-nodes 1"):
        assert fragment in proc.stdout


def test_run_profile_from_environment():
    proc = run_submit("--dry-run", "--json", env=clean_env(RUN_PROFILE="full", HF_CHECKPOINT="/from/env"))
    assert proc.returncode == 0, proc.stderr
    args = next(s for s in json.loads(proc.stdout)["stages"] if s["name"] == "train")["slime_args"]
    assert args[args.index("--hf-checkpoint") + 1] == "/from/env" and "3000" in args


def test_help_explains_with_examples():
    proc = run_submit("--help")
    assert proc.returncode == 0
    for fragment in ("--dry-run", "--set KEY=VALUE", "examples:", "precedence", "exit codes"):
        assert fragment in proc.stdout


def test_dry_run_imports_no_heavy_module():
    code = ("import sys; from cluster.submit import main; main(['--profile','full','--nodes','1','--dry-run','--json']); "
            "bad = [m for m in ('ray','torch','datasets','submitit','transformers') if m in sys.modules]; "
            "sys.stderr.write(repr(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "[]", proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["--profile", "/tmp/does-not-exist.yaml"], "unknown profile '/tmp/does-not-exist.yaml'"),
    (["--profile", "smoke", "--set", "rollout-batch-size"], "expected KEY=VALUE"),
    (["--profile", "smoke", "--set", "rollout-batchsize=3"], "did you mean rollout-batch-size?"),
    (["--profile", "smoke", "--set", "misc.not-a-slime-flag=1"], "not a flag of the pinned slime"),
    (["--profile", "smoke", "--set", "rollout-batch-size=16x"], "expected an integer"),
    (["--profile", "smoke", "--set", "slurm.nodes=0"], "slurm.nodes = 0: must be a positive integer"),
    (["--profile", "smoke", "--nodes", "0"], "--nodes 0: must be a positive integer"),
    (["--profile", "smoke", "--nodes", "-1"], "--nodes -1: must be a positive integer"),
    (["--profile", "smoke", "--nodes", "two"], "invalid int value"),
    (["--profile", "smoke", "--nodes", "3"], "not divisible by the data-parallel size 6"),
    (["--profile", "smoke", "--set", "over-sampling-batch-size=1"], "over-sampling-batch-size = 1 must be >= rollout-batch-size = 4"),
    (["--profile", "smoke", "--set", "global-batch-size=3"], "is not divisible by global-batch-size = 3"),
    (["--profile", "smoke", "--set", "actor-num-nodes=2"], "slime asks Ray for 8 GPUs"),
    (["--profile", "smoke", "--set", "tensor-model-parallel-size=8"], "does not divide the 4 actor GPUs"),
    (["--profile", "smoke", "--set", "rollout-num-gpus-per-engine=8"], "does not divide the 4 rollout GPUs"),
    (["--profile", "smoke", "--stages", "train,deploy"], "--stages"),
    (["--profile", "smoke", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "no profile"),
])
def test_bad_input_is_one_error_line_exit_2(args, fragment):
    assert_config_error(run_submit(*args, "--dry-run"), fragment)


def test_wandb_without_group(tmp_path):
    proc = run_submit("--profile", "smoke", "--set", "wandb.wandb-group=null", "--dry-run",
                      env=clean_env(WANDB_API_KEY="secret-value"))
    assert_config_error(proc, "wandb-group is empty")
    assert "secret-value" not in proc.stderr


@pytest.mark.parametrize("text, fragment", [
    ("extends: smoke\nrollout:\n  num-rollout: [1\n", "YAML syntax error"),
    ("extends: cyc\n", "extends cycle"),
    ("extends: smoke\nrollout:\n  rollout-batch-size: \"16x\"\n", "rollout.rollout-batch-size = '16x': expected an integer"),
    ("extends: smoke\nslurm:\n  nodes: -1\n", "slurm.nodes = -1: must be a positive integer"),
    ("extends: smoke\nmisc:\n  attention-backnd: flash\n", "did you mean attention-backend?"),
])
def test_bad_profile_files(tmp_path, text, fragment):
    path = tmp_path / "cyc.yaml"
    path.write_text(text)
    assert_config_error(run_submit("--profile", str(path), "--dry-run"), fragment)


def test_missing_inputs_block_submission_before_slurm_is_touched(tmp_path):
    # No slime dir here: a real submission must stop at the check (exit 2), submitting nothing.
    proc = run_submit("--profile", "smoke", "--set", f"paths.root={tmp_path}", "--stages", "train")
    assert_config_error(proc, "stage train reads paths.prompt-data")


def test_container_is_visible_in_dry_run():
    proc = run_submit("--profile", "smoke", "--dry-run", "--json", "--set", "container.runtime=pyxis",
                      "--set", "container.image=nvcr.io/site/slime:1", "--set", "container.mounts=['/data:/data']")
    assert proc.returncode == 0, proc.stderr
    container = json.loads(proc.stdout)["container"]
    assert "--container-image=nvcr.io/site/slime:1" in container["srun_args"]
    text = run_submit("--profile", "smoke", "--dry-run", "--set", "container.runtime=apptainer",
                      "--set", "container.image=/img/slime.sif").stdout
    assert "apptainer" in text and "/img/slime.sif" in text


def test_container_without_image_is_a_config_error():
    assert_config_error(run_submit("--profile", "smoke", "--dry-run", "--set", "container.runtime=apptainer"),
                        "container.image is not set")


def test_emit_sbatch_writes_scripts_that_parse(tmp_path):
    out = tmp_path / "emit"
    proc = run_submit("--profile", "smoke", "--emit-sbatch", str(out), "--set", f"paths.log_dir={tmp_path / 'logs'}")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["convert.sbatch", "data.sbatch", "model.sbatch", "submit-chain.sh", "train.sbatch"]
    spec = next((tmp_path / "logs").glob("*/train/launch.json"))  # where the train step reads it
    assert f"--spec {spec} " in (out / "train.sbatch").read_text()
    for script in out.glob("*.s*"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script
    assert "#SBATCH --requeue" in (out / "train.sbatch").read_text()

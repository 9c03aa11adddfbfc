from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cluster.profile.checks import run_checks, scale_topology
from cluster.errors import CheckError, ConfigError
from cluster.outputs import (
    check_hf_dir,
    check_jsonl,
    check_megatron_dir,
    jsonl_stats,
    newest_complete_checkpoint,
    stats_path_for,
)
from cluster.plan import build_plan, parse_stages
from cluster.profile import load_profile

EXAMPLES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "pokerbench" / "examples.jsonl"
REAL_ROWS = EXAMPLES  # shipped with the repo
MEGATRON_METADATA = '{"sharded_backend": "torch_dist", "sharded_backend_version": 1, "common_backend": "torch", "common_backend_version": 1}'


def make_outputs(root: Path, data=True, model=True, convert=True, tools=True) -> None:
    if data:
        (root / "pokerbench").mkdir(parents=True)
        write_finished_jsonl(root / "pokerbench" / "train.jsonl")
    if model:
        (root / "Qwen3-8B").mkdir()
        (root / "Qwen3-8B" / "config.json").write_text("{}")
        (root / "Qwen3-8B" / "model.safetensors").write_bytes(b"w")
    if convert:
        rel = root / "Qwen3-8B_torch_dist" / "release"
        rel.mkdir(parents=True)
        (rel / "common.pt").write_bytes(b"x")
        (rel / "metadata.json").write_text(MEGATRON_METADATA)  # Megatron writes it last: the dir is complete
        (root / "Qwen3-8B_torch_dist" / "latest_checkpointed_iteration.txt").write_text("release")
    if tools:
        (root / "slime").mkdir()
        (root / "Megatron-LM").mkdir()


def write_finished_jsonl(path: Path, stats: bool = True) -> None:
    """The rows, and (as a finished data stage leaves them) their stats file."""
    path.write_bytes(REAL_ROWS.read_bytes())
    if stats:
        stats_path_for(path).write_text(json.dumps(jsonl_stats(path)))


def plan_for(root: Path, stages="data,model,convert,train", strict=True, sets=()):
    p = scale_topology(load_profile("smoke", env={}, sets=[f"paths.root={root}", *sets]), 2, None, env={})
    run_checks(p)
    return build_plan(p, parse_stages(stages), chain_id="test-chain", strict_paths=strict)


def test_fresh_chain_runs_everything_in_dependency_order(tmp_path):
    make_outputs(tmp_path, data=False, model=False, convert=False)
    plan = plan_for(tmp_path)
    assert [s.name for s in plan.stages] == ["data", "model", "convert", "train"]
    assert not any(s.skip for s in plan.stages)
    assert plan.stage("convert").depends_on == ("model",)
    assert plan.stage("train").depends_on == ("data", "model", "convert")
    assert plan.stage("train").slurm["dependency"] == "afterok:${data_id}:${model_id}:${convert_id}"
    assert plan.stage("train").slurm["kill-on-invalid-dep"] == "yes"
    assert plan.stage("train").slurm["nodes"] == 2 and plan.stage("train").slurm["gpus-per-node"] == 4
    assert plan.stage("train").slurm["requeue"] is True
    assert plan.stage("convert").slurm["ntasks-per-node"] == 4
    assert "gpus-per-node" not in plan.stage("data").slurm


def test_complete_outputs_are_skipped_with_reason_and_no_dependency(tmp_path):
    make_outputs(tmp_path)
    plan = plan_for(tmp_path)
    assert [s.skip for s in plan.stages] == [True, True, True, False]
    assert "6 rows" in plan.stage("data").reason and "matches train.stats.json" in plan.stage("data").reason
    assert "config.json" in plan.stage("model").reason
    assert "names release/" in plan.stage("convert").reason
    assert plan.stage("train").depends_on == () and "dependency" not in plan.stage("train").slurm


def test_train_json_carries_slime_args(tmp_path):
    make_outputs(tmp_path)
    d = plan_for(tmp_path).to_dict()
    train = d["stages"][-1]
    assert set(train) >= {"name", "depends_on", "skip", "reason", "slurm", "argv", "slime_args"}
    assert "--prompt-data" in train["slime_args"] and "slime_args" not in d["stages"][0]
    assert train["argv"][-2:] == ["--spec", f"{d['chain_dir']}/train/launch.json"]
    json.dumps(d)


def test_data_without_its_stats_file_runs_again(tmp_path):
    """A JSONL without `.stats.json` is what a killed data stage (or another tool) leaves: the plan
    runs the stage, and train waits for it."""
    make_outputs(tmp_path, data=False)
    (tmp_path / "pokerbench").mkdir()
    write_finished_jsonl(tmp_path / "pokerbench" / "train.jsonl", stats=False)
    plan = plan_for(tmp_path)
    assert [s.skip for s in plan.stages] == [False, True, True, False]
    assert "train.stats.json is missing" in plan.stage("data").reason
    assert plan.stage("train").depends_on == ("data",)


def test_missing_input_without_producer_is_error_when_submitting_and_warning_in_dry_run(tmp_path):
    make_outputs(tmp_path, data=False)
    with pytest.raises(CheckError, match="stage train reads paths.prompt-data .* add stage data to --stages"):
        plan_for(tmp_path, stages="train")
    plan = plan_for(tmp_path, stages="train", strict=False)
    assert any("paths.prompt-data" in w for w in plan.warnings)


def test_missing_tool_dirs(tmp_path):
    make_outputs(tmp_path, tools=False)
    with pytest.raises(CheckError, match="paths.slime_dir = .* does not exist"):
        plan_for(tmp_path)


def test_stage_command_comes_from_the_profile(tmp_path):
    make_outputs(tmp_path, data=False)
    plan = plan_for(tmp_path, sets=["stages.data.command=[touch, '{paths.prompt-data}']"])
    assert plan.stage("data").argv == ("touch", str(tmp_path / "pokerbench" / "train.jsonl"))


def test_convert_gets_model_args_and_megatron_and_slime_paths(tmp_path):
    """`python <slime>/tools/convert_hf_to_torch_dist.py` puts tools/ on sys.path, not the slime dir:
    `import slime` needs the slime dir on PYTHONPATH next to Megatron-LM (issue 17)."""
    make_outputs(tmp_path, convert=False)
    convert = plan_for(tmp_path).stage("convert")
    assert "--num-layers" in convert.argv and convert.argv[convert.argv.index("--rotary-base") + 1] == "1000000"
    assert convert.env == {"PYTHONPATH": f"{tmp_path / 'Megatron-LM'}:{tmp_path / 'slime'}"}


@pytest.mark.parametrize("text", ["data,deploy", ",", "trian"])
def test_bad_stages(text):
    with pytest.raises(ConfigError, match="--stages"):
        parse_stages(text)


# --- the completeness checks on real layouts ---------------------------------------------

def test_jsonl_checks(tmp_path):
    f = tmp_path / "d.jsonl"
    assert check_jsonl(f)[0] is False
    f.write_text("")
    assert check_jsonl(f) == (False, f"{f} is empty")
    f.write_text('{"instruction": "x"}\n')
    assert check_jsonl(f, ("instruction", "output"))[0] is False
    f.write_text('{"instruction": "x", "output": "fold"}\nnot json\n')
    assert check_jsonl(f, ("instruction", "output"))[0] is False
    f.write_text('{"instruction": "x", "output": "fold"}\n' * 5)
    ok, reason = check_jsonl(f, ("instruction", "output"))
    assert not ok and "d.stats.json is missing" in reason  # rows alone are not a finished stage
    stats = jsonl_stats(f)
    (tmp_path / "d.stats.json").write_text(json.dumps({**stats, "rows_out": 4}))
    assert check_jsonl(f)[0] is False
    (tmp_path / "d.stats.json").write_text(json.dumps({"rows_out": 5}))
    assert "unreadable" in check_jsonl(f)[1]  # bytes are part of the contract
    (tmp_path / "d.stats.json").write_text(json.dumps(stats))
    assert check_jsonl(f, ("instruction", "output"))[0] is True
    assert check_jsonl(f, ("instruction", "label"))[0] is False
    assert check_jsonl(f, verify_checksum=True)[0] is True
    f.write_text('{"instruction": "x", "output": "call"}\n' * 5)  # same size and rows
    assert check_jsonl(f)[0] is True and check_jsonl(f, verify_checksum=True)[0] is False


def test_hf_dir_checks_shards(tmp_path):
    assert not check_hf_dir(tmp_path)[0]
    (tmp_path / "config.json").write_text("{}")
    assert not check_hf_dir(tmp_path)[0]
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}))
    (tmp_path / "m-1.safetensors").write_bytes(b"")
    ok, reason = check_hf_dir(tmp_path)
    assert not ok and "m-2.safetensors" in reason
    (tmp_path / "m-2.safetensors").write_bytes(b"")
    assert check_hf_dir(tmp_path)[0]


def test_megatron_tracker_must_name_a_complete_dir(tmp_path):
    """Megatron's rule (SLIME.md): a dir is complete once metadata.json, written last, is in it."""
    assert not check_megatron_dir(tmp_path)[0]
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("40\n")
    ok, reason = check_megatron_dir(tmp_path)
    assert not ok and "iter_0000040" in reason
    (tmp_path / "iter_0000020").mkdir()
    (tmp_path / "iter_0000020" / "metadata.json").write_text(MEGATRON_METADATA)
    found, _ = newest_complete_checkpoint(tmp_path)
    assert found == tmp_path / "iter_0000020"
    (tmp_path / "iter_0000040").mkdir()
    (tmp_path / "iter_0000040" / "common.pt").write_bytes(b"")
    (tmp_path / "iter_0000040" / ".metadata").write_bytes(b"")
    ok, reason = check_megatron_dir(tmp_path)  # what a save killed half-way leaves
    assert not ok and "no metadata.json" in reason
    (tmp_path / "iter_0000040" / "metadata.json").write_text(MEGATRON_METADATA)
    assert check_megatron_dir(tmp_path)[0]
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("garbage")
    assert "neither an iteration" in check_megatron_dir(tmp_path)[1]


def test_plan_and_data_stage_agree_on_completeness(tmp_path):
    """One rule (cluster.outputs.check_jsonl), used by the plan and by holdem.data alike."""
    import subprocess
    import sys

    from holdem.data import output_is_complete

    out = tmp_path / "train.jsonl"
    proc = subprocess.run([sys.executable, "-m", "holdem.data", "--source", str(REAL_ROWS), "--split", "train",
                           "--out", str(out)], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 0, proc.stderr
    assert check_jsonl(out, ("instruction", "output"))[0] is True and output_is_complete(out)[0] is True
    with out.open("a") as fh:
        fh.write(out.read_text().splitlines()[0] + "\n")
    assert check_jsonl(out)[0] is False and output_is_complete(out)[0] is False
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:-1]))
    assert check_jsonl(out)[0] is True and output_is_complete(out)[0] is True
    stats_path_for(out).unlink()
    assert check_jsonl(out)[0] is False and output_is_complete(out)[0] is False


def test_every_stage_depends_only_on_stages_submitted_before_it(tmp_path):
    # submit_plan prepares the stages in plan order and starts each once the ids it names are known:
    # a reference to a stage not submitted before it could never be filled, and is refused up front
    from cluster.slurm import unfillable_refs

    make_outputs(tmp_path, data=False, model=False, convert=False)
    plan = plan_for(tmp_path)
    assert [s.name for s in plan.stages] == ["data", "model", "convert", "train"]
    assert unfillable_refs(plan.stages) == {}
    # a sweep point: the shared stages' ids are known before its own stages are submitted
    train = [s for s in plan.stages if s.name == "train"]
    assert train[0].slurm["dependency"] == "afterok:${data_id}:${model_id}:${convert_id}"
    assert unfillable_refs(train, {"data": "1", "model": "2", "convert": "3"}) == {}
    assert unfillable_refs(train, {"data": "1"}) == {"train": ["convert", "model"]}
    # out of order: train first cannot name convert, submitted after it
    assert unfillable_refs([plan.stages[3], plan.stages[2]], {"data": "1", "model": "2"}) == {"train": ["convert"]}


def test_skipped_stages_are_not_submitted_so_nothing_may_wait_for_them(tmp_path):
    from cluster.slurm import unfillable_refs

    make_outputs(tmp_path, data=True, model=True, convert=False)
    plan = plan_for(tmp_path)
    assert [s.name for s in plan.stages if s.skip] == ["data", "model"]
    assert unfillable_refs(plan.stages) == {}  # the plan does not name skipped stages
    convert = next(s for s in plan.stages if s.name == "convert")
    forged = replace(convert, slurm={**convert.slurm, "dependency": "afterok:${model_id}"})
    assert unfillable_refs([s if s.name != "convert" else forged for s in plan.stages]) == {"convert": ["model"]}

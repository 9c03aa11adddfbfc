from __future__ import annotations

import pytest

from cluster.errors import ProfileError
from cluster.profile import ENV_KEYS, load_profile, parse_set


def test_smoke_and_full_hold_the_seed_values():
    smoke, full = load_profile("smoke", env={}), load_profile("full", env={})
    keys = ("num-rollout", "rollout-batch-size", "n-samples-per-prompt", "global-batch-size", "rollout-max-response-len")
    assert [smoke.get(f"rollout.{k}") for k in keys] == [2, 4, 2, 8, 512]
    assert [full.get(f"rollout.{k}") for k in keys] == [3000, 16, 8, 128, 4096]
    assert smoke.get("eval.enabled") is False
    for p in (smoke, full):
        assert p.get("algorithm.eps-clip") == 0.2 and p.get("algorithm.eps-clip-high") == 0.28
        assert p.get("dynamic_sampling.over-sampling-batch-size") == 32
        assert p.get("parallel.tensor-model-parallel-size") == 2
        assert p.get("sglang.sglang-mem-fraction-static") == 0.45
        assert p.get("model.rotary-base") == 1000000


def test_extends_merges_maps_key_by_key_and_records_origin(write_profile, tmp_path):
    child = write_profile("child", "extends: smoke\nrollout:\n  num-rollout: 7\n")
    p = load_profile(str(child), env={})
    assert p.get("rollout.num-rollout") == 7
    assert p.get("rollout.rollout-batch-size") == 4  # from smoke
    assert p.get("algorithm.lr") == 1e-6  # from base
    assert p.where("rollout.num-rollout") == str(child)
    assert p.where("rollout.rollout-batch-size").endswith("profiles/smoke.yaml")
    assert p.where("algorithm.lr").endswith("profiles/base.yaml")


def test_precedence_file_then_environment_then_set():
    env = {"HF_CHECKPOINT": "/env/hf", "SAVE_DIR": "/env/save", "LOAD_CKPT": "/env/load"}
    p = load_profile("smoke", env=env, sets=["paths.save=/set/save"])
    assert p.get("paths.hf-checkpoint") == "/env/hf"
    assert p.get("paths.save") == "/set/save"
    assert p.get("paths.load") == "/env/load"
    assert p.where("paths.hf-checkpoint") == "environment HF_CHECKPOINT"
    assert p.where("paths.save") == "--set paths.save"
    assert set(ENV_KEYS) == {"HF_CHECKPOINT", "REF_LOAD", "SAVE_DIR", "PROMPT_DATA", "LOAD_CKPT"}


def test_set_bare_flag_name_finds_its_section_and_is_yaml_typed():
    p = load_profile("smoke", env={}, sets=["rollout-batch-size=8", "colocate=false", "slurm.partition=gpu"])
    assert p.get("rollout.rollout-batch-size") == 8
    assert p.get("topology.colocate") is False
    assert p.get("slurm.partition") == "gpu"


def test_set_new_slime_flag_by_dotted_path():
    p = load_profile("smoke", env={}, sets=["sglang.sglang-cuda-graph-bs=[1, 2, 4]"])
    assert p.get("sglang.sglang-cuda-graph-bs") == [1, 2, 4]


def test_references_resolve_and_follow_root():
    p = load_profile("smoke", env={}, sets=["paths.root=/shared/run"])
    assert p.get("paths.hf-checkpoint") == "/shared/run/Qwen3-8B"
    assert p.get("stages.convert.slurm.tasks_per_node") == 4  # typed reference to slurm.gpus_per_node


def test_relative_paths_are_made_absolute_against_the_submit_dir(tmp_path):
    p = load_profile("smoke", env={}, sets=["paths.save=ckpt"], cwd=tmp_path)
    assert p.get("paths.save") == str(tmp_path / "ckpt")


def test_scientific_notation_int_renders_exactly(write_profile):
    child = write_profile("sci", "extends: smoke\nmodel:\n  rotary-base: 1e6\n")
    assert load_profile(str(child), env={}).get("model.rotary-base") == 1000000


@pytest.mark.parametrize("text, fragment", [
    ("extends: smoke\nrollout:\n  rollout-batch-size: \"16x\"\n", "rollout.rollout-batch-size = '16x': expected an integer"),
    ("extends: smoke\nslurm:\n  nodes: 0\n", "slurm.nodes = 0: must be a positive integer"),
    ("extends: smoke\nslurm:\n  nodes: -1\n", "slurm.nodes = -1: must be a positive integer"),
    ("extends: smoke\nrollout:\n  rollout-batchsize: 4\n", "unknown key rollout.rollout-batchsize (did you mean rollout-batch-size?)"),
    ("extends: smoke\nslurm:\n  partiton: gpu\n", "unknown key slurm.partiton (did you mean slurm.partition?)"),
    ("extends: smoke\ntopolgy: {}\n", "unknown section topolgy (did you mean topology?)"),
    ("extends: smoke\ntopology:\n  colocate: yes please\n", "is a switch: use true or false"),
    ("extends: smoke\nalgorithm:\n  kl-loss-type: k9\n", "must be one of k1, k2, k3, low_var_kl"),
    ("extends: smoke\ncontainer:\n  runtime: docker\n", "must be one of none, pyxis, apptainer"),
    ("extends: smoke\npaths:\n  save: \"{paths.nowhere}\"\n", "refers to {paths.nowhere}"),
    ("extends: smoke\nstages:\n  deploy: {}\n", "unknown stage stages.deploy"),
])
def test_bad_values_name_key_and_file(write_profile, text, fragment):
    path = write_profile("bad", text)
    with pytest.raises(ProfileError) as exc:
        load_profile(str(path), env={})
    assert fragment in str(exc.value)
    assert str(path) in str(exc.value)
    assert "\n" not in str(exc.value)


def test_yaml_syntax_error_has_line_number(write_profile):
    path = write_profile("broken", "extends: smoke\nrollout:\n  num-rollout: [1, 2\nslurm: {}\n")
    with pytest.raises(ProfileError, match=rf"{path}:\d+:\d+: YAML syntax error"):
        load_profile(str(path), env={})


def test_extends_cycle(write_profile):
    write_profile("a", "extends: b\n")
    b = write_profile("b", "extends: a\n")
    with pytest.raises(ProfileError, match="extends cycle b.yaml -> a.yaml -> b.yaml"):
        load_profile(str(b), env={})


def test_unknown_profile_suggests():
    with pytest.raises(ProfileError, match=r"unknown profile 'smok' \(did you mean smoke\?\)"):
        load_profile("smok", env={})


@pytest.mark.parametrize("item", ["rollout-batch-size", "=3", ""])
def test_set_without_equals(item):
    with pytest.raises(ProfileError, match="expected KEY=VALUE"):
        parse_set(item)


def test_set_unknown_key_suggests():
    with pytest.raises(ProfileError, match=r"--set rollout-batchsize: unknown key \(did you mean rollout-batch-size\?\)"):
        load_profile("smoke", env={}, sets=["rollout-batchsize=3"])


def test_set_known_flag_not_in_profile_says_where_to_put_it():
    with pytest.raises(ProfileError, match="misc.micro-batch-size=VALUE"):
        load_profile("smoke", env={}, sets=["micro-batch-size=2"])


def test_set_not_in_pinned_list():
    with pytest.raises(ProfileError, match="unknown key misc.no-such-flag.*not a flag of the pinned slime"):
        load_profile("smoke", env={}, sets=["misc.no-such-flag=1"])

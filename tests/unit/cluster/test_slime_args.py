from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from cluster.profile.checks import run_checks, scale_topology
from cluster.errors import ConfigError
from cluster.profile import load_profile
from cluster.profile.slime_args import render_flag, render_slime_args
from cluster.profile.slime_flags import load_flag_table

GOLDEN = Path(__file__).with_name("golden")


def strict_parser() -> argparse.ArgumentParser:
    """An argparse parser built from the pinned flag list that, unlike slime's parse_known_args,
    rejects unknown flags and stray values, and checks types, nargs and choices."""
    parser = argparse.ArgumentParser(exit_on_error=False, allow_abbrev=False)
    seen = set()
    for info in load_flag_table().flags.values():
        if info.name in seen:
            continue
        seen.add(info.name)
        kwargs: dict = {"dest": info.name.replace("-", "_")}
        if info.kind == "flag":
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = {"int": int, "float": float}.get(info.type, str)
            if info.nargs not in ("None", "0"):
                kwargs["nargs"] = int(info.nargs) if info.nargs.isdigit() else info.nargs
            if info.choices:
                kwargs["choices"] = [kwargs["type"](c) for c in info.choices]
        parser.add_argument(f"--{info.name}", **kwargs)
    return parser


def rendered(name, nodes, env=None):
    p = scale_topology(load_profile(name, env={}), nodes, None, env=env or {})
    run_checks(p)
    return render_slime_args(p)


@pytest.mark.parametrize("name", ["smoke", "full"])
@pytest.mark.parametrize("nodes", [1, 2])
def test_rendered_args_parse_strictly(name, nodes):
    ns = strict_parser().parse_args(rendered(name, nodes))
    assert ns.actor_num_nodes == nodes and ns.num_gpus_per_node == 4
    assert ns.colocate is True and ns.use_wandb is False
    assert ns.rotary_base == 1000000 and ns.lr == 1e-6
    assert ns.custom_generate_function_path == "holdem.generate_with_holdem.generate"
    expected = {"smoke": (2, 4, 2, 8, 512), "full": (3000, 16, 8, 128, 4096)}[name]
    assert (ns.num_rollout, ns.rollout_batch_size, ns.n_samples_per_prompt, ns.global_batch_size,
            ns.rollout_max_response_len) == expected


@pytest.mark.parametrize("name", ["smoke", "full"])
def test_golden_argv(name):
    """The rendered argv, one word per line; review changes to these files as diffs.
    Regenerate with UPDATE_GOLDEN=1."""
    text = "\n".join(rendered(name, 1)) + "\n"
    path = GOLDEN / f"{name}_nodes1.argv"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_no_secret_and_no_value_on_switches_with_wandb_on():
    argv = rendered("smoke", 1, env={"WANDB_API_KEY": "sekrit-key"})
    assert "--use-wandb" in argv and argv[argv.index("--wandb-group") + 1] == "qwen3-8B-holdem"
    assert not any("sekrit" in word for word in argv)
    assert "--wandb-key" not in argv
    for switch in ("--colocate", "--use-wandb", "--partial-rollout"):
        following = argv[argv.index(switch) + 1:argv.index(switch) + 2]
        assert all(w.startswith("--") for w in following), f"{switch} followed by stray value {following}"


def test_eval_renders_only_when_enabled():
    p = scale_topology(load_profile("full", env={}, sets=["eval.enabled=true", "eval.eval-prompt-data=[test, /d/t.jsonl]"]), None, None, env={})
    run_checks(p)
    argv = render_slime_args(p)
    i = argv.index("--eval-prompt-data")
    assert argv[i + 1:i + 3] == ["test", "/d/t.jsonl"]
    assert "--eval-interval" in argv
    assert "--eval-interval" not in rendered("full", 1)


@pytest.mark.parametrize("name, value, words", [
    ("colocate", True, ["--colocate"]),
    ("colocate", False, []),
    ("lr", None, []),
    ("rotary-base", 1000000, ["--rotary-base", "1000000"]),
    ("sglang-cuda-graph-bs", [1, 2, 4], ["--sglang-cuda-graph-bs", "1", "2", "4"]),
    ("save-interval", 20, ["--save-interval", "20"]),
])
def test_render_flag(name, value, words):
    assert render_flag(name, value) == words


def test_render_rejects_unknown_and_secret_flags():
    with pytest.raises(ConfigError, match="not in the pinned list.*did you mean --rollout-batch-size"):
        render_flag("rollout-batchsize", 3)
    with pytest.raises(ConfigError, match="secret on the command line"):
        render_flag("wandb-key", "abc")


def test_extra_flag_replaces_profile_value():
    p = scale_topology(load_profile("smoke", env={}), None, None, env={})
    argv = render_slime_args(p, extra={"load": "/ckpt", "save": "/other"})
    assert argv.count("--save") == 1 and argv[argv.index("--save") + 1] == "/other"
    assert argv[argv.index("--load") + 1] == "/ckpt"


def test_flag_table_names_the_commit():
    table = load_flag_table()
    assert "624b824" in table.source
    assert len({i.name for i in table.flags.values()}) > 1300

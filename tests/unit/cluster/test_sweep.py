"""Sweeps (cluster/sweep.py) and the eval stage's plan (cluster/stages/eval.py): expansion, the
dry-run, bad input as one `error:` line with nothing written, and the status readers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.sweep import MAX_POINTS, grid, parse_sweep_args, read_sweep_file, split_values
from cluster.sweep import latest_metrics, render_sweep
from cluster.stages.eval import eval_scores, render_scores
from tests.unit.cluster.helpers import run_submit
from tests.unit.cluster.test_submit_cli import assert_config_error


def test_values_split_on_top_level_commas_only():
    assert split_values("1e-6,5e-7") == ["1e-6", "5e-7"]
    assert split_values("[1, 2],[3]") == ["[1, 2]", "[3]"]
    assert split_values("'a,b', c") == ["'a,b'", "c"]


def test_grid_is_the_product_in_the_order_given():
    points = grid(parse_sweep_args(["lr=1e-6,5e-7", "eps-clip-high=0.28,0.3"]))
    assert [p.label for p in points] == ["lr=1e-6 eps-clip-high=0.28", "lr=1e-6 eps-clip-high=0.3",
                                         "lr=5e-7 eps-clip-high=0.28", "lr=5e-7 eps-clip-high=0.3"]
    assert [p.index for p in points] == [0, 1, 2, 3]
    assert points[3].name == "lr-5e-7_eps-clip-high-0.3"  # readable and path-safe: the save dir
    assert grid(parse_sweep_args(["slurm.partition=a/b"]))[0].name == "partition-a-b"


@pytest.mark.parametrize("items, fragment", [
    (["lr"], "expected KEY=V1,V2"),
    (["lr="], "an empty value list"),
    (["lr=1e-6,,2e-6"], "an empty value in"),
    (["lr=1e-6,1e-6"], "given twice"),
    (["lr=1", "lr=2"], "--sweep lr is given twice"),
])
def test_bad_sweep_arguments(items, fragment):
    with pytest.raises(ConfigError, match=fragment):
        grid(parse_sweep_args(items))


def test_the_number_of_points_is_bounded():
    values = ",".join(str(i) for i in range(1, 7))
    with pytest.raises(ConfigError, match=rf"6 x 6 = 36 points, more than the limit of {MAX_POINTS}"):
        grid(parse_sweep_args([f"lr={values}", f"eps-clip={values}"]))


def test_sweep_file_lists_override_sets(tmp_path):
    path = tmp_path / "points.yaml"
    path.write_text("- {lr: 1.0e-6, eps-clip-high: 0.28}\n- {lr: 5.0e-7}\n")
    points = read_sweep_file(str(path))
    assert [p.sets for p in points] == [["lr=1e-06", "eps-clip-high=0.28"], ["lr=5e-07"]]
    for text, fragment in (("[]", "an empty list"), ("{lr: 1}", "not a list"), ("- lr\n", "point 0 is not a mapping"),
                           ("- {}\n", "point 0 is empty")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=fragment):
            read_sweep_file(str(path))


def sweep_dry_run(root: Path, *args: str) -> dict:
    proc = run_submit("--profile", "demo", "--nodes", "2", "--stages", "data,model,convert,train,eval",
                      "--set", f"paths.root={root}", *args, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_dry_run_shows_the_shared_stages_once_and_every_point(tmp_path):
    plan = sweep_dry_run(tmp_path, "--sweep", "lr=1e-6,5e-7", "--sweep", "eps-clip-high=0.28,0.3")
    assert [s["name"] for s in plan["stages"]] == ["data", "model", "convert"]  # the single-chain shape: shared
    assert plan["sweep_keys"] == ["lr", "eps-clip-high"] and len(plan["points"]) == 4
    saves, chains = set(), set()
    for point in plan["points"]:
        stages = {s["name"]: s for s in point["stages"]}
        assert list(stages) == ["train", "eval"]
        args = stages["train"]["slime_args"]
        assert args[args.index("--lr") + 1] == str(float(point["overrides"]["lr"]))
        assert args[args.index("--eps-clip-high") + 1] == point["overrides"]["eps-clip-high"]
        assert args[args.index("--save") + 1] == point["save"] and point["save"].endswith("/sweep-" + point["name"])
        assert stages["train"]["slurm"]["dependency"] == "afterok:${data_id}:${model_id}:${convert_id}"
        assert stages["eval"]["slurm"]["dependency"].startswith("afterok:${train_id}")
        assert stages["eval"]["output"] == point["save"] + "/eval.json"
        for words in (stages["eval"]["argv"], stages["eval"]["step"]):  # one base-model score for all points
            assert words[-2:] == ["--base-scores", plan["chain_dir"] + "/eval-base"], words
        assert stages["train"]["launch"]["chain_dir"] == point["chain_dir"]  # own chain: own launch.json, requeue
        saves.add(point["save"])
        chains.add(point["chain_id"])
    assert len(saves) == len(chains) == 4 and all(c.startswith(plan["sweep_id"] + "-p") for c in chains)


def test_sweep_from_a_file_in_the_dry_run(tmp_path):
    path = tmp_path / "points.json"
    path.write_text(json.dumps([{"lr": 1e-6}, {"algorithm.lr": 5e-7, "kl-loss-coef": 0.01}]))
    plan = sweep_dry_run(tmp_path, "--sweep-file", str(path))
    assert [p["overrides"] for p in plan["points"]] == [{"lr": "1e-06"}, {"algorithm.lr": "5e-07", "kl-loss-coef": "0.01"}]


@pytest.mark.parametrize("args, fragment", [
    (["--sweep", "lr2=1,2"], "--sweep lr2: unknown key"),
    (["--sweep", "lr="], "--sweep lr: an empty value list"),
    (["--sweep", "global-batch-size=16,3"], "sweep point 1 (global-batch-size=3)"),
    (["--sweep", "lr=abc,1e-6"], "sweep point 0 (lr=abc): --sweep lr: algorithm.lr = 'abc': expected a number"),
    (["--sweep", "stages.data.split=train,dev"], "changes stage data, which the sweep runs once"),
    (["--sweep", "paths.save=/a,/b"], "paths.save is set per point by the sweep"),
    (["--sweep", "lr=1", "--sweep-file", "x.yaml"], "give one of them"),
    (["--sweep", "lr=1,2", "--stages", "data,model"], "a sweep trains once per point; include train"),
])
def test_bad_sweeps_are_one_error_line_and_submit_nothing(tmp_path, args, fragment):
    logs = tmp_path / "logs"
    proc = run_submit("--profile", "demo", "--nodes", "2", "--set", f"paths.root={tmp_path}",
                      "--set", f"paths.log_dir={logs}", *args)
    assert_config_error(proc, fragment)
    assert not logs.exists()  # nothing written, nothing submitted


def test_too_many_points_is_refused_before_any_profile_is_built(tmp_path):
    values = ",".join(f"{i}e-7" for i in range(1, 34))
    assert_config_error(run_submit("--profile", "demo", "--sweep", f"lr={values}", "--dry-run"),
                        f"33 points, more than the limit of {MAX_POINTS}")


def test_eval_stage_is_on_in_full_and_off_in_smoke_and_demo_unless_selected():
    names = lambda proc: [s["name"] for s in json.loads(proc.stdout)["stages"]]  # noqa: E731
    assert names(run_submit("--profile", "full", "--dry-run", "--json"))[-1] == "eval"
    assert "eval" not in names(run_submit("--profile", "smoke", "--dry-run", "--json"))
    assert "eval" not in names(run_submit("--profile", "demo", "--nodes", "2", "--dry-run", "--json"))
    plan = json.loads(run_submit("--profile", "smoke", "--stages", "train,eval", "--dry-run", "--json").stdout)
    evals = plan["stages"][-1]
    assert evals["name"] == "eval" and evals["depends_on"] == ["train"]
    step = evals["argv"]
    assert step[1:3] == ["-m", "cluster.launcher.evaluate"]
    assert step[step.index("--save") + 1] + "/eval.json" == evals["output"]
    assert "convert_torch_dist_to_hf.py" in step[step.index("--export") + 1]
    assert "sglang.launch_server" in step[step.index("--server") + 1]
    assert "{checkpoint}" in step[step.index("--export") + 1] and "{port}" in step[step.index("--server") + 1]
    assert "--base-scores" not in step  # a single chain has no other point to share the base score with


def test_eval_alone_needs_a_checkpoint_to_score(tmp_path):
    assert_config_error(run_submit("--profile", "demo", "--stages", "eval", "--set", f"paths.root={tmp_path}"),
                        "stage eval scores the newest checkpoint in paths.save")


def test_eval_alone_is_skipped_when_eval_json_scores_the_newest_checkpoint(tmp_path):
    from demo.checkpoint import save_marker

    save = tmp_path / "Qwen3-8B_slime"
    save_marker(save, 0, {"num_rollout": 1})
    sets = ["--set", f"paths.root={tmp_path}", "--stages", "eval", "--dry-run", "--json"]
    stage = json.loads(run_submit("--profile", "demo", *sets).stdout)["stages"][0]
    assert not stage["skip"] and "does not score iter_0000000 yet" in stage["reason"]
    (save / "eval.json").write_text(json.dumps({"checkpoint": str(save / "iter_0000000")}))
    stage = json.loads(run_submit("--profile", "demo", *sets).stdout)["stages"][0]
    assert stage["skip"] and "already scores iter_0000000" in stage["reason"]


def test_eval_scores_render_both_models_and_the_delta():
    record = {"checkpoint": "/s/iter_0000003", "rows": 24,
              "trained": {"exact_match": 0.5, "strict_accuracy": 0.375}, "base": {"exact_match": 0.375, "strict_accuracy": 0.25}}
    scores = eval_scores(record)
    assert scores["checkpoint"] == "iter_0000003" and scores["exact_match"]["delta"] == pytest.approx(0.125)
    assert render_scores(scores) == "exact-match 50.0% (base 37.5%, +12.5)  strict 37.5% (base 25.0%, +12.5)"
    assert eval_scores({"checkpoint": "x"}) is None and render_scores(None) == ""


def test_latest_metrics_from_the_driver_log(tmp_path):
    run = tmp_path / "restart-1"
    run.mkdir()
    (tmp_path / "restart-0").mkdir()
    (tmp_path / "restart-0" / "driver.log").write_text("rollout 9: {'rollout/raw_reward': 0.9}\n")
    (run / "driver.log").write_text("noise\nrollout 3: {'rollout/raw_reward': 0.25, 'rollout/x': 1}\n"
                                    "step 3: {'train/loss': 1.0}\n"
                                    "holdem.metrics: holdem rollout 4: {'holdem/samples': 16.0, 'holdem/reward/score': -0.125}\n")
    assert latest_metrics(str(tmp_path)) == {"rollout": 4, "reward": -0.125}
    assert latest_metrics(str(tmp_path / "none")) is None


def test_sweep_table_has_one_row_per_point():
    status = {"sweep_id": "s", "profile": "demo", "keys": ["lr"], "shared": [{"stage": "data", "state": "SKIPPED", "job_id": "-"}],
              "points": [{"index": i, "overrides": {"lr": v}, "state": "COMPLETED", "train_job": str(10 + i), "eval_job": "-",
                          "chain_id": f"s-p{i}", "latest": {"rollout": 1, "reward": 0.5},
                          "eval": eval_scores({"checkpoint": "/x/iter_1", "trained": {"exact_match": 0.5, "strict_accuracy": 0.5},
                                               "base": {"exact_match": 0.25, "strict_accuracy": 0.5}})}
                         for i, v in enumerate(("1e-6", "5e-7"))]}
    text = render_sweep(status)
    rows = [line for line in text.splitlines() if line.startswith(("p0 ", "p1 "))]
    assert len(rows) == 2 and "lr=5e-7" in rows[1] and "50.0%" in rows[0] and "+25.0" in rows[0]
    assert "shared stages: data SKIPPED" in text

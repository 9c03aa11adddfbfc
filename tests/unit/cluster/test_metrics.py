"""cluster.metrics: slime's metric lines as they reach the driver log, the per-rollout table, the
threshold flags, restarts, the CLI (bad input, --json, --plot)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from cluster import metrics
from cluster.metrics import Collector, Run, compute_flags, parse_dict, parse_line, steps_per_rollout
from tests.unit.cluster.helpers import ROOT, clean_env

# The formats of slime 624b824 (SLIME.md "What slime prints"): slime's logging prefix
# `[%(asctime)s] %(filename)s:%(lineno)d - `, Ray's actor prefix (coloured) in front when the line
# comes from an actor, Python dict reprs (nan / inf as Python prints them).
STEP = ("\x1b[36m(MegatronTrainRayActor pid=2144, ip=10.0.0.5)\x1b[0m [2026-12-06 13:17:33] model.py:660 - "
        "step 3: {'train/loss': -0.0123, 'train/pg_loss': -0.0123, 'train/entropy_loss': 0.51, "
        "'train/pg_clipfrac': 0.0, 'train/ppo_kl': 0.00042, 'train/kl_loss': 0.0, "
        "'train/train_rollout_logprob_abs_diff': 0.0112, 'train/grad_norm': 0.183, 'train/lr-pg_0': 1e-06, "
        "'train/step': 3}")
ROLLOUT = ("(MegatronTrainRayActor pid=2144, ip=10.0.0.5) [2026-12-06 13:17:20] train_metric_utils.py:131 - "
           "rollout 1: {'rollout/raw_reward': 0.125, 'rollout/log_probs': -0.41, 'rollout/response_lengths': 211.5}")
PERF = ("(RolloutManager pid=1999) [2026-12-06 13:17:10] rollout_metrics.py:290 - perf 1: "
        "{'rollout/response_len/mean': 211.5, 'rollout/zero_std/count_0.0': 2, 'perf/rollout_time': 41.2, "
        "'perf/tokens_per_gpu_per_sec': 1523.4, 'perf/longest_sample_tokens_per_sec': 98.7, "
        "'perf/effective_tokens_per_gpu_per_sec': 1400.1}")
NAN_STEP = "[2026-12-06 13:18:00] model.py:660 - step 4: {'train/ppo_kl': nan, 'train/grad_norm': inf, 'train/loss': -inf}"
EVAL = "[2026-12-06 13:19:00] rollout_metrics.py:259 - eval 25: {'eval/pokerbench_test': 0.31}"
CRITIC = "[2026-12-06 13:18:00] model.py:660 - critic-step 3: {'train/critic-value_loss': 0.2}"


def test_parse_step_line_behind_ray_and_logging_prefixes():
    line = parse_line(STEP)
    assert line is not None and (line.kind, line.ident, line.role) == ("step", 3, "")
    assert line.values["train/ppo_kl"] == 0.00042 and line.values["train/grad_norm"] == 0.183


@pytest.mark.parametrize("text, kind, ident, key, value", [
    (ROLLOUT, "rollout", 1, "rollout/raw_reward", 0.125),
    (PERF, "perf", 1, "perf/tokens_per_gpu_per_sec", 1523.4),
    (EVAL, "eval", 25, "eval/pokerbench_test", 0.31),
    ("step 0: {'train/grad_norm': 1.5}", "step", 0, "train/grad_norm", 1.5),  # bare print (older slime)
    (STEP.split(" - ", 1)[1] + " [repeated 2x across cluster]", "step", 3, "train/step", 3),
    ("perf 7: {'perf/tokens_per_gpu_per_sec': tensor(12.5), 'x': np.float64(2.0)}", "perf", 7,
     "perf/tokens_per_gpu_per_sec", 12.5),
])
def test_parse_each_kind(text, kind, ident, key, value):
    line = parse_line(text)
    assert line is not None and (line.kind, line.ident) == (kind, ident)
    assert line.values[key] == value


def test_nan_and_inf_as_python_prints_them():
    values = parse_line(NAN_STEP).values
    assert math.isnan(values["train/ppo_kl"]) and values["train/grad_norm"] == math.inf
    assert values["train/loss"] == -math.inf


@pytest.mark.parametrize("text", [
    "rollout 3 of 4 done",  # the demo driver's own line
    "step 3: {'a': __import__('os')}",  # never evaluated
    "step 3: {'a': 1",  # cut off
    "perf x: {'a': 1}",
    "[+4.1s] job 12-0 submitted: python3 train.py --rollout-batch-size 16",
    "some text step 3: [1, 2]",
])
def test_other_lines_are_not_metrics(text):
    assert parse_line(text) is None


def test_parse_dict_refuses_calls_it_does_not_know():
    with pytest.raises(ValueError):
        parse_dict("{'a': open('x')}")


def test_critic_steps_are_ignored():
    c = Collector(steps_per_rollout=1)
    assert not c.feed(Run("5", 0, Path("d")), CRITIC)


def step(n: int, kl: float = 1e-4, grad: float = 0.2, diff: float = 0.01) -> str:
    return (f"[2026-12-06 13:17:33] model.py:660 - step {n}: {{'train/ppo_kl': {kl!r}, 'train/grad_norm': {grad!r}, "
            f"'train/train_rollout_logprob_abs_diff': {diff!r}}}")


def rollout_lines(r: int, reward: float = 0.1, tps: float = 1500.0, longest: float = 100.0) -> list[str]:
    return [f"[t] rollout_metrics.py:290 - perf {r}: {{'perf/tokens_per_gpu_per_sec': {tps}, "
            f"'perf/longest_sample_tokens_per_sec': {longest}}}",
            f"(MegatronTrainRayActor pid=1) [t] train_metric_utils.py:131 - rollout {r}: {{'rollout/raw_reward': {reward}}}"]


def test_steps_map_to_rollouts_and_aggregate():
    c, run = Collector(steps_per_rollout=2), Run("7", 0, Path("d"))
    for r in range(2):
        for line in rollout_lines(r):
            c.feed(run, line)
        c.feed(run, step(2 * r, kl=-0.004 if r else 1e-4, grad=0.1))
        c.feed(run, step(2 * r + 1, kl=0.001, grad=0.3, diff=0.03))
    rows = c.ordered()
    assert [r.rollout for r in rows] == [0, 1]
    assert rows[1].metric("ppo_kl") == pytest.approx(0.004)  # the largest |kl| of the rollout's steps
    assert rows[1].metric("grad_norm") == pytest.approx(0.3)
    assert rows[1].metric("logprob_abs_diff") == pytest.approx(0.02)  # mean
    assert rows[0].metric("tokens_per_gpu_per_sec") == 1500.0 and rows[0].metric("raw_reward") == 0.1


def test_without_steps_per_rollout_a_step_joins_the_newest_rollout_of_its_run():
    c, run = Collector(), Run("7", 0, Path("d"))
    c.feed(run, step(0))  # before any rollout line: nowhere to put it
    for line in rollout_lines(4):
        c.feed(run, line)
    c.feed(run, step(9, grad=2.0))
    assert c.rows[4].metric("grad_norm") == 2.0 and list(c.rows) == [4]


def test_a_restart_redoing_rollouts_replaces_them_and_is_marked():
    c = Collector(steps_per_rollout=1)
    first, second = Run("9", 0, Path("a")), Run("9", 1, Path("b"))
    for r in range(3):
        for line in rollout_lines(r, reward=0.1):
            c.feed(first, line)
    for r in range(2, 4):  # resumed from the checkpoint after rollout 1
        for line in rollout_lines(r, reward=0.5):
            c.feed(second, line)
    rows = c.ordered()
    assert [(r.rollout, r.run.restart, r.redone) for r in rows] == [(0, 0, False), (1, 0, False), (2, 1, True), (3, 1, False)]
    assert rows[2].metric("raw_reward") == 0.5
    assert c.restarts() == [(second, 2)]
    table = metrics.render_table(c)
    assert "9/r1*" in table.splitlines()[3]


def collect(series: list[dict]) -> list:
    c, run = Collector(steps_per_rollout=1), Run("1", 0, Path("d"))
    for r, kw in enumerate(series):
        for line in rollout_lines(r, **{k: v for k, v in kw.items() if k in ("reward", "tps", "longest")}):
            c.feed(run, line)
        c.feed(run, step(r, **{k: v for k, v in kw.items() if k in ("kl", "grad", "diff")}))
    return c.ordered()


@pytest.mark.parametrize("last, flag", [
    ({"diff": 0.08}, "logp-diff-high"),
    ({"diff": 0.03}, "logp-diff-growing"),
    ({"kl": 0.02}, "kl-spike"),
    ({"grad": 5.0}, "grad-spike"),
    ({"grad": float("nan")}, "nan"),
    ({"tps": 500.0}, "throughput-drop"),
    ({"longest": 20.0}, "longest-slow"),
])
def test_threshold_crossings_are_flagged(last, flag):
    rows = collect([{}] * 4 + [last])
    flags = compute_flags(rows)
    assert flag in flags.get(4, []), flags
    assert all(r not in flags for r in range(4))  # a steady history is quiet


def test_no_flags_without_history():
    # A spike needs MIN_HISTORY earlier rollouts to be one
    assert compute_flags(collect([{}, {"grad": 50.0}])) == {}


def test_reward_flat_at_the_malformed_score():
    flags = compute_flags(collect([{"reward": -1.0}] * 3))
    assert flags == {2: ["reward-flat"]}


def test_steps_per_rollout_from_the_record():
    rec = {"stages": [{"name": "train", "slime_args": ["--rollout-batch-size", "16", "--n-samples-per-prompt", "8",
                                                        "--global-batch-size", "128"]}]}
    assert steps_per_rollout(rec) == 1
    rec["stages"][0]["slime_args"][-1] = "32"
    assert steps_per_rollout(rec) == 4
    assert steps_per_rollout({"stages": []}) is None


# --- the CLI on a chain dir -------------------------------------------------------------------

def make_chain(tmp_path: Path, runs: dict[int, list[str]], job: str = "41") -> Path:
    logs = tmp_path / "logs"
    chain = logs / "demo-1"
    train = chain / "train" / job
    train.mkdir(parents=True)
    for restart, lines in runs.items():
        d = train / f"restart-{restart}"
        d.mkdir()
        (d / "driver.log").write_text("".join(line + "\n" for line in lines))
    (chain / "chain.json").write_text(json.dumps({"chain_id": "demo-1", "profile": "demo", "stages": [
        {"name": "data", "job_id": "40", "log_dir": str(chain / "data" / "40")},
        {"name": "train", "job_id": job, "log_dir": str(train),
         "slime_args": ["--rollout-batch-size", "8", "--n-samples-per-prompt", "2", "--global-batch-size", "16"]}]}))
    return logs


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.metrics", *args], capture_output=True, text=True,
                          env=clean_env(), cwd=cwd, timeout=120)


def two_runs() -> dict[int, list[str]]:
    first = ["=== job 41 restart 0 ===", *rollout_lines(0), step(0), *rollout_lines(1), step(1),
             *rollout_lines(2, tps=400.0), "Traceback (most recent call last):"]
    second = [*rollout_lines(2), step(2), *rollout_lines(3), step(3, grad=9.0)]
    return {0: first, 1: second}


def test_cli_table_across_restarts(tmp_path):
    logs = make_chain(tmp_path, two_runs())
    proc = run_cli("demo-1", "--log-dir", str(logs), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["rollout", "run", "tok/gpu/s"]
    assert [ln.split()[0] for ln in lines[1:5]] == ["0", "1", "2", "3"]
    assert "41/r1*" in lines[3] and "41/r0" in lines[1]
    # the redone rollout 2 shows run 1's throughput, not the slow one of run 0
    assert "throughput-drop" not in proc.stdout
    by_job = run_cli("41", "--log-dir", str(logs), cwd=tmp_path)
    assert by_job.returncode == 0 and by_job.stdout == proc.stdout


def test_cli_json(tmp_path):
    logs = make_chain(tmp_path, two_runs())
    proc = run_cli("demo-1", "--log-dir", str(logs), "--json", cwd=tmp_path)
    data = json.loads(proc.stdout)
    assert [r["restart"] for r in data["runs"]] == [0, 1] and data["runs"][1]["first_rollout"] == 2
    assert [r["rollout"] for r in data["rows"]] == [0, 1, 2, 3]
    assert data["rows"][3]["grad_norm"] == 9.0 and data["rows"][3]["flags"] == ["grad-spike"]  # 3 rollouts at 0.2 before
    assert data["rows"][0]["tokens_per_gpu_per_sec"] == 1500.0


@pytest.mark.parametrize("args, words", [
    (["nope"], "no chain or job 'nope'"),
    (["40"], "the data stage"),
    (["demo-1", "--plot", "x.pdf"], "give a .png or .svg file"),
    (["demo-1", "--plot", "x.png", "-f"], "leave out -f"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, args, words):
    logs = make_chain(tmp_path, two_runs())
    proc = run_cli(*args, "--log-dir", str(logs), cwd=tmp_path)
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_cli_no_driver_log_yet(tmp_path):
    logs = make_chain(tmp_path, {})
    proc = run_cli("demo-1", "--log-dir", str(logs), cwd=tmp_path)
    assert proc.returncode == 2 and "no driver log yet" in proc.stderr


def test_follow_prints_rows_as_they_settle(tmp_path):
    import io

    logs = make_chain(tmp_path, two_runs())
    chain = logs / "demo-1"
    reader = metrics.Reader(chain, json.loads((chain / "chain.json").read_text()), None)
    out = io.StringIO()
    states = iter([False, True])
    metrics._follow(reader, out, False, lambda: next(states), poll_s=0.0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("rollout") and [ln.split()[0] for ln in lines[1:5]] == ["0", "1", "2", "3"]


def test_plot_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    logs = make_chain(tmp_path, two_runs())
    for name in ("run.png", "run.svg"):
        proc = run_cli("demo-1", "--log-dir", str(logs), "--plot", str(tmp_path / name), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") if name.endswith("png") else b"<svg" in data[:2000]
    assert "restart 1" in (tmp_path / "run.svg").read_text()


def test_matplotlib_is_not_imported_without_plot():
    code = ("import sys; from cluster import metrics; metrics.parse_line('step 1: {}'); "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr

"""The CPU demo (issue 9): scripts/demo.sh on the real local Slurm, and the demo's own parts.

First the parts that need no cluster: the shipped data file, the scripted policy through the real
holdem rollout, the checkpoint-like markers, the driver's and demo.sh's bad-input paths and the
demo profile's plan. Then the demo itself on the local cluster (integration): the first run, a
second run that skips the completed stages, LOAD_CKPT continuing from the markers, the demo's
deadline, a node killed mid-train (fail-fast) and the preemption signal (requeue + resume).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster.chain import list_chains
from cluster.outputs import TRACKER, newest_complete_checkpoint
from cluster.launcher.resume import resolve_resume
from tests.integration.conftest import LocalSlurm, log_tails
from demo import data as demo_data
from demo.checkpoint import ResumeError, load_marker, save_marker
from demo.faults import find_train, kill_node, preempt
from demo.policy import is_malformed_spot
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.sh"
TOKENIZER = ROOT / "demo" / "qwen3_tokenizer"
DEMO_DEADLINE_S = 600  # what the test allows one demo run; demo.sh gets 30 s less
STAGES = ("data", "model", "convert", "train")


def rows(n: int | None = None) -> list[dict]:
    lines = demo_data.DEMO_FILE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUN_PROFILE", "HF_CHECKPOINT", "REF_LOAD", "SAVE_DIR", "PROMPT_DATA", "LOAD_CKPT", "WANDB_API_KEY")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def py(*args: str, cwd: Path = ROOT, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    return lines[0]


# --- no cluster needed ----------------------------------------------------------------------------

def test_shipped_demo_data_is_its_generators_output_and_passes_holdem_data(tmp_path: Path) -> None:
    assert py("-m", "demo.data", "--check").returncode == 0
    data = demo_data.DEMO_FILE.read_bytes()
    assert data.startswith(demo_data.EXAMPLES.read_bytes())  # the six real rows, byte-exact, first
    assert data.count(b"\n") == 6 + demo_data.GENERATED_ROWS
    out = tmp_path / "train.jsonl"
    proc = py("-m", "holdem.data", "--source", str(demo_data.DEMO_FILE), "--split", "train", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "train.stats.json").read_text())["rows_out"] == 256


def test_scripted_policy_plays_the_real_rollout_and_reward() -> None:
    from holdem.chat import load_tokenizer
    from demo.report import summarize_rollout
    from demo.rollout import Prompt, play_batch
    from demo.sglang_standin import SGLangStandIn
    from demo.policy import demo_script

    spots = rows(24)
    bad = next(r for r in rows() if is_malformed_spot(r["instruction"]))
    spots.append(bad)
    prompts = [Prompt(i, i // 2, spots[i // 2]["instruction"], spots[i // 2]["output"]) for i in range(2 * len(spots))]
    with SGLangStandIn(load_tokenizer(str(TOKENIZER)), demo_script) as server:
        config = {"args": {"sglang_router_ip": "127.0.0.1", "sglang_router_port": server.port,
                           "hf_checkpoint": str(TOKENIZER), "rollout_max_response_len": 512},
                  "sampling_params": {"max_new_tokens": 512, "temperature": 1.0}}
        first = play_batch(config, prompts, 0)["samples"]
        again = play_batch(config, prompts, 0)["samples"]
    assert [s.response for s in first] == [s.response for s in again]  # deterministic per prompt
    for s in first:
        assert s.status.name == "COMPLETED" and s.metadata["holdem"]["end"] == "action", s.response
        assert len(s.loss_mask) == len(s.rollout_log_probs) == s.response_length > 0
        assert s.reward["made_action"] == 1.0 and s.reward["legal"] == 1.0, (s.response, s.reward)
        assert -1.0 <= s.reward["score"] <= 1.0
    recovered = [s for s in first if s.prompt == bad["instruction"]]
    assert all(s.reward["protocol_errors"] >= 1 and s.metadata["holdem"]["turns"] == 3 for s in recovered)
    entry = summarize_rollout(0, first, [{"host": "h", "samples": len(first), "seconds": 1.0}], 1.0)
    assert sum(entry["action_mix"].values()) == entry["samples"] == len(first)
    assert entry["protocol_errors"] == sum(int(s.reward["protocol_errors"]) for s in first) >= 2
    assert entry["model_tokens"] == sum(sum(s.loss_mask) for s in first) and entry["response_tokens_per_s"] > 0
    assert len(entry["action_mix"]) >= 3  # the heuristic plays more than one action


def test_driver_prints_slimes_metric_lines_that_cluster_metrics_reads(caplog: pytest.LogCaptureFixture) -> None:
    """demo/slime_metrics.py: the lines slime prints, from a real batch of the scripted policy."""
    import logging

    from cluster.metrics import Collector, Run
    from demo.driver import parse_args
    from demo.policy import demo_script
    from demo.rollout import Prompt, play_batch
    from demo.sglang_standin import SGLangStandIn
    from demo.slime_metrics import log_slime_metrics
    from holdem.chat import load_tokenizer

    spots = rows(8)
    prompts = [Prompt(i, i // 2, spots[i // 2]["instruction"], spots[i // 2]["output"]) for i in range(16)]
    with SGLangStandIn(load_tokenizer(str(TOKENIZER)), demo_script) as server:
        config = {"args": {"sglang_router_ip": "127.0.0.1", "sglang_router_port": server.port,
                           "hf_checkpoint": str(TOKENIZER), "rollout_max_response_len": 512},
                  "sampling_params": {"max_new_tokens": 512, "temperature": 1.0}}
        samples = play_batch(config, prompts, 0)["samples"]
    args = parse_args(["--num-rollout", "9", "--rollout-batch-size", "8", "--n-samples-per-prompt", "2",
                       "--global-batch-size", "8", "--prompt-data", "x", "--hf-checkpoint", "x", "--save", "x",
                       "--rollout-num-gpus", "8", "--reward-key", "score", "--use-kl-loss", "--kl-loss-coef", "0.001"])
    with caplog.at_level(logging.INFO, logger="demo.slime_metrics"):
        log_slime_metrics(5, args, samples, 2.0)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[0] for line in lines] == ["perf 5", "rollout 5", "step 10", "step 11"]  # 16 samples / gbs 8
    collector = Collector(steps_per_rollout=2)
    run = Run("7", 0, Path("driver.log"))
    assert all(collector.feed(run, f"demo.slime_metrics: {line}") for line in lines)
    row = collector.ordered()[0].to_dict()
    rewards = [s.reward["score"] for s in samples]
    response_tokens = sum(s.response_length for s in samples)
    assert row["rollout"] == 5 and row["steps"] == [10, 11]
    assert row["raw_reward"] == pytest.approx(sum(rewards) / 16, abs=1e-6)  # the real rewards
    assert row["tokens_per_gpu_per_sec"] == pytest.approx(response_tokens / 2.0 / 8, abs=1e-3)  # wall time, 8 GPUs
    assert row["longest_sample_tokens_per_sec"] == pytest.approx(max(s.response_length for s in samples) / 2.0, abs=1e-3)
    assert row["ppo_kl"] > 0  # the second step of a rollout is off-policy (stand-in); the first is 0
    assert 0.005 < row["logprob_abs_diff"] < 0.02 and 0 < row["grad_norm"] < 1  # stand-ins in healthy ranges
    first_step = collector.ordered()[0].steps[10]
    assert first_step["train/ppo_kl"] == 0.0 and first_step["train/pg_clipfrac"] == 0.0  # on-policy: GRPO's ratio 1


def test_markers_are_megatron_layout_and_a_half_written_save_is_never_taken(tmp_path: Path) -> None:
    save = tmp_path / "save"
    assert load_marker(save, None) is None  # no tracker yet: start fresh, as slime does
    for rollout_id in range(3):
        save_marker(save, rollout_id, {"num_rollout": 9})
    assert (save / TRACKER).read_text().strip() == "2"
    assert json.loads((save / "iter_0000002" / ".metadata").read_text())["iteration"] == 2
    assert load_marker(save, None).iteration == 2
    info = resolve_resume(None, str(save), "/ref")
    assert info.flags == {"load": str(save)} and info.checkpoint.endswith("iter_0000002")

    # A save killed half-way: its dir has a temporary name and the tracker has not moved.
    partial = save / ".iter_0000003.partial-4242"
    partial.mkdir()
    (partial / ".metadata").write_text("{")
    assert load_marker(save, None).iteration == 2
    assert newest_complete_checkpoint(save)[0].name == "iter_0000002"

    (save / TRACKER).write_text("5\n")  # a tracker naming a dir that is not there
    with pytest.raises(ResumeError, match="iter_0000005"):
        load_marker(save, None)
    info = resolve_resume(None, str(save), "/ref")
    assert info.flags == {"load": str(save), "ckpt-step": 2}  # the launcher's choice; the driver follows it
    assert load_marker(save, 2).iteration == 2
    with pytest.raises(ResumeError, match="ckpt-step 7"):
        load_marker(save, 7)


def driver_args(tmp_path: Path, save: Path, *extra: str) -> list[str]:
    data = tmp_path / "train.jsonl"
    data.write_bytes(demo_data.EXAMPLES.read_bytes())
    return ["-m", "demo.driver", "--num-rollout", "3", "--rollout-batch-size", "2",
            "--prompt-data", str(data), "--input-key", "instruction", "--label-key", "output",
            "--hf-checkpoint", str(TOKENIZER), "--save", str(save), "--lr", "1e-6", *extra]


def test_driver_bad_inputs_are_one_error_line(tmp_path: Path) -> None:
    save = tmp_path / "save"
    save.mkdir()
    (save / TRACKER).write_text("1\n")
    line = one_error_line(py(*driver_args(tmp_path, save, "--load", str(save))))
    assert "iter_0000001" in line and "LOAD_CKPT" in line
    line = one_error_line(py(*driver_args(tmp_path, tmp_path / "s2", "--load", str(save), "--ckpt-step", "4")))
    assert "iter_0000004" in line
    argv = driver_args(tmp_path, tmp_path / "s3")
    argv[argv.index("--prompt-data") + 1] = str(tmp_path / "missing.jsonl")
    assert "missing.jsonl" in one_error_line(py(*argv))
    assert "--num-rollout" in one_error_line(py("-m", "demo.driver", "--save", str(save)))


def test_report_summary_cli_warns_about_a_report_from_another_job(tmp_path: Path) -> None:
    from demo.checkpoint import start_report, write_report
    from demo.report import summarize_rollout, summarize_run

    save = tmp_path / "save"
    report = start_report(save, {"slurm_job_id": "41", "resumed_from": None}, 2, 0)
    report["rollouts"] = [summarize_rollout(0, [], [{"host": "n1", "samples": 0, "seconds": 0.5}], 0.5)]
    report["summary"] = summarize_run(report["rollouts"])
    write_report(save, report)
    proc = py("-m", "demo.report", str(save / "report.json"), "--job", "42")
    assert proc.returncode == 0, proc.stderr
    assert "not written by train job 42" in proc.stdout and "rollouts       1/2 (incomplete; 1 run(s))" in proc.stdout
    assert "not written" not in py("-m", "demo.report", str(save / "report.json"), "--job", "41").stdout
    assert "no readable report" in one_error_line(py("-m", "demo.report", str(tmp_path / "none.json")))


def test_demo_faults_without_a_chain_is_one_error_line(tmp_path: Path) -> None:
    assert "no chain under" in one_error_line(py("-m", "demo.faults", "kill-node", cwd=tmp_path))
    chain = tmp_path / "c"
    chain.mkdir()
    (chain / "chain.json").write_text(json.dumps({"stages": [{"name": "train", "job_id": None}]}))
    assert "no submitted train job" in one_error_line(py("-m", "demo.faults", "preempt", str(chain)))


def test_driver_finishes_at_once_when_every_rollout_is_done(tmp_path: Path) -> None:
    save = tmp_path / "save"
    for rollout_id in range(3):
        save_marker(save, rollout_id, {"num_rollout": 3})
    proc = py(*driver_args(tmp_path, save, "--load", str(save)))  # no Ray here: it must not need it
    assert proc.returncode == 0, proc.stderr
    assert "all 3 rollouts are done already" in proc.stdout
    report = json.loads((save / "report.json").read_text())
    assert report["complete"] and report["runs"][-1]["start_rollout"] == 3


def test_demo_sh_is_valid_bash_and_rejects_bad_usage() -> None:
    assert subprocess.run(["bash", "-n", str(DEMO)]).returncode == 0
    proc = subprocess.run(["bash", str(DEMO), "extra"], capture_output=True, text=True, timeout=30)
    assert "takes no arguments" in one_error_line(proc)
    proc = subprocess.run(["bash", str(DEMO)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "DEMO_TIMEOUT_S": "soon"})
    assert "DEMO_TIMEOUT_S" in one_error_line(proc)


def test_demo_profile_plan(tmp_path: Path) -> None:
    proc = py("-m", "cluster.submit", "--profile", "demo", "--nodes", "2", "--dry-run", "--json", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    stages = {s["name"]: s for s in plan["stages"]}
    assert list(stages) == list(STAGES)
    work = ROOT / "demo-run"  # relative paths are made absolute against the submit dir
    assert stages["data"]["argv"][1:] == ["-m", "holdem.data", "--source", str(ROOT / "demo" / "pokerbench-demo.jsonl"),
                                          "--split", "train", "--out", str(work / "pokerbench" / "train.jsonl")]
    assert stages["model"]["argv"][1:] == ["-m", "demo.stages", "model", str(work / "Qwen3-8B")]
    assert stages["convert"]["argv"][1:4] == ["-m", "demo.stages", "convert"]
    train = stages["train"]
    assert train["slurm"]["nodes"] == 2 and train["slurm"]["gpus-per-node"] == 4
    assert "exclusive" not in train["slurm"] and train["slurm"]["requeue"] and train["max_restarts"] > 0
    args = train["slime_args"]
    assert args[args.index("--save-interval") + 1] == "1"
    assert args[args.index("--hf-checkpoint") + 1] == str(work / "Qwen3-8B")
    launch = train["launch"]
    assert launch["entrypoint"][:3] == [sys.executable, "-m", "demo.driver"]
    assert launch["working_dir"] == str(ROOT) and launch["expected_gpus"] == 8
    assert launch["ray"]["object_store_memory"] == 200_000_000
    assert launch["ray"]["health_check"]["RAY_health_check_period_ms"] == "500"


# --- the demo on the local cluster ----------------------------------------------------------------

@dataclass
class DemoRun:
    proc: subprocess.CompletedProcess
    seconds: float
    work: Path

    @property
    def chain_dir(self) -> Path:
        return list_chains(self.work / "logs")[0]

    @property
    def save(self) -> Path:
        return self.work / "Qwen3-8B_slime"

    def report(self) -> dict:
        return json.loads((self.save / "report.json").read_text())

    def status(self) -> dict:
        proc = py("-m", "cluster.status", str(self.chain_dir), "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def states(self) -> dict[str, str]:
        return {s["stage"]: s["state"] for s in self.status()["stages"]}

    def explain(self) -> str:
        return f"\n--- demo.sh stdout (tail):\n{self.proc.stdout[-4000:]}\n--- stderr:\n{self.proc.stderr[-3000:]}"


def demo_env(work: Path, *sets: str, deadline_s: int = DEMO_DEADLINE_S - 30) -> dict[str, str]:
    return clean_env(DEMO_WORK_DIR=str(work), DEMO_TIMEOUT_S=str(deadline_s), DEMO_PYTHON=sys.executable,
                     DEMO_SETS=" ".join(sets))


def run_demo(work: Path, *sets: str, deadline_s: int = DEMO_DEADLINE_S - 30) -> DemoRun:
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(DEMO)], env=demo_env(work, *sets, deadline_s=deadline_s),
                          capture_output=True, text=True, timeout=DEMO_DEADLINE_S)
    return DemoRun(proc, time.monotonic() - t0, work)




@pytest.fixture(scope="module")
def first_run(local_slurm: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    run = run_demo(tmp_path_factory.mktemp("demo") / "work")
    print(f"demo first run: {run.seconds:.1f} s")
    return run


@pytest.fixture(scope="module")
def second_run(first_run: DemoRun) -> DemoRun:
    assert first_run.proc.returncode == 0, first_run.explain()
    run = run_demo(first_run.work)
    print(f"demo second run: {run.seconds:.1f} s (first: {first_run.seconds:.1f} s)")
    return run


@pytest.mark.integration
def test_first_run_completes_every_stage_and_writes_the_report(first_run: DemoRun) -> None:
    run = first_run
    assert run.proc.returncode == 0, run.explain()
    assert run.states() == {s: "COMPLETED" for s in STAGES}, run.explain()
    report = run.report()
    assert report["complete"] and [r["rollout_id"] for r in report["rollouts"]] == [0, 1, 2, 3]
    for entry in report["rollouts"]:
        assert entry["samples"] == 16 and sum(entry["action_mix"].values()) == 16
        assert -1.0 <= entry["reward_mean"] <= 1.0 and entry["response_tokens_per_s"] > 0
        assert entry["saved"] == f"iter_{entry['rollout_id']:07d}"
    hosts = set(report["summary"]["tasks_per_host"])  # both nodes of the allocation ran tasks (which two is Slurm's choice)
    assert len(hosts) == 2 and hosts <= {"n1", "n2", "n3"}, report["summary"]
    assert {n["name"] for n in report["runs"][0]["ray_nodes"]} == hosts
    assert (run.save / TRACKER).read_text().strip() == "3"
    assert all((run.save / f"iter_{i:07d}" / ".metadata").is_file() for i in range(4))
    out = run.proc.stdout
    assert "STAGE" in out and f"rollout report: {run.save / 'report.json'}" in out and "reward mean" in out
    logs = py("-m", "cluster.logs", str(run.chain_dir)).stdout
    assert "stand-in for `hf download" in logs and "stand-in for slime's tools/convert" in logs
    assert "rollout 4/4" in logs and "holdem rollout 3" in logs  # the driver and log_rollout_data
    proc = py("-m", "cluster.metrics", str(run.chain_dir), "--json")  # slime's metric lines in the driver log
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert [r["rollout"] for r in metrics["rows"]] == [0, 1, 2, 3], metrics
    by_id = {e["rollout_id"]: e for e in report["rollouts"]}
    for row in metrics["rows"]:
        assert row["raw_reward"] == pytest.approx(by_id[row["rollout"]]["reward_mean"], abs=1e-3)  # the real rewards
        assert row["tokens_per_gpu_per_sec"] > 0 and row["grad_norm"] is not None and row["steps"] == [row["rollout"]]


@pytest.mark.integration
def test_second_run_skips_the_completed_stages(second_run: DemoRun) -> None:
    assert second_run.proc.returncode == 0, second_run.explain()
    assert second_run.states() == {"data": "SKIPPED", "model": "SKIPPED", "convert": "SKIPPED",
                                   "train": "COMPLETED"}, second_run.explain()
    assert "skipped" in second_run.proc.stdout


@pytest.mark.integration
def test_second_run_resumes_from_the_markers_without_redoing_rollouts(second_run: DemoRun) -> None:
    report = second_run.report()
    last = report["runs"][-1]
    assert last["start_rollout"] == 4 and last["resumed_from"].endswith("iter_0000003"), (last, second_run.explain())
    assert [r["rollout_id"] for r in report["rollouts"]] == [0, 1, 2, 3]
    assert "all 4 rollouts are done already" in second_run.proc.stdout


@pytest.mark.integration
def test_load_ckpt_continues_from_the_markers(second_run: DemoRun) -> None:
    save = second_run.save
    run = run_demo(second_run.work, "num-rollout=6", f"paths.load={save}")
    assert run.proc.returncode == 0, run.explain()
    report = run.report()
    last = report["runs"][-1]
    assert last["resumed_from"] == str(save / "iter_0000003") and last["start_rollout"] == 4, last
    assert [r["rollout_id"] for r in report["rollouts"]] == list(range(6)) and report["complete"]
    assert (save / TRACKER).read_text().strip() == "5"
    assert "resuming from" in run.proc.stdout and "continuing at rollout 5 of 6" in run.proc.stdout


@pytest.mark.integration
def test_demo_deadline_cancels_the_chain(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    run = run_demo(tmp_path / "work", deadline_s=8)  # enough to submit, far too short for the train stage
    assert run.proc.returncode == 1, run.explain()
    assert "did not finish within DEMO_TIMEOUT_S=8 s" in run.proc.stderr, run.explain()
    assert "cancelling the chain's jobs" in run.proc.stdout
    states = wait_for(lambda: (s := run.states())["train"] not in ("PENDING", "RUNNING") and s,
                      "the train job to leave the queue", 120, run.explain)
    assert states["train"] == "CANCELLED", states


def start_demo(work: Path, *sets: str) -> tuple[subprocess.Popen, Path]:
    work.mkdir(parents=True)
    out = work.parent / "demo.out"
    with open(out, "w") as fh:
        proc = subprocess.Popen(["bash", str(DEMO)], env=demo_env(work, *sets), stdout=fh, stderr=subprocess.STDOUT)
    return proc, out


def train_started(work: Path) -> Path | None:
    """The chain dir once its train job has started (its restart dir exists)."""
    chains = list_chains(work / "logs")
    return chains[0] if chains and list((chains[0] / "train").glob("*/restart-*")) else None


def rollouts_done(save: Path) -> int:
    try:
        return len(json.loads((save / "report.json").read_text())["rollouts"])
    except (OSError, ValueError, KeyError):
        return 0


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # demo.sh cancels its chain's jobs on INT
        proc.wait(timeout=60)


@pytest.mark.integration
def test_killing_a_node_mid_train_fails_the_chain_fast(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    work = tmp_path / "work"
    # quarantine off: on the 3-node test cluster node 0 would otherwise leave n2 out and requeue
    # (tests/integration/test_quarantine.py); this checks the fail-fast path itself
    proc, out = start_demo(work, "num-rollout=400", "slurm.max_excluded_nodes=0")
    tails = lambda: log_tails([out, *(work / "logs").glob("*/train")])  # noqa: E731
    try:
        wait_for(lambda: rollouts_done(work / "Qwen3-8B_slime") >= 1, "the first rollout", 300, tails)
        chain = wait_for(lambda: train_started(work), "the train job's launcher dirs", 60, tails)
        victim = json.loads(find_train(chain)[2].heartbeat(1).read_text())["host"]  # n2, unless the job got n[1,3]
        print(kill_node(chain, 1))  # node 1 dies: its launcher and its Ray, SIGKILL
        killed = time.monotonic()
        code = proc.wait(timeout=180)
        print(f"node killed -> demo.sh exited in {time.monotonic() - killed:.1f} s")
    finally:
        stop(proc)
    assert code == 1, tails()
    text = out.read_text()
    assert "FAILED" in text and "did not complete" in text, tails()
    done = json.loads(find_train(chain)[2].done.read_text())
    assert done["message"].count(victim) >= 2, done  # named as the lost node, and as the one not left out
    assert f"not leaving {victim} out: slurm.max_excluded_nodes = 0" in done["message"], done
    report = json.loads((work / "Qwen3-8B_slime" / "report.json").read_text())
    assert not report["complete"] and 1 <= len(report["rollouts"]) < 400
    found, _why = newest_complete_checkpoint(work / "Qwen3-8B_slime")
    assert found is not None  # the markers written before the failure are intact


@pytest.mark.integration
def test_preemption_signal_requeues_and_resumes_from_the_markers(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    work = tmp_path / "work"
    save = work / "Qwen3-8B_slime"
    # No LOAD_CKPT: after the requeue the launcher finds the newest complete marker in paths.save.
    proc, out = start_demo(work, "num-rollout=150")
    tails = lambda: log_tails([out, *(work / "logs").glob("*/train")])  # noqa: E731
    try:
        wait_for(lambda: rollouts_done(save) >= 2, "two rollouts with markers", 300, tails)
        chain = wait_for(lambda: train_started(work), "the train job's launcher dirs", 60, tails)
        print(preempt(chain))
        code = proc.wait(timeout=DEMO_DEADLINE_S)
    finally:
        stop(proc)
    assert code == 0, tails()
    report = json.loads((save / "report.json").read_text())
    restarted = [r for r in report["runs"] if r["slurm_restart"] == "1"]
    assert len(report["runs"]) == 2 and restarted, report["runs"]
    assert restarted[0]["resumed_from"] and restarted[0]["start_rollout"] >= 2, restarted
    assert [r["rollout_id"] for r in report["rollouts"]] == list(range(150)) and report["complete"]
    assert (save / TRACKER).read_text().strip() == "149"
    text = out.read_text()
    assert "requeueing (restart 1" in text and "resuming from" in text, tails()

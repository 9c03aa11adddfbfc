"""Sweeps and the eval stage on the real local Slurm with the demo profile (issue 15).

A 2-point sweep (`--sweep lr=1e-6,5e-7`, 2 nodes per point) submits data, model and convert once
and one train + eval chain per point; each point trains into its own save dir and its eval stage
exports the final checkpoint (stand-in), serves it and the starting model with the SGLang
stand-in and scores both with the real `holdem.eval`. Then `--stages train,eval` on the same
outputs, and `cluster.status` for both. The runs are kept short (2 rollouts, 24 eval rows).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster.launcher.evaluate import METRICS
from cluster.outputs import TRACKER
from tests.integration.conftest import LocalSlurm, log_tails
from tests.integration.test_demo import py
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED"}
DEADLINE_S = 600


def demo_sets(work: Path) -> list[str]:
    return ["--set", f"paths.root={work}", "--set", f"paths.log_dir={work / 'logs'}", "--set", "num-rollout=2"]


@dataclass
class Sweep:
    work: Path
    submitted: dict
    status: dict
    seconds: float

    @property
    def points(self) -> list[dict]:
        return self.status["points"]

    def tails(self) -> str:
        return log_tails([self.work / "logs"], lines=15)


def sweep_status(ref: str, work: Path) -> dict:
    proc = py("-m", "cluster.status", ref, "--log-dir", str(work / "logs"), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def sweep_final(sweep_id: str, work: Path) -> dict | None:
    status = sweep_status(sweep_id, work)
    states = [r["state"] for r in status["shared"] if r["state"] != "SKIPPED"]
    states += [r["state"] for p in status["points"] for r in p["stages"] if not r.get("shared")]
    return status if all(s.split()[0] in FINAL for s in states) else None


@pytest.fixture(scope="module")
def sweep(local_slurm: LocalSlurm, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    work = tmp_path_factory.mktemp("sweep") / "work"
    t0 = time.monotonic()
    proc = py("-m", "cluster.submit", "--profile", "demo", "--nodes", "2", "--stages", "data,model,convert,train,eval",
              *demo_sets(work), "--sweep", "lr=1e-6,5e-7", "--json")
    assert proc.returncode == 0, proc.stderr
    submitted = json.loads(proc.stdout)
    status = wait_for(lambda: sweep_final(submitted["sweep_id"], work), "every job of the sweep to end", DEADLINE_S,
                      lambda: log_tails([work / "logs"], lines=15))
    run = Sweep(work, submitted, status, time.monotonic() - t0)
    print(f"2-point sweep (shared stages + 2 x train/eval): {run.seconds:.1f} s")
    return run


def test_sweep_submits_the_shared_stages_once_and_a_chain_per_point(sweep: Sweep) -> None:
    shared = sweep.submitted["shared"]["job_ids"]
    assert set(shared) == {"data", "model", "convert"}, sweep.submitted
    assert [r["state"] for r in sweep.status["shared"]] == ["COMPLETED"] * 3, sweep.tails()
    chains = set()
    for point in sweep.points:
        assert point["state"] == "COMPLETED", (point, sweep.tails())
        record = json.loads((sweep.work / "logs" / point["chain_id"] / "chain.json").read_text())
        own = {s["name"]: s for s in record["stages"] if not s.get("shared")}
        assert list(own) == ["train", "eval"]
        assert {s["name"]: s["job_id"] for s in record["stages"] if s.get("shared")} == shared  # the same jobs
        assert own["train"]["slurm"]["dependency"] == f"afterok:${{data_id}}:${{model_id}}:${{convert_id}}"
        args = own["train"]["slime_args"]
        assert args[args.index("--lr") + 1] == str(float(point["overrides"]["lr"]))
        assert args[args.index("--save") + 1] == point["save"]
        launch = json.loads((sweep.work / "logs" / point["chain_id"] / "train" / "launch.json").read_text())
        assert launch["resume"]["save_dir"] == point["save"]  # requeue/resume per point
        chains.add(point["chain_id"])
    assert len(chains) == 2


def test_each_point_trains_into_its_own_save_dir_and_is_scored(sweep: Sweep) -> None:
    saves = {p["save"] for p in sweep.points}
    assert len(saves) == 2
    for point in sweep.points:
        save = Path(point["save"])
        assert (save / TRACKER).read_text().strip() == "1", sweep.tails()
        report = json.loads((save / "report.json").read_text())
        assert report["complete"] and [r["rollout_id"] for r in report["rollouts"]] == [0, 1]
        result = json.loads((save / "eval.json").read_text())
        assert result["checkpoint"] == str(save / "iter_0000001") and result["rows"] == 24
        for which in ("trained", "base"):
            assert 0.0 <= result[which]["exact_match"] <= 1.0 and 0.0 <= result[which]["strict_accuracy"] <= 1.0
        assert result["base"]["model"] == str(sweep.work / "Qwen3-8B")
        assert result["delta"]["exact_match"] == pytest.approx(result["trained"]["exact_match"] - result["base"]["exact_match"])
        assert point["eval"]["exact_match"]["trained"] == result["trained"]["exact_match"]
        assert point["latest"] == {"rollout": 1, "reward": pytest.approx(point["latest"]["reward"])}
        logs = py("-m", "cluster.logs", point["chain_id"], "--log-dir", str(sweep.work / "logs"), "--stage", "eval").stdout
        assert "stopped in" in logs and "healthy at http://127.0.0.1:" in logs, logs[-3000:]



def test_the_points_share_one_score_of_the_starting_model(sweep: Sweep) -> None:
    """Both points' evals score the same starting model with the same settings: the first to get
    there stores its score under the sweep's shared dir, a later one reuses it (two evals running
    at the same time may both score it: which happened depends on the scheduling, so either is
    accepted; tests/unit/cluster/test_eval_base_scores.py checks the reuse itself)."""
    records = [json.loads((Path(p["save"]) / "eval.json").read_text()) for p in sweep.points]
    shared = {r["base_shared"]["file"] for r in records}
    assert len(shared) == 1, records
    path = Path(shared.pop())
    assert path.parent == sweep.work / "logs" / sweep.submitted["sweep_id"] / "eval-base", path
    stored = json.loads(path.read_text())
    assert stored["key"]["base_model"] == str(sweep.work / "Qwen3-8B") and stored["key"]["limit"] == 24
    assert not all(r["base_shared"]["reused"] for r in records)  # someone scored it
    for record in records:
        assert {m: record["base"][m] for m in METRICS} == {m: stored["base"][m] for m in METRICS}
    reused = [p["index"] for p, r in zip(sweep.points, records) if r["base_shared"]["reused"]]
    print(f"points that reused the stored base score: {reused}")
    for point, record in zip(sweep.points, records):
        logs = py("-m", "cluster.logs", point["chain_id"], "--log-dir", str(sweep.work / "logs"), "--stage", "eval").stdout
        said = "reusing its score from" if record["base_shared"]["reused"] else "stored its score in"
        assert f"base model: {said} {path}" in logs, logs[-3000:]
        assert ("server (base)" in logs) != record["base_shared"]["reused"], logs[-3000:]  # served only when scored


def test_status_of_the_sweep_has_one_row_per_point(sweep: Sweep) -> None:
    proc = py("-m", "cluster.status", sweep.submitted["sweep_id"], "--log-dir", str(sweep.work / "logs"))
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("p0 ", "p1 "))]
    assert len(rows) == 2, proc.stdout
    assert "lr=1e-6" in rows[0] and "lr=5e-7" in rows[1] and all("COMPLETED" in r and "%" in r for r in rows)
    assert "shared stages: data COMPLETED" in proc.stdout


@pytest.fixture(scope="module")
def train_eval(sweep: Sweep) -> tuple[dict, float]:
    """`--stages train,eval` on the sweep's upstream outputs (data, model, convert are complete)."""
    t0 = time.monotonic()
    proc = py("-m", "cluster.submit", "--profile", "demo", "--nodes", "2", "--stages", "train,eval",
              *demo_sets(sweep.work), "--json")
    assert proc.returncode == 0, proc.stderr
    chain = json.loads(proc.stdout)
    follow = py("-m", "cluster.logs", chain["chain_dir"], "-f", timeout=DEADLINE_S)
    assert follow.returncode == 0, follow.stderr
    print(f"--stages train,eval: {time.monotonic() - t0:.1f} s")
    return chain, time.monotonic() - t0


def test_stages_train_eval_scores_the_trained_policy(train_eval: tuple[dict, float], sweep: Sweep) -> None:
    chain, _seconds = train_eval
    assert [s["name"] for s in chain["stages"]] == ["train", "eval"] and chain["stages"][1]["depends_on"] == ["train"]
    status = sweep_status(chain["chain_dir"], sweep.work)
    assert status["state"] == "COMPLETED", (status, log_tails([Path(chain["chain_dir"])]))
    scores = next(r for r in status["stages"] if r["stage"] == "eval")["eval"]
    assert scores["checkpoint"] == "iter_0000001" and scores["rows"] == 24
    assert scores["exact_match"]["delta"] == pytest.approx(scores["exact_match"]["trained"] - scores["exact_match"]["base"])
    text = py("-m", "cluster.status", chain["chain_dir"]).stdout
    assert "eval iter_0000001: exact-match" in text and "strict" in text and "base" in text, text


def test_eval_is_skipped_once_eval_json_scores_the_checkpoint(train_eval: tuple[dict, float], sweep: Sweep) -> None:
    proc = py("-m", "cluster.submit", "--profile", "demo", "--nodes", "2", "--stages", "eval", *demo_sets(sweep.work),
              "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    stage = json.loads(proc.stdout)["stages"][0]
    assert stage["name"] == "eval" and stage["skip"] and "already scores iter_0000001" in stage["reason"]

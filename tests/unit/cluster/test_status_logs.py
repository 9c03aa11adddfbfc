"""Pure parts of status, logs and submission: Slurm output parsing (captured from the local
cluster), the state table, labels, log tailing, executor parameters."""
from __future__ import annotations

import io
import subprocess
import sys
import threading

import pytest

from cluster.slurm import FINAL, STATE_TABLE, map_state, parse_sacct, parse_squeue
from cluster.logs import Follower, Tail, follow, label_for
from cluster.slurm import parse_time_minutes, render_executor_params
from cluster.status import chain_state, render_table, stage_rows
from tests.unit.cluster.helpers import ROOT, clean_env

# Captured from `sacct -D -X -P -n -o JobIDRaw,State,NodeList,Elapsed,ExitCode,Reason` on the
# local cluster (job 31 was requeued twice by `scontrol requeue`).
SACCT = """\
8|COMPLETED|n1|00:00:02|0:0|Dependency
9|FAILED|n1|00:00:01|1:0|None
10|CANCELLED by 0|None assigned|00:00:00|0:0|DependencyNeverSatisfied
31|REQUEUED|n1,n2|00:00:12|0:15|None
31|REQUEUED|n1,n2|00:00:09|0:15|None
31|RUNNING|n[1-2]|00:00:04|0:0|None
"""


def test_parse_sacct_counts_restarts_and_maps_states():
    jobs = parse_sacct(SACCT)
    assert jobs["8"].state == "COMPLETED" and jobs["8"].final
    assert jobs["9"].state == "FAILED" and jobs["9"].exit_code == "1:0"
    assert jobs["10"].state == "CANCELLED" and jobs["10"].reason == "DependencyNeverSatisfied"
    assert jobs["31"].state == "RUNNING" and jobs["31"].restarts == 2 and jobs["31"].nodes == "n[1-2]"
    assert not jobs["31"].final


def test_parse_squeue():
    jobs = parse_squeue("40|PENDING||0:00|Dependency\n41|RUNNING|n1|0:05|None\n")
    assert jobs["40"].state == "PENDING" and jobs["40"].reason == "Dependency"
    assert jobs["41"].state == "RUNNING" and jobs["41"].nodes == "n1"


@pytest.mark.parametrize("slurm, ours", [("CANCELLED by 1000", "CANCELLED"), ("COMPLETING", "RUNNING"),
                                         ("NODE_FAIL", "FAILED"), ("OUT_OF_MEMORY", "FAILED"),
                                         ("REQUEUED", "PENDING"), ("PREEMPTED", "PREEMPTED"), ("WEIRD", "WEIRD")])
def test_state_table(slurm, ours):
    assert map_state(slurm) == ours


def test_final_states_are_ours():
    assert FINAL <= set(STATE_TABLE.values())


RECORD = {"stages": [
    {"name": "data", "skip": True, "job_id": None, "log_dir": None},
    {"name": "model", "skip": False, "job_id": "9", "log_dir": "/l/model/9"},
    {"name": "convert", "skip": False, "job_id": "10", "log_dir": "/l/convert/10"},
]}


def test_stage_rows_and_chain_state():
    rows = stage_rows(RECORD, parse_sacct(SACCT))
    assert [r["state"] for r in rows] == ["SKIPPED", "FAILED", "CANCELLED"]
    assert chain_state(rows) == "FAILED at model"
    table = render_table(rows)
    assert "/l/model/9" in table and "convert: DependencyNeverSatisfied" in table
    assert chain_state([{"stage": "a", "state": "SKIPPED"}]) == "COMPLETED (all skipped)"
    assert chain_state([{"stage": "a", "state": "COMPLETED"}, {"stage": "b", "state": "RUNNING"}]) == "RUNNING b"


def test_labels(tmp_path):
    (tmp_path / "7_1_log.out").write_text("submitit INFO - Starting with JobEnvironment(job_id=7, hostname=n2, local_rank=0(1))\n")
    assert label_for(tmp_path / "7_1_log.out", "convert") == "[convert n2/t1]"
    assert label_for(tmp_path / "7_1_log.err", "convert") == "[convert n2/t1 err]"
    assert label_for(tmp_path / "7_2_log.err", "convert") is None  # node not known yet
    assert label_for(tmp_path / "node-1-n3.log", "train") == "[train n3]"
    assert label_for(tmp_path / "restart-2" / "node-0-n1.log", "train") == "[train n1@r2]"
    assert label_for(tmp_path / "driver.log", "train") == "[train driver]"


def test_tail_reads_appends_partial_lines_and_truncation(tmp_path):
    f = tmp_path / "node-0-n1.log"
    f.write_text("a\nb")
    tail = Tail(f, "[x]")
    assert tail.read_lines() == ["a"]
    with f.open("a") as fh:
        fh.write("c\nd\n")
    assert tail.read_lines() == ["bc", "d"]
    f.write_text("new\n")  # truncated and rewritten
    assert tail.read_lines() == ["new"]
    with f.open("a") as fh:
        fh.write("end")
    assert tail.read_lines(final=True) == ["end"]


def test_follow_picks_up_files_that_appear_later_and_stops_when_jobs_end(tmp_path):
    chain = tmp_path / "chain"
    (chain / "train" / "5").mkdir(parents=True)
    (chain / "train" / "5" / "node-0-n1.log").write_text("[+0.1s] head starting\n")
    out = io.StringIO()
    checks = {"n": 0}

    def jobs_final() -> bool:
        checks["n"] += 1
        if checks["n"] == 2:  # a new node and a requeued run appear while following
            (chain / "train" / "5" / "node-1-n2.log").write_text("worker joined\n")
            (chain / "train" / "5" / "restart-1").mkdir()
            (chain / "train" / "5" / "restart-1" / "node-0-n1.log").write_text("resumed\n")
        return checks["n"] >= 3

    follow(Follower(chain, ["train"], out=out), jobs_final, poll_s=0.01, state_every_s=0.0, stop=threading.Event())
    text = out.getvalue()
    assert "[train n1] [+0.1s] head starting" in text
    assert "[train n2] worker joined" in text and "[train n1@r1] resumed" in text


def test_executor_params():
    params = render_executor_params({"job-name": "holdem-train", "nodes": 2, "ntasks-per-node": 1, "gpus-per-node": 4,
                                     "time": "01:30:00", "partition": "gpu", "exclusive": True, "requeue": True,
                                     "signal": "USR2@120", "dependency": "afterok:3:4", "kill-on-invalid-dep": "yes",
                                     "reservation": "r1"})
    assert params["time"] == 90 and params["signal_delay_s"] == 120 and params["gpus_per_node"] == 4
    assert params["dependency"] == "afterok:3:4" and params["exclusive"] is True
    assert params["additional_parameters"] == {"requeue": True, "kill-on-invalid-dep": "yes", "reservation": "r1"}


@pytest.mark.parametrize("text, minutes", [("30", 30), ("01:00:00", 60), ("1-00:00:00", 1440), ("00:05:30", 6), (45, 45), ("2-12", 2 * 1440 + 12 * 60), ("1-2:30", 1440 + 150), ("10:30", 11)])
def test_parse_time(text, minutes):
    assert parse_time_minutes(text) == minutes


def test_no_slurm_on_path_is_a_clear_error_and_dry_run_still_works(tmp_path):
    (tmp_path / "slime").mkdir()
    (tmp_path / "Megatron-LM").mkdir()
    bin_dir = tmp_path / "bin"  # the stages' programs (the plan checks them), but no Slurm
    bin_dir.mkdir()
    for name in ("python3", "hf"):
        (bin_dir / name).symlink_to(sys.executable)
    env = clean_env(PATH=str(bin_dir))
    base = [sys.executable, "-m", "cluster.submit", "--profile", "smoke", "--set", f"paths.root={tmp_path}"]
    proc = subprocess.run(base, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Slurm not found: sbatch is not on PATH" in proc.stderr
    assert not (tmp_path / "logs").exists()  # nothing recorded, nothing half-submitted
    dry = subprocess.run(base + ["--dry-run"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert dry.returncode == 0 and "[RUN ] train" in dry.stdout


def test_chain_record_redacts_secret_named_values_with_the_one_rule():
    from cluster.chain import redact

    out = redact({"env": {"WANDB_API_KEY": "abc", "HF_TOKEN": "t", "AWS_CREDENTIAL": "c", "CUDA_DEVICE_MAX_CONNECTIONS": "1"}})
    assert out["env"] == {"WANDB_API_KEY": "<redacted>", "HF_TOKEN": "<redacted>", "AWS_CREDENTIAL": "<redacted>",
                          "CUDA_DEVICE_MAX_CONNECTIONS": "1"}

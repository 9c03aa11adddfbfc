"""cluster.triage: a failed stage's cause in one line, from log snippets of every node (table-driven),
and what cluster.status shows."""
from __future__ import annotations

import json


import pytest

from cluster.status import render_table
from cluster.triage import RULES, add_causes, classify, log_files, triage_dir
from tests.standins.metrics_driver import OOM_TRACE

OOM = OOM_TRACE + "\n"  # what the stand-in driver prints in the integration test
NCCL = ("[rank3]:[E1206 13:17:33.123456 ProcessGroupNCCL.cpp:616] [Rank 3] Watchdog caught collective operation timeout: "
        "WorkNCCL(SeqNum=1234, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600012 milliseconds "
        "before timing out.\n")

# (rule, file -> text): the rule that must win, and the node files as the launcher lays them out.
CASES = [
    ("cuda-oom", {"driver.log": "(MegatronTrainRayActor pid=9, ip=10.0.0.5) " + OOM.replace("\n", "\n(MegatronTrainRayActor pid=9) "),
                  "node-1-n2.log": NCCL}),  # the OOM is the root cause, the NCCL timeout its effect
    ("nccl-timeout", {"node-0-n1.log": "[+1.0s] head up\n", "driver.log": NCCL}),
    ("lost-node", {"node-0-n1.log": "[+90.2s] error: job 57: Ray node on n2 is DEAD while job train-57-r0 was "
                                    "RUNNING (log: /l/node-1-n2.log)\n", "driver.log": NCCL}),
    ("lost-node", {"node-1-n2.log": "[+30s] error: job 57: lost the head n1: its API at http://10.0.0.1:2 does not answer\n"}),
    ("port-in-use", {"node-0-n1.log": "[+2s] ray start\nOSError: [Errno 98] Address already in use\n"}),
    ("port-in-use", {"node-0-n1.log": "error: job 5: no free block of 64 Ray ports on n1 above 20000; every one ...\n"}),
    ("ray-auth", {"node-1-n2.log": "error: http://10.0.0.1:20005/api/version: HTTP 401 (Unauthorized) with the job's "
                                   "token: the Ray dashboard there wants another token or none.\n"}),
    ("pybase64", {"driver.log": "  File \"/root/slime/slime/rollout/sglang_rollout.py\", line 8, in <module>\n"
                                "    import pybase64\nModuleNotFoundError: No module named 'pybase64'\n"}),
    ("loss-mask", {"driver.log": "AssertionError: loss mask length 511 != response length 512\n"}),
    ("prompt-parse", {"driver.log": "ValueError: instruction: could not find the hero's position\n"}),
    ("stall", {"node-0-n1.log": "[+900s] error: job 61: stalled 600 s after rollout 12 (no metric line, checkpoint "
                                "or driver output); stacks in /l/stacks\n"}),
    ("time-limit", {"61_0_log.err": "slurmstepd: error: *** JOB 61 ON n1 CANCELLED AT 2026-12-06T13:17:33 DUE TO TIME LIMIT ***\n"}),
    ("restart-limit", {"node-0-n1.log": "error: job 61: restart 4 exceeds slurm.max_restarts = 3; not running again\n"}),
]


def test_a_node_stopped_by_the_preemption_signal_is_not_a_lost_node(tmp_path):
    run = tmp_path / "restart-0"
    run.mkdir()
    (run / "node-0-n1.log").write_text("[+20s] error: job 290: node 1 (n2) failed: launcher got SIGUSR2 (Slurm's "
                                       "warning: preemption or time limit; the job will be requeued)\n")
    assert triage_dir(tmp_path).rule != "lost-node"


@pytest.mark.parametrize("rule, files", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_cause_is_recognised(tmp_path, rule, files):
    run = tmp_path / "restart-0"
    run.mkdir()
    for name, text in files.items():
        (tmp_path / name if name.endswith(".err") else run / name).write_text(text)
    found = triage_dir(tmp_path)
    assert found is not None and found.rule == rule, found
    line = found.one_line()
    assert "\n" not in line and "Fix: " in line
    assert next(r.fix for r in RULES if r.name == rule) in line


def test_oom_line_names_the_seed_order_and_the_file(tmp_path):
    (tmp_path / "restart-0").mkdir()
    (tmp_path / "restart-0" / "driver.log").write_text("starting\n" + OOM)
    line = triage_dir(tmp_path).one_line()
    assert line.startswith("CUDA out of memory [driver: restart-0/driver.log:7]. Fix: the seed's OOM order")
    order = [line.index(k) for k in ("max-tokens-per-gpu", "context-parallel-size", "sglang-mem-fraction-static",
                                     "sglang-server-concurrency")]
    assert order == sorted(order)


def test_lost_node_names_the_node(tmp_path):
    (tmp_path / "restart-0").mkdir()
    (tmp_path / "restart-0" / "node-0-n1.log").write_text(CASES[2][1]["node-0-n1.log"])
    found = triage_dir(tmp_path)
    assert found.node == "n2" and found.cause == "lost node n2"


def test_unknown_cause_is_the_last_error_line_and_its_file(tmp_path):
    run = tmp_path / "restart-0"
    run.mkdir()
    (run / "driver.log").write_text("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                                    "KeyError: 'rollout_id'\nsome trailing output\n")
    (run / "node-0-n1.log").write_text("error: job 3: Ray job FAILED\n")
    found = triage_dir(tmp_path)
    assert found.rule == "unknown" and found.line == "KeyError: 'rollout_id'" and found.file == "restart-0/driver.log"
    assert found.one_line() == "unknown cause; last error line [driver: restart-0/driver.log:3]: KeyError: 'rollout_id'"


def test_slurm_states_alone(tmp_path):
    assert triage_dir(tmp_path, "TIMEOUT").rule == "time-limit"
    assert triage_dir(tmp_path, "NODE_FAIL").rule == "lost-node"
    assert triage_dir(tmp_path, "FAILED") is None  # nothing to go on
    assert triage_dir(None) is None and triage_dir(tmp_path / "missing") is None


def test_a_run_is_triaged_from_its_own_dir(tmp_path):
    for n, text in ((0, OOM), (1, NCCL)):
        (tmp_path / f"restart-{n}").mkdir()
        (tmp_path / f"restart-{n}" / "driver.log").write_text(text)
    assert triage_dir(tmp_path, restart=0).rule == "cuda-oom"
    assert triage_dir(tmp_path, restart=1).rule == "nccl-timeout"
    files = log_files(tmp_path)
    assert files[0].parent.name == "restart-1"  # the newest run is read first


def test_ray_log_tails_and_submitit_files_are_read(tmp_path):
    tails = tmp_path / "restart-0" / "ray-logs" / "node-1-n2"
    tails.mkdir(parents=True)
    (tails / "raylet.err.tail").write_text("OSError: [Errno 98] Address already in use\n")
    found = triage_dir(tmp_path)
    assert found.rule == "port-in-use" and found.node == "n2"


def test_colour_codes_do_not_hide_a_cause(tmp_path):
    (tmp_path / "x.err").write_text("\x1b[31mtorch.OutOfMemoryError\x1b[0m: CUDA out of memory.\n")
    assert classify([tmp_path / "x.err"]).rule == "cuda-oom"


def test_status_shows_the_cause_of_a_failed_run_and_stage(tmp_path):
    train = tmp_path / "train" / "57"
    (train / "restart-0" / "rendezvous").mkdir(parents=True)
    (train / "restart-0" / "driver.log").write_text(OOM)
    (train / "restart-0" / "rendezvous" / "done.json").write_text(json.dumps(
        {"exit_code": 1, "state": "failed", "message": "job 57: Ray job train-57-r0 FAILED with exit code 1"}))
    data = tmp_path / "data" / "56"
    data.mkdir(parents=True)
    (data / "56_0_log.err").write_text("ModuleNotFoundError: No module named 'pybase64'\n")
    from cluster.status import read_runs

    rows = [{"stage": "data", "job_id": "56", "state": "FAILED", "nodes": "n1", "elapsed": "", "restarts": 0,
             "exit_code": "1:0", "reason": "", "log_dir": str(data), "runs": []},
            {"stage": "train", "job_id": "57", "state": "FAILED", "nodes": "n[1-2]", "elapsed": "", "restarts": 0,
             "exit_code": "1:0", "reason": "", "log_dir": str(train), "runs": read_runs(str(train))}]
    add_causes(rows, {"56": "FAILED", "57": "FAILED"})
    assert "cause" not in rows[1]  # the run carries it
    text = render_table(rows)
    assert "  data: cause: ModuleNotFoundError: No module named 'pybase64' [56_0_log.err:1]. Fix: pip install pybase64" in text
    assert "  train run 0: cause: CUDA out of memory [driver: restart-0/driver.log:6]. Fix: the seed's OOM order" in text

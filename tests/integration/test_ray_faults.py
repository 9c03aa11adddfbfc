"""Faults and bad input of the in-allocation Ray launcher, each on the real local cluster.

Every case must end in a definite state with a message naming the node, never hang, and leave
no Ray process of the job behind (and touch no other job's).
"""
from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from cluster.launcher import claims
from tests.integration.conftest import LocalSlurm
from tests.integration.test_ray_launch import RayRun, make_spec, submit

pytestmark = pytest.mark.integration


def kill_node(run: RayRun, node: int) -> None:
    """A node dies: its launcher and every Ray process of it get SIGKILL at once."""
    hb = run.read(f"node-{node}.json")
    assert hb is not None, run.tails()
    os.kill(int(hb["pid"]), signal.SIGKILL)
    for pid in run.ray_pids(node):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


def test_profile_asks_for_more_gpus_than_the_allocation(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    hosts = local_slurm.nodes[:2]
    run = submit(local_slurm, make_spec(tmp_path / "c", 2, 4, expected=12), nodelist=",".join(hosts))
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("FAILED", 3), run.tails()
    assert f"8 GPUs ({hosts[0]}: 4, {hosts[1]}: 4) but slime asks for 12" in done["message"]
    assert not (run.chain / "record.json").exists()  # the job never ran
    run.assert_no_ray_left()


def test_cuda_visible_devices_disagreeing_with_profile(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    run = submit(local_slurm, make_spec(tmp_path / "c", 2, 4), gres=2)
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("FAILED", 3), run.tails()
    assert "CUDA_VISIBLE_DEVICES='0,1' (2 GPUs) but the profile asks for 4" in done["message"]
    for log in run.log_dir.glob("node-*.log"):
        assert "ray start on" not in log.read_text()  # refused before starting anything
    run.assert_no_ray_left()


def test_worker_killed_during_bring_up(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    run = submit(local_slurm, make_spec(tmp_path / "c", 3, 4), nodelist="n[1-3]")
    run.wait_for(lambda: run.read("node-2.json"), "node 2's launcher to start")
    assert run.read("ready.json") is None
    kill_node(run, 2)
    state, done = run.finish(timeout_s=120)
    assert (state, done["exit_code"]) == ("FAILED", 3), run.tails()
    assert "node 2 (n3)" in done["message"] and "node-2-n3.log" in done["message"], done
    assert not (run.chain / "record.json").exists()
    run.assert_no_ray_left()


def running_3_node_job(local_slurm: LocalSlurm, tmp_path: Path) -> RayRun:
    """A 3-node job whose driver runs (and holds) until the test says otherwise."""
    hold = tmp_path / "hold"
    hold.touch()
    run = submit(local_slurm, make_spec(tmp_path / "c", 3, 4, driver_args=["--sleep-while", str(hold)]),
                 nodelist="n[1-3]")
    run.wait_for(lambda: (run.chain / "record.json").exists(), "the driver to be running")
    return run


def test_worker_killed_during_job(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    run = running_3_node_job(local_slurm, tmp_path)
    kill_node(run, 1)
    killed_at = time.monotonic()
    state, done = run.finish(timeout_s=120)
    assert (state, done["exit_code"]) == ("FAILED", 3), run.tails()
    assert "Ray node on n2 is DEAD" in done["message"] and "node-1-n2.log" in done["message"], done
    print(f"worker death -> job ended in {time.monotonic() - killed_at:.1f} s")
    run.assert_no_ray_left()
    # The SIGKILLed launcher could not remove its Ray temp dir; the next launcher on n2 does, from
    # the owner record the dead one left (cluster/launcher/claims.py), and takes its port band.
    killed_log = (run.log_dir / "node-1-n2.log").read_text()
    temp_dir = Path(re.search(r"ray start on .* temp (\S+)\)", killed_log).group(1))
    records = list(Path("/tmp", claims.CLAIMS_DIR).glob(f"n2.{run.job_id}-1-0.*.json"))
    assert temp_dir.is_dir() and len(records) == 1, killed_log
    after = submit(local_slurm, make_spec(tmp_path / "after", 1, 4), nodelist="n2", name="after-kill")
    state, done = after.finish()
    assert (state, done["exit_code"]) == ("COMPLETED", 0), after.tails()
    assert not temp_dir.exists() and not records[0].exists()


def test_head_killed_during_job(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    run = running_3_node_job(local_slurm, tmp_path)
    kill_node(run, 0)
    state = run.wait_for(lambda: (s := local_slurm.job_state(run.job_id)) in ("FAILED", "COMPLETED") and s,
                         "the workers to leave on their own", 120)
    assert state == "FAILED", run.tails()
    assert run.read("done.json") is None  # node 0 died without a word: workers had to notice
    for node, host in ((1, "n2"), (2, "n3")):
        log = (run.log_dir / f"node-{node}-{host}.log").read_text()
        assert "error:" in log and "n1" in log.split("error:", 1)[1], run.tails()
        assert (run.read(f"node-{node}.json") or {}).get("state") == "failed"
    run.assert_no_ray_left()


def test_entrypoint_failing_reports_exit_code_and_last_lines(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    run = submit(local_slurm, make_spec(tmp_path / "c", 2, 4,
                                        driver_args=["--print-lines", "30", "--exit-code", "7"]))
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("FAILED", 1), run.tails()
    msg = done["message"]
    assert "FAILED with exit code 7" in msg and "ray_driver line 30" in msg, msg
    assert "ray_driver line 10" not in msg  # only the last lines
    run.assert_no_ray_left()


def test_two_train_jobs_on_the_same_nodes(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    # Each job holds 2 of the 4 GPUs per node; each driver waits until the other one runs, so
    # both succeed only if both clusters are up side by side on n1 and n2.
    a_up, b_up = tmp_path / "a-up", tmp_path / "b-up"
    a = submit(local_slurm, make_spec(tmp_path / "a", 2, 2, driver_args=[
        "--touch", str(a_up), "--wait-for", str(b_up), "--max-wait-s", "180"]),
        nodelist="n[1-2]", name="pair-a")
    b = submit(local_slurm, make_spec(tmp_path / "b", 2, 2, driver_args=[
        "--touch", str(b_up), "--wait-for", str(a_up), "--max-wait-s", "180"]),
        nodelist="n[1-2]", name="pair-b")
    for run in (a, b):
        state, done = run.finish()
        assert (state, done["exit_code"]) == ("COMPLETED", 0), run.tails()
    ha, hb = a.read("head.json"), b.read("head.json")
    assert ha and hb and ha["host"] == hb["host"] == "n1"
    assert ha["ports_slot"] != hb["ports_slot"] and ha["gcs_address"] != hb["gcs_address"]
    a.assert_no_ray_left()
    b.assert_no_ray_left()


def test_launcher_sigterm_stops_its_ray_only(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    hold_a, hold_b = tmp_path / "hold-a", tmp_path / "hold-b"
    hold_a.touch()
    hold_b.touch()
    witness = submit(local_slurm, make_spec(tmp_path / "b", 2, 2, driver_args=["--sleep-while", str(hold_b)]),
                     nodelist="n[1-2]", name="witness")
    run = submit(local_slurm, make_spec(tmp_path / "a", 2, 2, driver_args=["--sleep-while", str(hold_a)]),
                 nodelist="n[1-2]", name="victim")
    for r in (witness, run):
        r.wait_for(lambda r=r: (r.chain / "record.json").exists(), "the driver to be running")
    # Ray's daemons, agents, the job supervisor and the driver. Idle workers (Ray reaps surplus
    # ones itself) and short-lived helpers (a `sleep 1`) come and go on their own.
    witness_pids = {p: c for p in witness.ray_pids()
                    if ("ray" in (c := cmdline(p)) or "python" in c) and not c.startswith("ray::IDLE")}
    assert any("raylet" in c for c in witness_pids.values()), witness_pids
    assert witness_pids and run.ray_pids()
    for node in range(2):
        os.kill(int(run.read(f"node-{node}.json")["pid"]), signal.SIGTERM)
    run.assert_no_ray_left(timeout_s=30)
    gone = {p: witness_pids[p] for p in witness_pids if p not in witness.ray_pids()}
    assert not gone, f"the other job's Ray processes were touched: {gone}"
    state, done = run.finish(timeout_s=60)
    assert done["exit_code"] == 3 and "SIGTERM" in done["message"], run.tails()
    hold_b.unlink()
    state, done = witness.finish()
    assert (state, done["exit_code"]) == ("COMPLETED", 0), witness.tails()
    witness.assert_no_ray_left()


def test_bare_requeue_beyond_max_restarts_stops_with_a_clear_state(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    """`scontrol requeue` runs no signal handler, so submitit never counts it: the launcher caps
    restarts itself from SLURM_RESTART_COUNT (issue 18, item 9)."""
    from dataclasses import replace

    hold = tmp_path / "hold"
    hold.touch()
    spec = replace(make_spec(tmp_path / "c", 2, 4, driver_args=["--sleep-while", str(hold)]), max_restarts=0)
    run = submit(local_slurm, spec, nodelist="n[1-2]", name="cap", sbatch_args=["--requeue"])
    run.wait_for(lambda: (run.chain / "record.json").exists(), "the driver to be running")
    local_slurm.run("scontrol", "requeue", run.job_id)
    second = run.log_dir.parent / "restart-1" / "rendezvous" / "done.json"
    run.wait_for(second.exists, "the requeued run's done marker", 180)
    state = run.wait_for(lambda: (s := local_slurm.job_state(run.job_id)) in ("FAILED", "COMPLETED") and s,
                         "the requeued job to end", 120)
    done = json.loads(second.read_text())
    assert state == "FAILED" and done["state"] == "restart-limit" and done["exit_code"] == 3, (state, done)
    assert "restart 1 exceeds slurm.max_restarts = 0" in done["message"]
    for log in (run.log_dir.parent / "restart-1").glob("node-*.log"):
        assert "ray start on" not in log.read_text()  # nothing started
    assert not (run.log_dir.parent / "restart-1" / "ray-logs").exists()
    run.assert_no_ray_left()

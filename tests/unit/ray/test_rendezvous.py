"""Rendezvous files: atomic JSON, heartbeats watched by content change, log following."""
from __future__ import annotations

import json
import time
from pathlib import Path

from cluster.launcher.job import LogFollower
from cluster.launcher.rendezvous import (
    Heartbeat, HeartbeatWatch, NodeLog, RendezvousPaths, read_json, tail_lines, write_json_atomic,
)
from tests.waiting import wait_for


def test_paths_keyed_by_job_and_restart() -> None:
    a = RendezvousPaths.of("/c", "train", "12", 0)
    b = RendezvousPaths.of("/c", "train", "12", 1)
    assert a.log_dir == Path("/c/train/12/restart-0") and b.log_dir == Path("/c/train/12/restart-1")
    assert a.head == Path("/c/train/12/restart-0/rendezvous/head.json") and a.head != b.head
    assert a.node_log(2, "n3") == Path("/c/train/12/restart-0/node-2-n3.log")
    assert a.driver_log == Path("/c/train/12/restart-0/driver.log")


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "d" / "head.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["head.json"]
    (tmp_path / "half.json").write_text('{"a": ')
    assert read_json(tmp_path / "half.json") is None and read_json(tmp_path / "none") is None




def test_silent_heartbeat_is_lost_live_one_is_not(tmp_path: Path) -> None:
    live = Heartbeat(tmp_path / "node-1.json", 1, "n2", period_s=0.0)
    silent = Heartbeat(tmp_path / "node-2.json", 2, "n3", period_s=0.0)
    live.beat("ray started")
    silent.beat("ray started")
    watch = HeartbeatWatch({1: live.path, 2: silent.path}, timeout_s=0.2)
    assert watch.check() is None

    def lost():
        live.beat()
        return watch.check()

    node_id, why = wait_for(lost, "node 2 to count as silent")
    assert node_id == 2 and "stopped reporting" in why and str(silent.path) in why


def test_failed_state_reported_at_once_and_stopped_ignored(tmp_path: Path) -> None:
    hb = Heartbeat(tmp_path / "node-1.json", 1, "n2")
    hb.beat("stopped")
    watch = HeartbeatWatch({1: hb.path, 3: tmp_path / "never.json"}, timeout_s=0.0)
    assert watch.check() is None and watch.check() is None
    hb.beat("failed", message="CUDA_VISIBLE_DEVICES has 2 GPUs")
    assert watch.check() == (1, "CUDA_VISIBLE_DEVICES has 2 GPUs")
    assert watch.states() == {1: "failed", 3: "not started"}
    assert json.loads(hb.path.read_text())["host"] == "n2"


def test_heartbeat_rate_limited_but_state_change_written(tmp_path: Path) -> None:
    hb = Heartbeat(tmp_path / "hb.json", 0, "n1", period_s=3600)
    hb.beat("a")
    hb.beat()
    assert read_json(hb.path)["seq"] == 1
    hb.beat("b")
    assert read_json(hb.path)["state"] == "b" and read_json(hb.path)["seq"] == 2


def test_node_log_markers_and_tail(tmp_path: Path) -> None:
    log = NodeLog(tmp_path / "node-0-n1.log", t0=time.monotonic() - 4.1, echo=False)
    log.mark("head up at n1:20000")
    [line] = log.tail()
    assert line.startswith("[+4.") and line.endswith("s] head up at n1:20000")
    assert tail_lines(tmp_path / "missing", 5) == []


def test_log_follower_copies_only_new_bytes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.log", tmp_path / "dst.log"
    f = LogFollower(src, dst)
    assert f.pump() == 0  # source not there yet
    src.write_text("one\n")
    assert f.pump() == 4
    with open(src, "a") as s:
        s.write("two\n")
    assert f.pump() == 4 and f.pump() == 0
    assert dst.read_text() == "one\ntwo\n"

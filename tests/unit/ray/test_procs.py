"""The process seam with real processes: own tree stopped, strangers untouched, die with parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cluster.launcher.procs import find_tree, is_alive, start_owned, stop_owned
from cluster.launcher.render import TAG_ENV
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[3]




def test_stop_owned_ends_tree_and_reparented_tagged_process_only(tmp_path: Path) -> None:
    tag = f"test-{os.getpid()}-a"
    pidfile = tmp_path / "daemon.pid"
    # The child starts a plain grandchild and a daemon that escapes to init (like Ray's workers
    # after their parent dies): the daemon is found by its inherited tag, not by parentage.
    script = f"sleep 300 & (setsid sleep 301 & echo $! > {pidfile}) ; wait"
    stranger = subprocess.Popen(["sleep", "302"])
    try:
        proc = start_owned(["bash", "-c", script], {**os.environ, TAG_ENV: tag}, tmp_path / "log")
        daemon = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), "daemon pid"))
        assert os.getpgid(proc.pid) == proc.pid  # own process group: killpg cannot hit us
        assert daemon in find_tree(None, tag)
        tree = wait_for(lambda: len(t := find_tree(proc.pid, tag)) >= 3 and t, "the whole tree")
        report = stop_owned(proc, tag, grace_s=10)
        assert report.killed == 0
        assert not any(is_alive(p) for p in tree | {daemon})
        assert is_alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


def test_survivor_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    tag = f"test-{os.getpid()}-b"
    proc = start_owned(["bash", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"],
                       {**os.environ, TAG_ENV: tag}, tmp_path / "log")
    wait_for(lambda: "ready" in (tmp_path / "log").read_text(), "child ready")
    report = stop_owned(proc, tag, grace_s=0.5)
    assert report.killed >= 1 and proc.returncode == -signal.SIGKILL
    assert not find_tree(None, tag)


def test_child_dies_when_launcher_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from cluster.launcher.procs import start_owned\n"
        f"p = start_owned(['sleep', '300'], dict(os.environ), Path({str(tmp_path / 'log')!r}))\n"
        f"Path({str(pidfile)!r}).write_text(str(p.pid))\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        child = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), "child pid"))
        assert is_alive(child)
        parent.kill()
        parent.wait()
        wait_for(lambda: not is_alive(child), "the orphaned child to get SIGTERM and exit")
    finally:
        parent.kill()


def test_started_processes_write_no_core_files(tmp_path: Path) -> None:
    """Ray's dashboard agent dumps ~500 MB of core into the job's cwd at teardown: not from ours."""
    proc = start_owned(["bash", "-c", "ulimit -S -c"], dict(os.environ), tmp_path / "log")
    assert proc.wait(timeout=30) == 0
    assert (tmp_path / "log").read_text().strip() == "0"

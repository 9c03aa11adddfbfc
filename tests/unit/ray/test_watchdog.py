"""The stall watchdog (cluster/launcher/watchdog.py): what counts as progress (fake clock), the
stall message, the stack dump of a real process with py-spy, the requeue call, the spec's checks."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.errors import ConfigError
from cluster.launcher import watchdog
from cluster.launcher.spec import LaunchSpec, WatchdogSpec
from cluster.launcher.watchdog import Progress, Stalled, Watchdog, dump_stacks, request_requeue
from tests.waiting import wait_for


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_is_log_growth_or_a_new_checkpoint(tmp_path):
    log, save, clock = tmp_path / "driver.log", tmp_path / "save", Clock()
    save.mkdir()
    p = Progress(log, str(save), clock)
    clock.t += 5
    assert p.idle_s() == 5  # no log yet: idle
    log.write_text("[t] rollout_metrics.py:290 - perf 3: {'perf/tokens_per_gpu_per_sec': 1.0}\n")
    clock.t += 5
    assert p.idle_s() == 0 and p.where() == "rollout 3"
    clock.t += 7
    assert p.idle_s() == 7
    (save / "latest_checkpointed_iteration.txt").write_text("4")
    clock.t += 2
    assert p.idle_s() == 0  # a save is progress even when the log is quiet
    clock.t += 3
    assert p.idle_s() == 3
    with log.open("a") as fh:
        fh.write("(MegatronTrainRayActor pid=1) [t] x.py:1 - rollout 4: {'rollout/raw_reward': 0.1}\nstep 4: {}\n")
    assert p.idle_s() == 0 and p.where() == "rollout 4"


def test_where_before_any_metric_line(tmp_path):
    assert Progress(tmp_path / "none.log", None, Clock()).where() == "the start"


def fake_node(tmp_path: Path, stall_s: float | None, on_stall: str = "fail") -> SimpleNamespace:
    marks: list[str] = []
    log_dir = tmp_path / "restart-0"
    (log_dir / "rendezvous").mkdir(parents=True)
    return SimpleNamespace(
        spec=SimpleNamespace(watchdog=WatchdogSpec(stall_s=stall_s, on_stall=on_stall), resume={}),
        paths=SimpleNamespace(driver_log=log_dir / "driver.log", log_dir=log_dir, rdv_dir=log_dir / "rendezvous"),
        ident=SimpleNamespace(job_id="77", restart=0, node_id=0, num_nodes=1, hosts=("n1",), host="n1"),
        what="job 77", log=SimpleNamespace(mark=marks.append, marks=marks), proc=None, tag="77-0-0",
        beat=SimpleNamespace(beat=lambda *a, **k: None))


def test_watchdog_off_when_unset(tmp_path):
    node = fake_node(tmp_path, None)
    w = Watchdog(node, Clock())
    assert w.progress is None
    w.check()  # never raises


def test_stall_dumps_then_ends_the_job_naming_the_rollout(tmp_path, monkeypatch):
    node, clock = fake_node(tmp_path, 30), Clock()
    node.paths.driver_log.write_text("perf 12: {'perf/tokens_per_gpu_per_sec': 9.0}\n")
    asked = []
    monkeypatch.setattr(watchdog, "dump_all", lambda n, timeout: asked.append(timeout) or "Python stacks of 3 processes")
    w = Watchdog(node, clock)
    w.check()
    clock.t += 29
    w.check()
    assert not asked
    clock.t += 1
    with pytest.raises(Stalled) as err:
        w.check()
    assert str(err.value).startswith("job 77: stalled 30 s after rollout 12 (no new metric line, checkpoint or "
                                     "driver output for watchdog.stall_s = 30 s); Python stacks of 3 processes")
    assert err.value.final_state == "stalled" and asked == [60.0]


def test_requeue_asks_slurm_and_ignores_its_sigterm(tmp_path):
    node, calls = fake_node(tmp_path, 30, "requeue"), []

    def run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    old = signal.getsignal(signal.SIGTERM)
    try:
        text = request_requeue(node, run)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, old)
    assert calls == [["scontrol", "requeue", "77"]] and "runs again as restart 1" in text
    failing = request_requeue(node, lambda argv, **kw: subprocess.CompletedProcess(argv, 1, "", "Invalid job id"))
    signal.signal(signal.SIGTERM, old)
    assert "failed: Invalid job id; the job ends here" in failing


@pytest.mark.skipif(shutil.which("py-spy") is None, reason="py-spy not installed")
def test_dump_stacks_of_a_real_process_with_py_spy(tmp_path):
    ready = tmp_path / "ready"
    code = ("import pathlib, sys, time\n"
            "def waiting_in_a_collective():\n"
            f"    pathlib.Path({str(ready)!r}).touch()\n"
            "    time.sleep(120)\n"
            "waiting_in_a_collective()\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for(ready.exists, "the child to be inside its function", 30)
        text = dump_stacks([(child.pid, "python -c ...")], shutil.which("py-spy"))
    finally:
        child.kill()
        child.wait()
    assert f"=== pid {child.pid}" in text and "waiting_in_a_collective" in text, text


def test_dump_without_py_spy_says_so(tmp_path):
    text = dump_stacks([(1, "init")], None)
    assert "no py-spy here: pip install py-spy" in text


BASE = {"chain_dir": "/c", "nodes": 1, "gpus_per_node": 1, "expected_gpus": 1, "entrypoint": ["x"]}


@pytest.mark.parametrize("bad, words", [
    ({"stall_s": 0}, "watchdog.stall_s must be positive"),
    ({"on_stall": "retry"}, "watchdog.on_stall 'retry' must be fail"),
    ({"stal_s": 5}, "did you mean watchdog.stall_s"),
    ({"stall_s": "soon"}, "watchdog.stall_s must be float"),
])
def test_spec_checks(bad, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(".", r"\.")):
        LaunchSpec.from_dict({**BASE, "watchdog": bad})


def test_spec_round_trip():
    spec = LaunchSpec.from_dict({**BASE, "watchdog": {"stall_s": 600, "on_stall": "requeue"}})
    assert spec.watchdog == WatchdogSpec(600.0, "requeue")
    assert LaunchSpec.from_dict(spec.to_dict()) == spec
    assert LaunchSpec.from_dict(BASE).watchdog.stall_s is None


def test_profile_watchdog_reaches_the_launch_spec_and_bad_values_fail_the_dry_run():
    from tests.unit.cluster.helpers import run_submit

    ok = run_submit("--profile", "smoke", "--nodes", "1", "--dry-run", "--json",
                    "--set", "watchdog.stall_s=900", "--set", "watchdog.on_stall=requeue")
    assert ok.returncode == 0, ok.stderr
    train = next(s for s in json.loads(ok.stdout)["stages"] if s["name"] == "train")
    assert train["launch"]["watchdog"] == {"stall_s": 900.0, "on_stall": "requeue", "dump_timeout_s": 60.0}
    off = run_submit("--profile", "smoke", "--nodes", "1", "--dry-run", "--json")
    train = next(s for s in json.loads(off.stdout)["stages"] if s["name"] == "train")
    assert train["launch"]["watchdog"]["stall_s"] is None  # off unless the profile sets it
    for bad, words in (("watchdog.on_stall=retry", "must be fail"), ("watchdog.stall_s=0", "positive")):
        proc = run_submit("--profile", "smoke", "--nodes", "1", "--dry-run", "--set", bad)
        assert proc.returncode == 2 and proc.stderr.startswith("error:") and words in proc.stderr, proc.stderr

"""Interruption: a data run killed mid-write leaves no output file (and never a pair that
`output_is_complete` accepts); its temp file is removed by the next run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from holdem.data import output_is_complete, stats_path_for

from .helpers import EXAMPLES, ROOT, generated_rows, write_jsonl

DEADLINE_S = 60.0


def start_data(source: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "holdem.data", "--source", str(source), "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def temp_files(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*.tmp"))


def wait_for_partial_output(proc: subprocess.Popen, out: Path) -> Path:
    """Wait until the run has written rows to its temp file (it then blocks on the pipe)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        temps = temp_files(out)
        if temps and temps[0].stat().st_size > 0:
            return temps[0]
        assert proc.poll() is None, f"data run ended early: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"no rows in a temp file beside {out} within {DEADLINE_S} s (waited for .{out.name}.*.tmp)")


def interrupt_mid_write(tmp_path: Path, out: Path, sig: int) -> tuple[subprocess.Popen, Path]:
    """Feed rows through a FIFO so the run is provably mid-write when the signal arrives."""
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    rows = generated_rows(3000, seed=3)
    proc = start_data(fifo, out)
    with open(fifo, "wb") as pipe:
        pipe.write("".join(json.dumps(r) + "\n" for r in rows).encode())
        pipe.flush()
        temp = wait_for_partial_output(proc, out)
        proc.send_signal(sig)
        proc.wait(timeout=DEADLINE_S)
    return proc, temp


def test_sigkill_mid_write_leaves_no_output_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    proc, temp = interrupt_mid_write(tmp_path, out, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and not stats_path_for(out).exists()
    assert temp.exists() and temp.stat().st_size > 0  # what a killed run leaves behind
    assert output_is_complete(out)[0] is False

    rows = write_jsonl(tmp_path / "good.jsonl", generated_rows(50, seed=4))
    result = subprocess.run([sys.executable, "-m", "holdem.data", "--source", str(rows), "--out", str(out)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not temp.exists() and temp_files(out) == []
    assert output_is_complete(out)[0]


def test_sigterm_mid_write_removes_its_own_temp_file(tmp_path):
    out = tmp_path / "train.jsonl"
    proc, temp = interrupt_mid_write(tmp_path, out, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not out.exists() and not temp.exists() and temp_files(out) == []


def test_interrupted_rerun_keeps_the_previous_complete_output(tmp_path):
    out = tmp_path / "train.jsonl"
    first = subprocess.run([sys.executable, "-m", "holdem.data", "--source", str(EXAMPLES), "--out", str(out)],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    interrupt_mid_write(tmp_path, out, signal.SIGKILL)
    assert out.read_bytes() == before
    assert output_is_complete(out, verify_checksum=True)[0]


def test_a_live_runs_temp_file_is_not_removed(tmp_path):
    from holdem.data.output import remove_stale_temps, temp_path_for

    out = tmp_path / "train.jsonl"
    mine = temp_path_for(out)  # this test process is alive
    mine.write_text("partial")
    assert remove_stale_temps(out) == []
    assert mine.exists()

"""The holdem benchmarks' --quick mode (what CI runs): the script works end to end and prints
its ratio against the baseline of the same run. No figure is checked: a benchmark never fails
on a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HANG_GUARD_S = 600  # only against a hung script; --quick takes seconds


@pytest.mark.parametrize(
    ("script", "ratio_lines"),
    [
        ("bench/reward.py", ("ratio reward/json.loads: cold ", "ratio spam reward time / json.loads time: ")),
        ("bench/rollout.py", ("ratio tool turn / HTTP round trip: ", "ratio spam episode / json.loads: ")),
    ],
)
def test_quick_mode_runs_and_prints_its_ratios(script, ratio_lines):
    proc = subprocess.run([sys.executable, script, "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for prefix in ratio_lines:
        line = next((line for line in proc.stdout.splitlines() if line.startswith(prefix)), None)
        assert line is not None, f"{script} --quick printed no {prefix!r} line:\n{proc.stdout}"
        float(line[len(prefix):].split(",")[0].split()[0])  # the ratio is a number
    assert "error:" not in proc.stderr

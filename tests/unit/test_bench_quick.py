"""The benches that need no Slurm, in their quick mode (what CI runs): each runs to the end,
exits 0 and prints its figures with the ratio against the baseline it measured. A bench fails
only when it breaks, never on a time, so nothing here asserts one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.cluster.helpers import clean_env

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 600  # only ends a hung bench; quick runs take seconds


def run_quick(script: str, *args: str, env: dict[str, str] | None = None,
              timeout: float = HANG_S) -> subprocess.CompletedProcess[str]:
    """`python bench/SCRIPT --quick ARGS` (the integration tests pass the local cluster's env)."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick", *args], cwd=ROOT,
                          env=clean_env() if env is None else env, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout)  # the figures, shown with -s or on failure
    return proc


def assert_ok_with_ratio(proc: subprocess.CompletedProcess[str], ratio_line: str) -> None:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "error:" not in proc.stderr, proc.stderr
    assert any(line.startswith(ratio_line) for line in proc.stdout.splitlines()), proc.stdout


def test_dry_run_quick() -> None:
    proc = run_quick("dry_run.py")
    assert_ok_with_ratio(proc, "ratio: ")
    assert "heavy modules imported on the dry-run path: []" in proc.stdout, proc.stdout


def test_data_prep_quick() -> None:
    assert_ok_with_ratio(run_quick("data_prep.py"), "ratio holdem.data / baseline: time ")


def test_data_prep_quick_fails_when_the_data_stage_breaks(tmp_path: Path) -> None:
    """A wrong result is a failure: the data stage rejects the input, so it writes nothing."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "not a poker prompt", "output": "dance"}\n')
    proc = run_quick("data_prep.py", "--input", str(bad), "--workdir", str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error: holdem.data: exit" in proc.stderr, proc.stderr

"""Helpers for the data-stage and evaluation tests: real PokerBench rows, generated rows, and
running the commands as real subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "tests" / "fixtures" / "pokerbench" / "examples.jsonl"


def real_rows() -> list[dict]:
    return [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m module args` from the project root, as the chain would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def generated_rows(n: int, seed: int) -> list[dict]:
    """Rows from the project's row generator (holdem.rowgen)."""
    rowgen = pytest.importorskip("holdem.rowgen", reason="holdem.rowgen (row generator) not present yet")
    return list(rowgen.generate_rows(n, seed))

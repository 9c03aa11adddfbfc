from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SEED_ENV = ("RUN_PROFILE", "HF_CHECKPOINT", "REF_LOAD", "SAVE_DIR", "PROMPT_DATA", "LOAD_CKPT", "WANDB_API_KEY")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without the seed's variables (tests set what they need)."""
    env = {k: v for k, v in os.environ.items() if k not in SEED_ENV}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run_submit(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.submit", *args], capture_output=True, text=True,
                          env=env or clean_env(), cwd=cwd or ROOT, timeout=60)



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




def recording_sbatch(bindir: Path, calls: Path) -> Path:
    """A stand-in `sbatch` in `bindir` that refuses every job and appends a line to `calls` for each
    job it is given (arguments, or a script on stdin, as cluster.slurm.SbatchPool gives it). cluster.submit
    starts sbatch processes before its checks end and gives those an empty script when a check
    fails: such a run submits nothing, so it records nothing."""
    return standin_sbatch(bindir, f'script=$(cat)\nif [ -n "$*$script" ]; then echo "$@" >> {calls}; fi\nexit 1\n')


def standin_sbatch(bindir: Path, body: str) -> Path:
    """Write an executable bash stand-in named `sbatch` with `body` into `bindir` (made if missing)."""
    bindir.mkdir(parents=True, exist_ok=True)
    sbatch = bindir / "sbatch"
    sbatch.write_text("#!/bin/bash\n# stand-in sbatch written by tests/unit/cluster/helpers.py\n" + body)
    sbatch.chmod(0o755)
    return sbatch

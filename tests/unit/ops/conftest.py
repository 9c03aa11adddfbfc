"""Fixtures for the ops tests: a profile whose every input exists (in tmp_path), its plan, and
stand-in executables (named as such) for the Slurm clients a job script calls."""
from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from cluster.outputs import jsonl_stats, stats_path_for

ROOT = Path(__file__).resolve().parents[3]
SEED_ENV = ("RUN_PROFILE", "HF_CHECKPOINT", "REF_LOAD", "SAVE_DIR", "PROMPT_DATA", "LOAD_CKPT",
            "WANDB_API_KEY", "WANDB_KEY")


@dataclass(frozen=True)
class Ready:
    """A tree in which every path the smoke profile reads exists and is complete."""

    root: Path
    env: dict[str, str]  # the seed's variables pointing into root
    sets: tuple[str, ...]  # --set for slime/Megatron dirs and the log dir
    log_dir: Path


def make_ready(root: Path) -> Ready:
    hf = root / "Qwen3-8B"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"\0")
    ref = root / "Qwen3-8B_torch_dist"
    (ref / "release").mkdir(parents=True)
    (ref / "release" / "common.pt").write_bytes(b"\0")
    (ref / "release" / "metadata.json").write_text(  # written last by Megatron: the dir is complete
        '{"sharded_backend": "torch_dist", "sharded_backend_version": 1, "common_backend": "torch", "common_backend_version": 1}')
    (ref / "latest_checkpointed_iteration.txt").write_text("release")
    data = root / "pokerbench" / "train.jsonl"
    data.parent.mkdir()
    data.write_text(json.dumps({"instruction": "You are at the table...", "output": "call"}) + "\n")
    stats_path_for(data).write_text(json.dumps(jsonl_stats(data)))  # as a finished data stage leaves it
    (root / "slime").mkdir()
    (root / "slime" / "train.py").write_text("# stand-in for slime's train.py\n")
    (root / "Megatron-LM" / "megatron").mkdir(parents=True)
    log_dir = root / "logs"
    env = {"HF_CHECKPOINT": str(hf), "REF_LOAD": str(ref), "SAVE_DIR": str(root / "save"),
           "PROMPT_DATA": str(data)}
    sets = (f"paths.slime_dir={root / 'slime'}", f"paths.megatron_dir={root / 'Megatron-LM'}",
            f"paths.log_dir={log_dir}")
    return Ready(root, env, sets, log_dir)


@pytest.fixture
def ready(tmp_path) -> Ready:
    return make_ready(tmp_path / "run")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the seed's variables or a Slurm identity."""
    env = {k: v for k, v in os.environ.items() if k not in SEED_ENV and not k.startswith("SLURM")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def standin_bin(tmp_path) -> Iterator[Path]:
    """A bin dir with stand-ins for `srun` and `scontrol` (no Slurm in unit tests).

    srun stand-in: records its argv (one word per line) in $STANDIN_DIR/srun.argv, its PID in
    srun.pid, then waits until it is signalled (like a long job step) unless STANDIN_SRUN_EXIT
    gives an exit code to return at once.
    scontrol stand-in: appends its argv to $STANDIN_DIR/scontrol.log and, for `requeue`, stops
    the srun stand-in by its PID, as Slurm stops a requeued job's steps."""
    bin_dir = tmp_path / "standin-bin"
    write_exe(bin_dir / "srun", """#!/bin/bash
printf '%s\\n' "$@" > "$STANDIN_DIR/srun.argv.tmp" && mv "$STANDIN_DIR/srun.argv.tmp" "$STANDIN_DIR/srun.argv"
env > "$STANDIN_DIR/srun.env"
if [ -n "${STANDIN_SRUN_EXIT:-}" ]; then exit "$STANDIN_SRUN_EXIT"; fi
sleep infinity &
sleeper=$!
trap 'kill "$sleeper"; echo "srun stand-in: got TERM"; exit 143' TERM
echo $$ > "$STANDIN_DIR/srun.pid.tmp" && mv "$STANDIN_DIR/srun.pid.tmp" "$STANDIN_DIR/srun.pid"
wait "$sleeper"
""")
    write_exe(bin_dir / "scontrol", """#!/bin/bash
echo "$*" >> "$STANDIN_DIR/scontrol.log"
if [ "$1" = requeue ] && [ -f "$STANDIN_DIR/srun.pid" ]; then kill -TERM "$(cat "$STANDIN_DIR/srun.pid")"; fi
""")
    yield bin_dir
    _stop_standin(tmp_path / "srun.pid")


def _stop_standin(pid_file: Path) -> None:
    """A failed test may leave the srun stand-in waiting: stop it (and so its sleep) by its PID."""
    try:
        pid = int(pid_file.read_text())
        if Path(f"/proc/{pid}/cmdline").read_bytes().find(b"srun") >= 0:
            os.kill(pid, 15)
    except (OSError, ValueError):
        pass


def python_exe() -> str:
    return sys.executable

"""The 2-node train job that bench/requeue.py times and tests/integration/test_requeue.py
interrupts: its inputs on disk, its submission through `python -m cluster.submit`, and what its
stand-in trainer (tests/standins/ckpt_trainer.py) leaves behind (the records of each start, the
newest saved checkpoint).

Both import it (the bench with bench/ on sys.path, the tests as `bench._requeue_setup`); it
imports neither of them, nor anything under tests/."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cluster.outputs import jsonl_stats, stats_path_for
from cluster.profile import ENV_KEYS

ROOT = Path(__file__).resolve().parent.parent
# Fast Ray health checks: a node that dies is noticed in seconds, not minutes.
TIGHT_RAY = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
             "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3",
             "RAY_gcs_rpc_server_reconnect_timeout_s": "5"}
# The caller's own run's variables, which the profile would otherwise take over (paths, profile, key).
_SEED_ENV = (*ENV_KEYS, "RUN_PROFILE", "WANDB_API_KEY")


def prepare_inputs(root: Path) -> None:
    """What the data, model and convert stages leave: the train stage is the only one to run."""
    for d in ("slime", "Megatron-LM"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "pokerbench").mkdir(exist_ok=True)
    data = root / "pokerbench" / "train.jsonl"
    data.write_text('{"instruction": "x", "output": "fold"}\n')
    stats_path_for(data).write_text(json.dumps(jsonl_stats(data)))  # what a finished data stage leaves
    (root / "Qwen3-8B").mkdir(exist_ok=True)
    (root / "Qwen3-8B" / "config.json").write_text("{}")
    (root / "Qwen3-8B" / "model.safetensors").write_bytes(b"w")
    (root / "Qwen3-8B_torch_dist" / "release").mkdir(parents=True, exist_ok=True)
    (root / "Qwen3-8B_torch_dist" / "release" / "common.pt").write_bytes(b"x")
    (root / "Qwen3-8B_torch_dist" / "release" / "metadata.json").write_text(  # last: the dir is complete
        '{"sharded_backend": "torch_dist", "sharded_backend_version": 1, "common_backend": "torch", "common_backend_version": 1}')
    (root / "Qwen3-8B_torch_dist" / "latest_checkpointed_iteration.txt").write_text("release")


def submit_train(work: Path, iterations: int = 6, interval_s: float = 1.0, extra_sets: tuple[str, ...] = (),
                 hold: Path | None = None) -> dict:
    """Submit the train stage alone (2 nodes, smoke profile) rooted at `work`; return the chain
    record `cluster.submit --json` prints. The trainer saves a checkpoint every `interval_s` for
    `iterations` iterations, then waits while `hold` (if given) exists."""
    prepare_inputs(work)
    entry = ["{python}", "-m", "tests.standins.ckpt_trainer", "--record", str(work / "record.jsonl"),
             "--iterations", str(iterations), "--interval-s", str(interval_s)]
    if hold:
        entry += ["--hold-while", str(hold)]
    sets = [f"paths.root={work}", "slurm.exclusive=false", "slurm.time=00:10:00", "slurm.max_restarts=3",
            f"stages.train.entrypoint={json.dumps(entry)}", f"stages.train.working_dir={ROOT}",
            "stages.train.preflight=false", "ray.object_store_memory=100000000", "ray.ready_timeout_s=120",
            f"ray.health_check={json.dumps(TIGHT_RAY)}", *extra_sets]
    args = ["--profile", "smoke", "--nodes", "2", "--stages", "train", "--json"]
    for item in sets:
        args += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k not in _SEED_ENV}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "cluster.submit", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m cluster.submit exited {proc.returncode}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def records(work: Path) -> list[dict]:
    """One record per start of the trainer, in order (its --load, --ckpt-step, restart count, ...)."""
    path = work / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def saved(work: Path) -> int:
    """The newest iteration the trainer has checkpointed (0: none yet)."""
    tracker = work / "Qwen3-8B_slime" / "latest_checkpointed_iteration.txt"
    return int(tracker.read_text()) if tracker.exists() else 0

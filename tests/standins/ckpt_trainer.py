"""Stand-in for slime's train.py in the requeue tests (slime cannot run on a CPU): a real Ray
driver that "trains" by saving a checkpoint every few seconds in the real Megatron layout
(`iter_NNNNNNN/` with `common.pt`, shard files, `.metadata`, then `metadata.json` last, then the tracker
`latest_checkpointed_iteration.txt` rewritten atomically), and records, for every start, the
`--load` / `--ckpt-step` it received and the iteration it resumed from.

    python -m tests.standins.ckpt_trainer --save DIR --record FILE [--load DIR] [--ckpt-step N]
        [--iterations 6] [--interval-s 2] [--hold-while FILE]   (unknown slime flags are ignored)
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

TRACKER = "latest_checkpointed_iteration.txt"


def resume_point(load: str | None, ckpt_step: int | None) -> int:
    """What Megatron would load: --ckpt-step when given, else the tracker's iteration."""
    if not load:
        return 0
    if ckpt_step is not None:
        return ckpt_step
    tracker = Path(load) / TRACKER
    return int(tracker.read_text().strip()) if tracker.is_file() else 0


def save(save_dir: Path, iteration: int) -> None:
    d = save_dir / f"iter_{iteration:07d}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "common.pt").write_bytes(os.urandom(64))  # Megatron writes common.pt first
    (d / "__0_0.distcp").write_bytes(os.urandom(1024))
    (d / ".metadata").write_text(json.dumps({"iteration": iteration}))
    # metadata.json last: only a complete save has it (cluster.outputs.checkpoint_dir_complete)
    (d / "metadata.json").write_text(json.dumps({"sharded_backend": "torch_dist", "sharded_backend_version": 1,
                                                 "common_backend": "torch", "common_backend_version": 1}))
    tmp = save_dir / f".{TRACKER}.tmp"
    tmp.write_text(str(iteration))
    os.replace(tmp, save_dir / TRACKER)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--save", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--load")
    p.add_argument("--ckpt-step", type=int)
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--interval-s", type=float, default=2.0)
    p.add_argument("--hold-while", help="after the last iteration, wait while this file exists")
    args, _slime_flags = p.parse_known_args()
    import ray

    ray.init(address="auto", log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    start = resume_point(args.load, args.ckpt_step)
    record = {"load": args.load, "ckpt_step": args.ckpt_step, "resumed_from": start, "gpus": gpus,
              "host": socket.gethostname(), "restart": os.environ.get("SLURM_RESTART_COUNT", "0"), "time": time.time()}
    with open(args.record, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(f"stand-in trainer: resuming at iteration {start} (load={args.load}, ckpt-step={args.ckpt_step}), "
          f"{gpus:.0f} GPUs", flush=True)
    save_dir = Path(args.save)
    for iteration in range(start + 1, args.iterations + 1):
        deadline = time.monotonic() + args.interval_s
        while time.monotonic() < deadline:  # "training" for one save interval
            time.sleep(0.05)
        save(save_dir, iteration)
        print(f"stand-in trainer: saved iteration {iteration}", flush=True)
    while args.hold_while and Path(args.hold_while).exists():
        time.sleep(0.1)
    print("stand-in trainer: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stand-in for slime's `train.py` that prints slime's metric lines, then stalls or runs out of memory.

A real Ray driver: a `MegatronTrainRayActor` actor prints, per rollout, the lines slime 624b824
prints (slime's logging format `[time] file:line - …`, reaching the driver log through Ray's
`(MegatronTrainRayActor pid=…)` prefix) and the driver writes the checkpoint tracker under --save
every rollout. Then, with --then:
    exit   exit 0
    stall  the actor blocks in `wait_in_allreduce` (until --release exists) and nothing is printed
    oom    a CUDA out-of-memory traceback as torch prints it, exit 1
While it works it prints a line every 0.5 s, so only the stall phase is ever quiet.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

OOM_TRACE = """\
Traceback (most recent call last):
  File "/root/slime/train.py", line 92, in <module>
    train(args)
  File "/root/slime/slime/backends/megatron_utils/actor.py", line 310, in train
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.06 GiB is free. Including non-PyTorch memory, this process has 78.08 GiB memory in use."""


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser()
    p.add_argument("--rollouts", type=int, default=3)
    p.add_argument("--then", choices=("exit", "stall", "oom"), default="exit")
    p.add_argument("--save", help="write latest_checkpointed_iteration.txt here every rollout")
    p.add_argument("--release", help="the stall ends when this file exists")
    p.add_argument("--max-wait-s", type=float, default=300.0)
    return p.parse_known_args(argv)


def main() -> int:
    args, _slime_args = parse_args(sys.argv[1:])
    stop_ticking = threading.Event()

    def tick() -> None:
        while not stop_ticking.wait(0.5):
            print("metrics_driver: working", flush=True)

    threading.Thread(target=tick, daemon=True).start()
    import ray

    ray.init(address="auto")  # log_to_driver: the actor's lines reach the driver log with Ray's prefix

    @ray.remote(num_cpus=1)
    class MegatronTrainRayActor:
        def __init__(self) -> None:
            logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(filename)s:%(lineno)d - %(message)s",
                                datefmt="%Y-%m-%d %H:%M:%S", force=True)
            self.log = logging.getLogger("slime")

        def rollout(self, rid: int) -> None:
            tps = 1500.0 + 10 * rid
            self.log.info(f"perf {rid}: {{'rollout/response_len/mean': 211.5, 'perf/rollout_time': 4.2, "
                          f"'perf/tokens_per_gpu_per_sec': {tps}, 'perf/longest_sample_tokens_per_sec': 98.5}}")
            self.log.info(f"rollout {rid}: {{'rollout/raw_reward': {0.1 * rid!r}, 'rollout/log_probs': -0.41}}")
            self.log.info(f"step {rid}: {{'train/loss': -0.01, 'train/ppo_kl': 0.0004, 'train/grad_norm': 0.2, "
                          f"'train/train_rollout_logprob_abs_diff': 0.011, 'train/step': {rid}}}")

        def wait_in_allreduce(self, release: str, max_wait_s: float) -> None:
            end = time.monotonic() + max_wait_s
            while not Path(release).exists() and time.monotonic() < end:
                time.sleep(0.2)

    actor = MegatronTrainRayActor.remote()
    for rid in range(args.rollouts):
        ray.get(actor.rollout.remote(rid))
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            (Path(args.save) / "latest_checkpointed_iteration.txt").write_text(str(rid + 1))
    if args.then == "oom":
        stop_ticking.set()
        print(OOM_TRACE, file=sys.stderr, flush=True)
        return 1
    if args.then == "stall":
        print(f"metrics_driver: {args.rollouts} rollouts done; now stalling", flush=True)
        stop_ticking.set()
        ray.get(actor.wait_in_allreduce.remote(args.release or "/nonexistent", args.max_wait_s))
    stop_ticking.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())

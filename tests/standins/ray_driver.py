"""Stand-in for slime's `train.py`: a real Ray driver, run by the launcher as the Ray job.

It connects to the job's cluster, asserts the cluster's GPUs, places slime's placement group
({GPU: 1, CPU: 1} x N·G, PACK), runs one task on the first bundle of each node, records what it
got (argv, cwd, env with secret values hidden, GPUs, hosts) and then behaves as told: wait for or
touch files, sleep while a file exists, print lines, exit with a code. Unknown arguments are
recorded and otherwise ignored, as slime's own flags would be.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path

SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
NETWORK_ENV = ("SLIME_HOST_IP", "MASTER_ADDR", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser()
    p.add_argument("--record", required=True, help="JSON file to write what this driver saw")
    p.add_argument("--expect-gpus", type=int, required=True)
    p.add_argument("--gpus-per-node", type=int, default=0, help="run one probe task per node")
    p.add_argument("--touch", help="create this file once the placement group is ready")
    p.add_argument("--wait-for", help="then wait until this file exists")
    p.add_argument("--sleep-while", help="then sleep while this file exists")
    p.add_argument("--max-wait-s", type=float, default=300.0)
    p.add_argument("--print-lines", type=int, default=0)
    p.add_argument("--exit-code", type=int, default=0)
    return p.parse_known_args(argv)


def wait(cond, what: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            sys.exit(f"ray_driver: timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(0.1)


def env_record() -> dict[str, str]:
    """The driver's environment; a secret's value only as a hash (proves it arrived intact)."""
    return {k: (f"<sha256:{hashlib.sha256(v.encode()).hexdigest()[:16]}>"
                if any(w in k.upper() for w in SECRET_WORDS) else v)
            for k, v in os.environ.items()}


def main() -> int:
    args, unknown = parse_args(sys.argv[1:])
    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init(address="auto", log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    record = {"argv": sys.argv, "unknown": unknown, "cwd": os.getcwd(), "pid": os.getpid(),
              "host": socket.gethostname(), "env": env_record(), "cluster_gpus": gpus}
    if gpus != args.expect_gpus:
        Path(args.record).write_text(json.dumps(record))
        print(f"ray_driver: cluster has {gpus} GPUs, expected {args.expect_gpus}", flush=True)
        return 5
    pg = placement_group([{"GPU": 1, "CPU": 1}] * gpus, strategy="PACK")
    if not pg.wait(timeout_seconds=args.max_wait_s):
        print("ray_driver: placement group not ready", flush=True)
        return 6
    record["placement_group"] = "ready"
    if args.gpus_per_node:
        @ray.remote(num_gpus=1, num_cpus=1)
        def probe() -> dict:
            return {"host": socket.gethostname(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                    "node_ip": ray.util.get_node_ip_address(),  # what Ray uses for this node
                    "net": {k: os.environ.get(k) for k in NETWORK_ENV}}  # what a Ray worker here inherits

        refs = [probe.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            placement_group=pg, placement_group_bundle_index=i)).remote()
            for i in range(0, gpus, args.gpus_per_node)]
        record["probes"] = ray.get(refs, timeout=args.max_wait_s)
    Path(args.record).write_text(json.dumps(record))
    print(f"ray_driver: {gpus} GPUs, placement group of {gpus} bundles ready", flush=True)
    if args.touch:
        Path(args.touch).touch()
    if args.wait_for:
        wait(lambda: Path(args.wait_for).exists(), args.wait_for, args.max_wait_s)
    if args.sleep_while:
        wait(lambda: not Path(args.sleep_while).exists(), f"{args.sleep_while} to vanish",
             args.max_wait_s)
    for i in range(args.print_lines):
        print(f"ray_driver line {i + 1}", flush=True)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())

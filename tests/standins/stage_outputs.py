"""Stand-ins for the chain's GPU/network stages (named as such): real processes that write what
each real stage writes, in the real layouts, so the plan's skip logic and the chain's
dependencies see real structures.

    python -m tests.standins.stage_outputs data OUT.jsonl [--rows FILE]
    python -m tests.standins.stage_outputs model HF_DIR
    python -m tests.standins.stage_outputs convert TORCH_DIST_DIR
    python -m tests.standins.stage_outputs fail CODE        # a stage that fails
Each prints the host and CUDA_VISIBLE_DEVICES it saw, so tests can check placement.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

from cluster.outputs import jsonl_stats, stats_path_for

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "pokerbench" / "examples.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["data", "model", "convert", "fail"])
    parser.add_argument("target")
    parser.add_argument("--rows", default=str(EXAMPLES))
    args = parser.parse_args()
    print(f"stand-in {args.what} on {socket.gethostname()} task {os.environ.get('SLURM_PROCID')} "
          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
    target = Path(args.target)
    if args.what == "fail":
        print("stand-in failing on purpose", file=sys.stderr, flush=True)
        return int(args.target)
    if os.environ.get("SLURM_PROCID", "0") != "0":
        return 0  # multi-task stages (convert): rank 0 writes, like the real tool
    if args.what == "data":
        rows = Path(args.rows).read_bytes()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(rows)
        os.replace(tmp, target)
        stats_path_for(target).write_text(json.dumps(jsonl_stats(target)))  # committed last, as holdem.data does
    elif args.what == "model":
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"], "stand_in": True}))
        (target / "model.safetensors").write_bytes(b"stand-in weights")
    else:
        (target / "release").mkdir(parents=True, exist_ok=True)
        (target / "release" / "common.pt").write_bytes(b"stand-in")
        (target / "release" / ".metadata").write_bytes(b"stand-in")
        (target / "release" / "metadata.json").write_text(  # last: what makes the dir complete
            json.dumps({"sharded_backend": "torch_dist", "sharded_backend_version": 1,
                        "common_backend": "torch", "common_backend_version": 1}))
        (target / "latest_checkpointed_iteration.txt").write_text("release")
    print(f"stand-in {args.what} wrote {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

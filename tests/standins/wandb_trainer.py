"""Stand-in for slime's train.py with W&B on (tests/integration/test_wandb_requeue.py): records, for
every start, the W&B flags it got (`--wandb-run-id`, `--wandb-dir`, `--wandb-mode`) and whether the
API key reached it through the environment and not argv; in offline mode it leaves what `wandb.init`
leaves (`<wandb-dir>/wandb/offline-run-<time>-<run id>/run-<run id>.wandb`), one dir per start. Then
it trains like tests/standins/ckpt_trainer.py (checkpoints in the Megatron layout, --hold-while).

    python -m tests.standins.wandb_trainer --wandb-record FILE <ckpt_trainer args> <slime args>
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

from tests.standins import ckpt_trainer


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--wandb-record", required=True)
    p.add_argument("--use-wandb", action="store_true")
    for flag in ("--wandb-run-id", "--wandb-dir", "--wandb-mode", "--wandb-project", "--wandb-group"):
        p.add_argument(flag)
    args, rest = p.parse_known_args()
    key = os.environ.get("WANDB_API_KEY", "")
    record = {"run_id": args.wandb_run_id, "dir": args.wandb_dir, "mode": args.wandb_mode, "use_wandb": args.use_wandb,
              "project": args.wandb_project, "restart": os.environ.get("SLURM_RESTART_COUNT", "0"),
              "key_in_env": bool(key), "key_on_argv": bool(key) and any(key in word for word in sys.argv),
              "host": socket.gethostname(), "time": time.time()}
    if args.use_wandb and args.wandb_mode == "offline" and args.wandb_dir and args.wandb_run_id:
        run = Path(args.wandb_dir) / "wandb" / f"offline-run-{time.strftime('%Y%m%d_%H%M%S')}-{args.wandb_run_id}"
        run.mkdir(parents=True, exist_ok=True)
        (run / f"run-{args.wandb_run_id}.wandb").write_bytes(b":W&B\x00")
        record["offline_run"] = str(run)
    with open(args.wandb_record, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    sys.argv = [sys.argv[0], *rest]
    return ckpt_trainer.main()


if __name__ == "__main__":
    sys.exit(main())

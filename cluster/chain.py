"""The record of a submitted chain, logs/<chain-id>/chain.json: what status, logs and requeue
read back. Written atomically; holds the profile snapshot without anything secret."""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from cluster.errors import ConfigError
from cluster.outputs import write_json_atomic
from cluster.secrets import SECRET_VALUE, is_secret_name

CHAIN_FILE = "chain.json"
# The chain's W&B run id (not a secret): minted once per chain by the plan, kept in chain.json and
# in the train stage's launch.json (resume.wandb_run_id), passed by the launcher as --wandb-run-id
# on every (re)start so a requeued job continues the same W&B run.
WANDB_RUN_ID = "wandb_run_id"
LAUNCH_FILE = "train/launch.json"


def redact(obj: Any) -> Any:
    """Drop values whose key names a secret (cluster/secrets.py's rule) and token-shaped strings. The
    plan refuses both before submission; this is the last guard of what chain.json keeps."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if is_secret_name(k) and isinstance(v, (str, int)) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and SECRET_VALUE.search(obj):
        return "<redacted>"
    return obj


def write_chain(chain_dir: str | Path, record: dict[str, Any]) -> Path:
    return write_json_atomic(Path(chain_dir) / CHAIN_FILE, record)


def read_chain(chain_dir: str | Path) -> dict[str, Any]:
    path = Path(chain_dir) / CHAIN_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the chain record ({exc}).") from None


def new_wandb_run_id() -> str:
    """A fresh W&B run id: 16 lowercase hex digits (W&B allows letters, digits, - and _; at most 64)."""
    return secrets.token_hex(8)


def recorded_wandb_run_id(chain_dir: str | Path) -> str | None:
    """The run id this chain already has: from chain.json, else from the train stage's launch.json
    (a hand-submitted job re-renders its plan on each restart; it must keep the first run's id).
    None for a new chain dir or when W&B was off."""
    chain_dir = Path(chain_dir)
    for name, get in ((CHAIN_FILE, lambda d: d.get(WANDB_RUN_ID)),
                      (LAUNCH_FILE, lambda d: (d.get("resume") or {}).get(WANDB_RUN_ID))):
        try:
            value = get(json.loads((chain_dir / name).read_text()))
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value:
            return value
    return None


def list_chains(log_dir: str | Path) -> list[Path]:
    """Chain dirs under the log dir, newest first."""
    root = Path(log_dir)
    dirs = [p.parent for p in root.glob(f"*/{CHAIN_FILE}")]
    return sorted(dirs, key=lambda p: (p / CHAIN_FILE).stat().st_mtime, reverse=True)


def find_chain(ref: str, log_dir: str | Path) -> tuple[Path, str | None]:
    """A chain id, a chain dir, or a Slurm job id of one of its stages -> (chain dir, stage)."""
    if Path(ref).is_dir() and (Path(ref) / CHAIN_FILE).is_file():
        return Path(ref), None
    candidate = Path(log_dir) / ref
    if (candidate / CHAIN_FILE).is_file():
        return candidate, None
    if ref.isdigit():
        for chain_dir in list_chains(log_dir):
            for stage in read_chain(chain_dir).get("stages", []):
                if str(stage.get("job_id")) == ref:
                    return chain_dir, stage["name"]
    raise ConfigError(f"no chain or job {ref!r} under {log_dir}: pass a chain id from "
                      f"`python -m cluster.status`, a job id of one of its stages, or --log-dir.")

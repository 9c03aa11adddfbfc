"""The demo driver's checkpoint-like markers (STAND-INs for Megatron checkpoints, in the real
Megatron layout) and its rollout report file.

After rollout r (0-based, as slime numbers them) the driver saves `<save>/iter_{r:07d}/` holding a
`.metadata` file (JSON: the rollout id and what the demo needs to continue) and, last, Megatron's
`metadata.json` (what makes a checkpoint dir complete, cluster.outputs.checkpoint_dir_complete), then
points the tracker `latest_checkpointed_iteration.txt` at it. The dir is built under a temporary name and
renamed into place, and the tracker moves only after that, so a save killed half-way is never
taken: the launcher's resume logic (cluster/launcher/resume.py) and slime see the previous one.

On start, `--load DIR [--ckpt-step N]` continues at the rollout after the loaded one, as slime
does (start_rollout_id = loaded iteration + 1). As in slime, a --load dir without a tracker means
"no checkpoint yet": start fresh (so LOAD_CKPT may name the save dir from the first start on).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.outputs import write_atomic, write_json_atomic
from cluster.outputs import DIST_METADATA, TRACKER, checkpoint_dir_complete, megatron_checkpoint
from demo.report import summarize_run

REPORT = "report.json"
# Megatron's torch_dist metadata.json, as a real save writes it (../shared/SLIME.md).
MEGATRON_METADATA = {"sharded_backend": "torch_dist", "sharded_backend_version": 1,
                     "common_backend": "torch", "common_backend_version": 1}


class ResumeError(RuntimeError):
    """--load / --ckpt-step name no usable checkpoint."""


@dataclass(frozen=True)
class Loaded:
    iteration: int  # the rollout id saved there
    path: Path


def iter_dir(save: Path, rollout_id: int) -> Path:
    return save / f"iter_{rollout_id:07d}"


def save_marker(save: Path, rollout_id: int, state: dict[str, Any]) -> Path:
    """Write iter_NNNNNNN/.metadata and metadata.json (last), then the tracker; returns the iter dir."""
    save.mkdir(parents=True, exist_ok=True)
    final = iter_dir(save, rollout_id)
    partial = save / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    meta = {"demo_stand_in": True, "iteration": rollout_id, "saved_at": time.time(), **state}
    (partial / ".metadata").write_text(json.dumps(meta, indent=2) + "\n")
    (partial / DIST_METADATA).write_text(json.dumps(MEGATRON_METADATA))
    if final.exists():  # an earlier attempt got this far but not to the tracker
        shutil.rmtree(final)
    os.replace(partial, final)
    write_atomic(save / TRACKER, f"{rollout_id}\n")
    return final


def load_marker(load: Path, ckpt_step: int | None) -> Loaded | None:
    """The checkpoint `--load` (and `--ckpt-step`) name; None when `load` holds no tracker (and no
    step is asked for); ResumeError when what they name is not complete."""
    if ckpt_step is None and not (load / TRACKER).exists():
        return None
    if ckpt_step is not None:
        target = iter_dir(load, ckpt_step)
        complete, why = checkpoint_dir_complete(target)
        if not complete:
            raise ResumeError(f"--load {load} --ckpt-step {ckpt_step}: {why}")
        return Loaded(ckpt_step, target)
    target, why = megatron_checkpoint(load)
    if target is None:
        raise ResumeError(f"--load {load}: {why}")
    if target.name == "release":
        raise ResumeError(f"--load {load}: the tracker names release/, a converted model, not a demo rollout")
    if not (target / ".metadata").is_file():
        raise ResumeError(f"--load {load}: {target}/.metadata does not exist (a save that did not finish)")
    return Loaded(int(target.name.removeprefix("iter_")), target)


def read_report(save: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((save / REPORT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_report(save: Path, report: dict[str, Any]) -> Path:
    return write_json_atomic(save / REPORT, report)


def start_report(save: Path, run: dict[str, Any], num_rollout: int, start: int) -> dict[str, Any]:
    """The report to extend: the previous one (rollouts before `start` kept) plus this run."""
    old = read_report(save) or {}
    rollouts = [r for r in old.get("rollouts", []) if isinstance(r, dict) and r.get("rollout_id", num_rollout) < start]
    return {
        "what": "holdem-cluster CPU demo: rollout-only driver (a stand-in for slime's train.py)",
        "num_rollout": num_rollout,
        "complete": False,
        "runs": [*old.get("runs", []), run],
        "rollouts": rollouts,
        "summary": summarize_run(rollouts) if rollouts else {},
    }

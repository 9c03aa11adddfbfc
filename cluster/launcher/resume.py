"""Where a (re)started train job loads from, decided from disk alone (pure apart from reading
the checkpoint dir), so a requeue that ran no signal handler still resumes correctly.

Order: LOAD_CKPT / paths.load when given; else paths.save when it holds a complete checkpoint
(the tracker's, or — when the tracker names a missing or partial dir — the newest complete
`iter_*`, selected with --ckpt-step); else nothing, and slime starts from --ref-load. Complete is
Megatron's own rule (`metadata.json` in the dir, or legacy `mp_rank_*/model_optim_rng.pt`):
cluster.outputs.checkpoint_dir_complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cluster.outputs import TRACKER, megatron_checkpoint, newest_complete_checkpoint


@dataclass(frozen=True)
class ResumeInfo:
    flags: dict[str, object]  # slime flags to add: {"load": DIR} and maybe {"ckpt-step": N}
    source: str  # "load_ckpt" | "save_dir" | "ref_load"
    checkpoint: str | None  # the checkpoint dir that will be loaded, when known
    reason: str


def resolve_resume(load_ckpt: str | None, save_dir: str | None, ref_load: str | None) -> ResumeInfo:
    if load_ckpt:
        return ResumeInfo({"load": load_ckpt}, "load_ckpt", load_ckpt,
                          f"--load {load_ckpt}: given explicitly (LOAD_CKPT / paths.load)")
    if save_dir:
        tracked, why = megatron_checkpoint(save_dir)
        if tracked is not None:
            return ResumeInfo({"load": save_dir}, "save_dir", str(tracked), f"resuming: {why}")
        found, why_newest = newest_complete_checkpoint(save_dir)
        if found is not None:
            step = int(found.name.removeprefix("iter_"))
            return ResumeInfo({"load": save_dir, "ckpt-step": step}, "save_dir", str(found),
                              f"resuming from {found.name}/ with --ckpt-step {step}: {why_newest}")
        reason = why_newest
    else:
        reason = "paths.save is not set"
    return ResumeInfo({}, "ref_load", ref_load, f"starting fresh from --ref-load {ref_load} ({reason})")


def describe_save_dir(save_dir: str | None) -> str:
    """One line for status: which checkpoint a restart would take."""
    if not save_dir or not (Path(save_dir) / TRACKER).exists():
        return "no checkpoint yet"
    found, why = newest_complete_checkpoint(save_dir)
    return found.name if found else why

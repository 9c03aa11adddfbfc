"""W&B for a chain, as the plan renders it (pure, apart from reading the chain's record when the
plan is rendered again for a chain that exists):

* one run id per chain, minted by the plan (or kept from the chain's record), written to chain.json
  and to the train stage's launch.json; the launcher passes `--wandb-run-id` on every (re)start, so
  a requeued job continues the same W&B run instead of opening a new one;
* `--wandb-dir`: the profile's `wandb.wandb-dir`, or `<chain dir>/wandb` (next to the chain's logs);
* offline mode (`wandb.wandb-mode: offline`, for compute nodes without internet): the runs are
  written there and uploaded afterwards by the optional `sync` stage (`afterany` the train stage, on
  a partition with internet; `python -m cluster.stages.wandb_sync`) or by the `wandb sync` command the plan
  prints;
* compute nodes marked offline (`slurm.compute_offline`) with W&B online is a configuration error.

The API key never appears here: WANDB_API_KEY travels in the environment only.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.chain import new_wandb_run_id, recorded_wandb_run_id
from cluster.errors import CheckError
from cluster.profile.slime_args import render_flag


@dataclass(frozen=True)
class WandbPlan:
    on: bool
    mode: str = "online"  # online | offline | disabled
    dir: str | None = None  # --wandb-dir
    run_id: str | None = None  # --wandb-run-id, the same on every start of the train job

    @property
    def offline(self) -> bool:
        return self.on and self.mode == "offline"

    def slime_extra(self) -> dict[str, Any]:
        """Flags the plan adds to slime's arguments (the run id is the launcher's, per start)."""
        return {"wandb-dir": self.dir} if self.on and self.dir else {}

    def sync_command(self) -> str:
        """What uploads the offline runs of this chain (printed when there is no sync stage)."""
        return f"python -m cluster.stages.wandb_sync {shlex.quote(str(self.dir))}"


def wandb_dir(profile: Any, chain_dir: str) -> str:
    return str(profile.get("wandb.wandb-dir") or Path(chain_dir) / "wandb")


def plan_wandb(profile: Any, chain_dir: str, run_id: str | None = None) -> WandbPlan:
    """The chain's W&B settings; raises CheckError for W&B online on offline compute nodes."""
    on = bool(profile.get("wandb.use-wandb"))
    mode = profile.get("wandb.wandb-mode") or "online"
    if not on:
        return WandbPlan(False, mode)
    if mode == "online" and profile.get("slurm.compute_offline"):
        raise CheckError(f"{profile.where('wandb.wandb-mode')}: W&B is on with wandb.wandb-mode = online, but "
                         f"slurm.compute_offline is true ({profile.where('slurm.compute_offline')}): the train job "
                         "could not reach W&B. Set wandb.wandb-mode: offline (and stages.sync.enabled: true to upload "
                         "the run afterwards), or turn W&B off (wandb.enabled: false).")
    run_id = run_id or profile.get("wandb.wandb-run-id") or recorded_wandb_run_id(chain_dir) or new_wandb_run_id()
    render_flag("wandb-run-id", run_id)  # the pinned slime must know the flag (ConfigError otherwise)
    return WandbPlan(True, mode, wandb_dir(profile, chain_dir), run_id)


def sync_notes(profile: Any, wandb: WandbPlan, stages: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """(stages, warnings): the sync stage stays only where it has offline runs to upload; an offline
    run without it gets the command to upload by hand. Raises CheckError for a sync stage that can
    find nothing (alone in a new chain whose W&B dir is the chain's own)."""
    notes: list[str] = []
    if "sync" in stages and not wandb.offline:
        why = "W&B is off" if not wandb.on else f"W&B runs {wandb.mode}"
        notes.append(f"stage sync left out: {why}, so there is no offline run to upload")
        return tuple(s for s in stages if s != "sync"), notes
    if "sync" in stages and "train" not in stages and not profile.get("wandb.wandb-dir"):
        raise CheckError(f"{profile.path}: stage sync without train uploads <chain dir>/wandb of a new chain, which "
                         "is empty; add train to --stages, or upload an earlier chain's runs with "
                         "`python -m cluster.stages.wandb_sync logs/<chain-id>/wandb` (or set wandb.wandb-dir)")
    if wandb.offline and "train" in stages and "sync" not in stages:
        notes.append(f"W&B runs offline into {wandb.dir} and no sync stage uploads it (stages.sync.enabled): once "
                     f"the train job has ended, upload it from a node with internet: {wandb.sync_command()} "
                     f"(or: wandb sync --include-offline {shlex.quote(str(wandb.dir))}/wandb/offline-run-*)")
    return stages, notes


def download_partition_notes(profile: Any, running: set[str]) -> list[str]:
    """On offline compute nodes, the stages that need the internet should name a partition that has it."""
    if not profile.get("slurm.compute_offline"):
        return []
    needs = {"model": "downloads the model from the Hugging Face hub", "sync": "uploads to W&B"}
    source = str(profile.get("stages.data.source") or "")
    if source and not source.startswith(("/", "./", "../")):
        needs["data"] = f"downloads {source} from the Hugging Face hub"
    notes = [f"stage {name} {what} but slurm.compute_offline is true and stages.{name}.slurm.partition is not set: "
             f"name a partition whose nodes reach the internet"
             for name, what in needs.items() if name in running and not profile.get(f"stages.{name}.slurm.partition")]
    eval_source = str(profile.get("stages.eval.source") or "")
    if "eval" in running and eval_source and not eval_source.startswith(("/", "./", "../")):
        notes.append(f"stage eval reads {eval_source} from the Hugging Face hub but slurm.compute_offline is true "
                     "(its GPU nodes get HF_HUB_OFFLINE=1): it works only if the dataset is already in their Hugging "
                     "Face cache; otherwise set stages.eval.source to a local copy")
    return notes

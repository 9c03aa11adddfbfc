"""The environment each stage runs in, rendered from the profile (pure): the PYTHONPATH of the convert
and train stages, the offline switch of the compute nodes, and whether the executable of every stage
resolves where the stage will run (checked on the submit host; only warned about when a container
runs the stages, since the image is not visible from here).

PYTHONPATH (issue 17): slime's converter is `python <slime>/tools/convert_hf_to_torch_dist.py`, which
puts `tools/` on sys.path, not the slime dir, and Ray's workers do not run from the slime dir either;
so convert and train carry Megatron-LM AND the slime dir (unless `container.slime_installed`), train
also the project root (the holdem plug-ins). The doctor checks imports through this same list.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # on PYTHONPATH of the train job: the holdem plug-ins

# Executables the stages run, and where they come from (for the error when one is missing).
PROVIDED_BY = {
    "hf": "the Python package huggingface_hub: pip install -U huggingface_hub",
    "huggingface-cli": ("huggingface_hub before 1.0 only; today's releases ship `hf` instead: use "
                        "[hf, download, ...] in stages.model.command"),
    "wandb": "the Python package wandb: pip install wandb",
    "python3": "a Python 3 interpreter on PATH (or give the interpreter's full path)",
    "python": "a Python interpreter on PATH (or give the interpreter's full path)",
}
# What a stage needs besides its own argv[0] (the sync stage's runner calls `wandb sync`).
ALSO_NEEDS = {"sync": ("wandb",)}


def stage_pythonpath(profile: Any, stage: str) -> list[str]:
    """PYTHONPATH entries the plan gives a stage, first first: Megatron-LM, the slime dir (left out
    when the container has slime pip-installed), and for train the project root."""
    if stage not in ("convert", "train"):
        return []
    parts = [profile.get("paths.megatron_dir")]
    if not profile.get("container.slime_installed"):
        parts.append(profile.get("paths.slime_dir"))
    if stage == "train":
        parts.append(str(PROJECT_ROOT))
    return list(dict.fromkeys(str(p) for p in parts if p))


def offline_env(profile: Any) -> dict[str, str]:
    """HF_HUB_OFFLINE=1 for stages on compute nodes without internet (slurm.compute_offline): the
    Hugging Face libraries then read the local checkpoint instead of timing out on the hub."""
    return {"HF_HUB_OFFLINE": "1"} if profile.get("slurm.compute_offline") else {}


def stage_env(profile: Any, stage: str) -> dict[str, str]:
    """What the plan adds to a stage's environment. convert: PYTHONPATH (prepended to the job's own);
    train: the Ray job's runtime env (the profile's `env`, then PYTHONPATH, which replaces the
    cluster's in Ray's runtime env). Others: nothing."""
    if stage == "convert":
        return {"PYTHONPATH": ":".join(stage_pythonpath(profile, stage)), **offline_env(profile)}
    if stage == "train":
        return {**offline_env(profile), **profile.section("env"),
                "PYTHONPATH": ":".join(stage_pythonpath(profile, stage))}
    return {}


def stage_executables(stage: str, argv: Iterable[str], entrypoint: Iterable[str] = ()) -> list[str]:
    """The programs a stage starts: its argv[0], the train entrypoint's interpreter, extra needs."""
    words = [next(iter(argv), None), next(iter(entrypoint), None), *ALSO_NEEDS.get(stage, ())]
    return list(dict.fromkeys(w for w in words if w))


def resolves(word: str, env: Mapping[str, str]) -> bool:
    if os.sep in word:
        return os.path.isfile(word) and os.access(word, os.X_OK)
    return shutil.which(word, path=env.get("PATH", os.defpath)) is not None


def executable_problems(stages: Iterable[tuple[str, list[str]]], container: Any,
                        env: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(problems, warnings) for `(stage, executables)` pairs. Without a container a job inherits the
    submitting environment (sbatch exports it), so a missing program is a problem; with one, the
    image decides and this host cannot tell: one warning naming what the image must have."""
    env = os.environ if env is None else env
    pairs = [(stage, word) for stage, words in stages for word in words]
    if getattr(container, "enabled", False):
        names = sorted({w for _, w in pairs if w != sys.executable})
        if not names:
            return [], []
        hints = "; ".join(f"`{n}`: {PROVIDED_BY[n]}" for n in names if n in PROVIDED_BY)
        return [], [f"the stages run in container image {container.image}: their programs ({', '.join(names)}) "
                    f"were not checked on this host; the image must have them{f' ({hints})' if hints else ''}"]
    problems = []
    for stage, word in pairs:
        if not resolves(word, env):
            where = "does not exist or is not executable" if os.sep in word else "is not on PATH"
            source = PROVIDED_BY.get(word, "install it or fix the stage's command in the profile")
            problems.append(f"stage {stage} runs `{word}`, which {where} on this host (the job runs with this "
                            f"environment); it comes with {source}")
    return problems, []

"""The job plan: the four stages data -> model -> convert -> train with their Slurm resources,
commands and `afterok` dependencies, and which stages are already done (pure, apart from
looking at the files the stages produce).

The plan is the request: each stage carries its final sbatch options (a dependency names the
earlier stages' job ids as `${<stage>_id}` references, filled in at submission), the srun options
and the exact step command (container-wrapped). The dry-run prints it, `cluster.slurm` submits it
through submitit and `--emit-sbatch` writes it as scripts — nobody rewrites it after this module.
"""
from __future__ import annotations

import os
import re
import secrets
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cluster.profile.checks import slime_gpus
from cluster.stages.container import ContainerSpec, describe, render_container, srun_args, wrap_argv
from cluster.doctor import render_doctor_spec
from cluster.errors import CheckError, ConfigError
from cluster.stages.eval import checkpoint_problem, eval_env, eval_file, eval_output_status, render_eval_argv
from cluster.launcher.spec import LaunchSpec
from cluster.outputs import check_hf_dir, check_jsonl, check_megatron_dir
from cluster.profile import Profile
from cluster.profile.schema import STAGE_NAMES
from cluster.secrets import find_secrets, secret_env_values
from cluster.profile.slime_args import render_model_args, render_slime_args
from cluster.stages.env import PROJECT_ROOT, executable_problems, stage_env, stage_executables
from cluster.stages.wandb import download_partition_notes, plan_wandb, sync_notes, wandb_dir

# What each stage reads, as profile keys (a stage depends on the stage producing them).
STAGE_OUTPUT = {"data": "paths.prompt-data", "model": "paths.hf-checkpoint", "convert": "paths.ref-load"}
STAGE_INPUTS = {
    "data": (),
    "model": (),
    "convert": ("paths.hf-checkpoint", "paths.slime_dir", "paths.megatron_dir"),
    "train": ("paths.prompt-data", "paths.hf-checkpoint", "paths.ref-load", "paths.slime_dir", "paths.megatron_dir"),
    # eval scores the newest checkpoint of paths.save (train's) and the starting model (cluster/stages/eval.py)
    "eval": ("paths.save", "paths.hf-checkpoint", "paths.slime_dir", "paths.megatron_dir"),
    "sync": (),  # uploads the offline W&B runs train writes: `afterany` train (cluster/stages/wandb.py)
}
PRODUCER = {key: stage for stage, key in STAGE_OUTPUT.items()}
PRODUCER["paths.save"] = "train"
OFF_BY_DEFAULT = ("eval", "sync")  # in the chain only when stages.<name>.enabled is true or --stages names it


@dataclass(frozen=True)
class StagePlan:
    name: str
    depends_on: tuple[str, ...]
    skip: bool
    reason: str
    slurm: dict[str, Any]  # sbatch long option names -> values; `dependency` names stages
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    slime_args: tuple[str, ...] | None = None
    launch: LaunchSpec | None = None  # the train stage's typed launch spec (cluster/launcher/spec.py)
    output: str | None = None  # the path this stage produces (its parent is made before submission)
    max_restarts: int = 0  # requeues allowed (train: slurm.max_restarts)
    step: tuple[str, ...] = ()  # what each Slurm task runs: argv, container-wrapped
    srun: tuple[str, ...] = ()  # srun options of the step (pyxis container flags)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: launch converts once, below
        out["slurm"], out["env"] = dict(self.slurm), dict(self.env)
        out["depends_on"], out["argv"] = list(self.depends_on), list(self.argv)
        out["step"], out["srun"] = list(self.step), list(self.srun)
        for key in ("slime_args", "launch"):
            if out[key] is None:
                out.pop(key)
        if self.launch is not None:
            out["launch"] = self.launch.to_dict()
        if self.slime_args is not None:
            out["slime_args"] = list(self.slime_args)
        return out


@dataclass(frozen=True)
class Plan:
    profile: str
    profile_path: str
    chain_id: str
    chain_dir: str
    nodes: int
    gpus_per_node: int
    stages: tuple[StagePlan, ...]
    warnings: tuple[str, ...] = ()
    container: dict[str, Any] = field(default_factory=dict)  # the profile's container section
    wandb_run_id: str | None = None  # the chain's W&B run (cluster/stages/wandb.py); None when W&B is off

    def container_spec(self) -> ContainerSpec:
        return render_container(self.container)

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.stages if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "profile_path": self.profile_path, "chain_id": self.chain_id,
                "chain_dir": self.chain_dir, "nodes": self.nodes, "gpus_per_node": self.gpus_per_node,
                "stages": [s.to_dict() for s in self.stages], "warnings": list(self.warnings),
                "container": describe(self.container_spec()), "wandb_run_id": self.wandb_run_id}


def job_ref(stage: str) -> str:
    """How a stage's job id is referred to before it exists (in `dependency`); shell syntax, so the
    emitted submit-chain.sh uses the option as it is."""
    return f"${{{stage}_id}}"


def resolve_job_refs(text: str, job_ids: dict[str, str]) -> str:
    """`afterok:${data_id}:${model_id}` -> `afterok:41:42` (KeyError for a stage not submitted)."""
    return re.sub(r"\$\{(\w+)_id\}", lambda m: job_ids[m.group(1)], text)


def render_step(argv: list[str], container: ContainerSpec) -> list[str]:
    """The command a Slurm task of the stage runs: inside the container when there is one (where
    the submitting interpreter's path means nothing, so it becomes `python3`)."""
    argv = list(argv)
    if container.enabled and argv and argv[0] == sys.executable:
        argv[0] = "python3"
    return wrap_argv(container, argv)


def new_chain_id(profile_name: str) -> str:
    return f"{profile_name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def parse_stages(text: str | None, profile: Profile | None = None) -> tuple[str, ...]:
    """`--stages a,b` in chain order; without it every stage the profile enables (`stages.<name>.enabled`,
    default on except OFF_BY_DEFAULT)."""
    if not text:
        if profile is None:
            return tuple(n for n in STAGE_NAMES if n not in OFF_BY_DEFAULT)
        return tuple(n for n in STAGE_NAMES
                     if profile.get(f"stages.{n}.enabled", n not in OFF_BY_DEFAULT) is not False)
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in STAGE_NAMES]
    if unknown or not names:
        raise ConfigError(f"--stages {text!r}: unknown stage {', '.join(unknown) or '(none given)'}; "
                          f"choose from {','.join(STAGE_NAMES)}.")
    return tuple(n for n in STAGE_NAMES if n in names)


def output_status(profile: Profile, stage: str) -> tuple[bool, str]:
    """(complete, reason) for a stage's output."""
    if stage == "train":
        return False, "training always runs (it resumes from paths.save when a checkpoint is there)"
    if stage == "eval":
        return eval_output_status(profile)
    if stage == "sync":
        return False, "uploads the train stage's offline W&B runs once it has ended, however it ended"
    path = profile.get(STAGE_OUTPUT[stage])
    if not path:
        return False, f"{STAGE_OUTPUT[stage]} is not set"
    try:  # a path under a directory this user cannot enter is "not there", never a traceback
        if stage == "data":
            keys = (profile.get("rollout.input-key") or "input", profile.get("rollout.label-key") or "label")
            return check_jsonl(path, keys)
        if stage == "model":
            return check_hf_dir(path)
        return check_megatron_dir(path)
    except OSError as exc:
        return False, f"cannot look at {exc.filename or path} ({exc.strerror or exc})"


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except OSError:  # e.g. EACCES on a directory on the way: not usable by this user either
        return False


def _stage_slurm(profile: Profile, stage: str) -> dict[str, Any]:
    """sbatch options: the profile's slurm section, then the stage's own overrides (null: not overridden)."""
    slurm = profile.section("slurm")
    own = {k: v for k, v in (profile.get(f"stages.{stage}.slurm") or {}).items() if v is not None}
    gpus = own.get("gpus_per_node", slurm["gpus_per_node"])
    opts: dict[str, Any] = {
        "job-name": f"holdem-{stage}",
        "nodes": own.get("nodes", slurm["nodes"] if stage == "train" else 1),
        "ntasks-per-node": own.get("tasks_per_node", 1),
        "gpus-per-node": gpus or None,
        "cpus-per-task": own.get("cpus_per_task", slurm.get("cpus_per_task")),
        "mem": own.get("mem", slurm.get("mem")),
        "time": own.get("time", slurm["time"]),
        "partition": own.get("partition", slurm.get("partition")),
        "account": slurm.get("account"),
        "qos": slurm.get("qos"),
        "constraint": own.get("constraint", slurm.get("constraint")),
        "exclusive": own.get("exclusive", slurm.get("exclusive")) or None,
    }
    if stage == "train":
        opts["requeue"] = True
        opts["signal"] = f"USR2@{slurm['signal_grace_s']}"
    opts.update(slurm.get("extra") or {})
    return {k: v for k, v in opts.items() if v is not None}


def _stage_argv(profile: Profile, stage: str, chain_dir: str) -> tuple[list[str], dict[str, str]]:
    if stage == "train":
        return [sys.executable, "-m", "cluster.launch", "--spec", f"{chain_dir}/train/launch.json"], {}
    if stage == "eval":
        return render_eval_argv(profile, chain_dir), eval_env(profile, PROJECT_ROOT)
    command = profile.get(f"stages.{stage}.command") or []
    argv: list[str] = []
    for word in command:
        if word == "{model_args}":
            argv += render_model_args(profile)
        else:
            argv.append(str(word).replace("{python}", sys.executable).replace("{wandb_dir}", wandb_dir(profile, chain_dir)))
    return argv, stage_env(profile, stage)


def render_launch_spec(profile: Profile, chain_dir: str, slime_args: list[str],
                       wandb_run_id: str | None = None) -> LaunchSpec:
    """The typed spec every node's launcher reads (as launch.json), validated here with the launcher's
    own rules so that a value a node would reject fails `--dry-run` with the key's origin."""
    data = _launch_spec_data(profile, chain_dir, slime_args, wandb_run_id)
    try:
        return LaunchSpec.from_dict(data, where="launch spec")
    except ConfigError as err:
        text = str(err).removeprefix("launch spec: ")
        key = re.match(r"(ray\.[\w.-]+|watchdog\.[\w-]+|network\.[\w-]+|env_vars\.[\w-]+)", text)
        origin = profile.where(key.group(1).replace("env_vars.", "env.")) if key else str(profile.path)
        raise ConfigError(f"{origin}: {text}") from None


def _launch_spec_data(profile: Profile, chain_dir: str, slime_args: list[str],
                      wandb_run_id: str | None = None) -> dict[str, Any]:
    slurm, ray = profile.section("slurm"), profile.section("ray")
    env = stage_env(profile, "train")  # PYTHONPATH: Megatron-LM, slime, the project (cluster/stages/env.py)
    return {
        "chain_dir": chain_dir,
        "stage": "train",
        "nodes": slurm["nodes"],
        "gpus_per_node": slurm["gpus_per_node"],
        "expected_gpus": slime_gpus(profile),
        "entrypoint": [*(str(w).replace("{python}", sys.executable) for w in profile.get("stages.train.entrypoint") or []),
                       *slime_args],
        "working_dir": profile.get("stages.train.working_dir"),
        "env_vars": env,
        # The launcher adds --load/--ckpt-step on each (re)start from what is on disk then, and the
        # chain's --wandb-run-id (the same on every start: a requeue continues the W&B run).
        "resume": {k: v for k, v in {"load_ckpt": profile.get("paths.load"), "save_dir": profile.get("paths.save"),
                                     "ref_load": profile.get("paths.ref-load"),
                                     "wandb_run_id": wandb_run_id}.items() if v},
        "preflight": render_doctor_spec(profile).to_dict() if profile.get("stages.train.preflight") else None,
        # the launcher enforces the cap itself: requeues without a signal (scontrol requeue,
        # NODE_FAIL) never reach submitit's checkpoint() that counts them
        "max_restarts": slurm.get("max_restarts") or 0,
        # a node the launcher blames is left out of the requeued job, this many in all (quarantine)
        "max_excluded_nodes": slurm.get("max_excluded_nodes", 1),
        # every key of the profile's ray section goes through, so an unknown one fails the spec's check
        "ray": {k: v for k, v in {**ray, "health_check": ray.get("health_check") or {}}.items() if v is not None},
        "watchdog": {k: v for k, v in (profile.get("watchdog") or {}).items() if v is not None},
        "network": {k: v for k, v in (profile.get("network") or {}).items() if v is not None},
    }


def _path_problems(profile: Profile, stage: str, produced: set[str], seen: set[str]) -> list[str]:
    problems = []
    for key in STAGE_INPUTS[stage]:
        if key in produced or key in seen:
            continue
        seen.add(key)
        value = profile.get(key)
        producer = PRODUCER.get(key)
        if producer == "train":  # eval without train: paths.save must already hold a checkpoint
            problem = checkpoint_problem(profile)
            problems += [problem] if problem else []
        elif producer:
            done, reason = output_status(profile, producer)
            if not done:
                problems.append(f"stage {stage} reads {key} = {value}, which is not ready ({reason}) and no "
                                f"stage of this chain produces it; add stage {producer} to --stages or fix the path")
        elif not value or not _exists(value):
            problems.append(f"stage {stage} needs {key} = {value}, which does not exist; fix it in "
                            f"{profile.where(key)} or with --set {key}=PATH")
    source = profile.get("stages.data.source") if stage == "data" else None
    if source and source.startswith(("/", "./", "../")) and not _exists(source):
        problems.append(f"stage data reads stages.data.source = {source}, which does not exist")
    return problems


def build_plan(profile: Profile, stages: tuple[str, ...] = STAGE_NAMES, chain_id: str | None = None,
               strict_paths: bool = True, wandb_run_id: str | None = None) -> Plan:
    """The chain for the selected stages. Missing inputs and stage programs missing on this host are
    errors when `strict_paths` (before submission) and warnings otherwise (the dry-run, e.g. on a
    laptop). The chain's W&B run id is `wandb_run_id`, else the one its record already holds, else new."""
    chain_id = chain_id or new_chain_id(profile.name)
    chain_dir = str(Path(profile.get("paths.log_dir")) / chain_id)
    container = dict(profile.section("container"))
    container_spec = render_container(container)  # a bad container section fails here, before anything is submitted
    wandb = plan_wandb(profile, chain_dir, wandb_run_id)
    stages, notes = sync_notes(profile, wandb, tuple(stages))
    produced: set[str] = set()  # profile keys a running stage of this chain will produce
    runs: set[str] = set()
    plans, problems, seen = [], [], set()
    for name in stages:
        done, reason = output_status(profile, name)
        if name == "eval" and "train" in runs:
            done, reason = False, ("scores the checkpoint train leaves, and the starting model (skips itself when "
                                   "eval.json already scores that checkpoint)")
        problems += [] if done else _path_problems(profile, name, produced, seen)
        depends = tuple(PRODUCER[k] for k in STAGE_INPUTS[name] if k in produced and PRODUCER[k] in runs)
        if name == "sync":  # uploads what train wrote, however train ended
            depends = ("train",) if "train" in runs else ()
        if not done:
            runs.add(name)
            if name in STAGE_OUTPUT:
                produced.add(STAGE_OUTPUT[name])
            if name == "train":
                produced.add("paths.save")
        slurm = _stage_slurm(profile, name)
        if depends:
            slurm["dependency"] = ("afterany:" if name == "sync" else "afterok:") + ":".join(job_ref(d) for d in depends)
            slurm["kill-on-invalid-dep"] = "yes"
        slurm.setdefault("comment", f"holdem-chain={chain_id}")
        argv, env = _stage_argv(profile, name, chain_dir)
        slime_args = render_slime_args(profile, wandb.slime_extra()) if name == "train" else None
        plans.append(StagePlan(
            name=name, depends_on=depends, skip=done,
            reason=f"skipped: output complete ({reason})" if done else reason if name == "train" else f"runs: {reason}",
            slurm=slurm, argv=tuple(argv), env=env,
            slime_args=tuple(slime_args) if slime_args is not None else None,
            launch=render_launch_spec(profile, chain_dir, slime_args, wandb.run_id) if slime_args is not None else None,
            max_restarts=profile.get("slurm.max_restarts") or 0 if name == "train" else 0,
            output=eval_file(profile) if name == "eval" else profile.get(STAGE_OUTPUT.get(name, "paths.save")),
            step=tuple(render_step(argv, container_spec)), srun=tuple(srun_args(container_spec)),
        ))
    missing, unchecked = executable_problems(
        ((s.name, stage_executables(s.name, s.argv, s.launch.entrypoint if s.launch else ())) for s in plans if not s.skip),
        container_spec)
    problems += missing
    if problems and strict_paths:
        raise CheckError(f"{profile.path}: {problems[0]}.")
    slurm = profile.section("slurm")
    warnings = (*problems, *unchecked, *notes, *download_partition_notes(profile, runs))
    if "train" in runs and slurm.get("max_restarts", 0) > 0 and not profile.get("checkpoint.save-interval"):
        warnings += ("requeue is on but checkpoint.save-interval is not set: a preemption loses the whole run",)
    plan = Plan(profile.name, str(profile.path), chain_id, chain_dir, slurm["nodes"], slurm["gpus_per_node"],
                tuple(plans), warnings, container, wandb_run_id=wandb.run_id)
    refuse_secrets(plan, profile)
    return plan


def refuse_secrets(plan: Plan, profile: Profile) -> None:
    """The secrets rule (cluster/secrets.py) over everything the plan would print, write or put on
    a command line (sbatch options, steps, slime args, the launch spec, the container), before
    anything is: a secret name with a value, a secret flag, a token-shaped value, or the value of
    a secret in the submitting environment is refused; the message never quotes the value."""
    for where, why in find_secrets(plan.to_dict(), secret_env_values(os.environ)):
        raise ConfigError(f"{profile.path}: the plan would expose a secret in {where}: {why}.")

"""Everything that can be checked before a GPU is spent: topology scaling for `--nodes`, and the
consistency checks over batch sizes, GPU accounting, parallelism and paths.

Each check raises CheckError with one line naming the keys, their values and where they were set.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Mapping

from cluster.errors import CheckError
from cluster.profile import Profile


def scale_topology(profile: Profile, nodes: int | None, gpus_per_node: int | None,
                   env: Mapping[str, str] | None = None) -> Profile:
    """Apply `--nodes` / `--gpus-per-node` (colocated: the actor takes every GPU of the
    allocation and so does the rollout) and settle `wandb.enabled: auto`."""
    env = os.environ if env is None else env
    data = dict(profile.data)  # the sections changed below are copied; the rest is shared, unchanged
    for section in ("slurm", "topology", "wandb"):
        if isinstance(data.get(section), dict):
            data[section] = dict(data[section])
    origin = dict(profile.origin)
    slurm, topo = data["slurm"], data["topology"]
    for value, what in ((nodes, "--nodes"), (gpus_per_node, "--gpus-per-node")):
        if value is not None and value <= 0:
            raise CheckError(f"{what} {value}: must be a positive integer.")
    if nodes is not None:
        slurm["nodes"] = nodes
        origin[("slurm", "nodes")] = "--nodes"
    if gpus_per_node is not None:
        slurm["gpus_per_node"] = gpus_per_node
        topo["num-gpus-per-node"] = gpus_per_node
        topo["actor-num-gpus-per-node"] = gpus_per_node
        for key in ("slurm", "gpus_per_node"), ("topology", "num-gpus-per-node"), ("topology", "actor-num-gpus-per-node"):
            origin[key] = "--gpus-per-node"
    total = slurm["nodes"] * slurm["gpus_per_node"]
    if nodes is not None or gpus_per_node is not None:
        if topo.get("colocate"):
            topo["actor-num-nodes"] = slurm["nodes"]
            topo["rollout-num-gpus"] = total
            origin[("topology", "actor-num-nodes")] = origin[("topology", "rollout-num-gpus")] = "--nodes"
        else:
            _scale_split(topo, slurm, origin)
    wandb = data.get("wandb") or {}
    if wandb.get("enabled") == "auto":
        wandb["enabled"] = bool(env.get("WANDB_API_KEY"))
    wandb["use-wandb"] = bool(wandb.get("enabled"))
    if not data.get("eval", {}).get("enabled"):
        data["eval"] = {"enabled": False}
    return replace(profile, data=data, origin=origin)


def _scale_split(topo: dict, slurm: dict, origin: dict) -> None:
    """Not colocated: the rollout keeps its GPUs, the actor gets the remaining whole nodes."""
    gpn = slurm["gpus_per_node"]
    rollout = topo.get("rollout-num-gpus") or 0
    if gpn == 0 or rollout % gpn:
        raise CheckError(
            f"topology.rollout-num-gpus = {rollout} is not a whole number of nodes of {gpn} GPUs; "
            "without colocate --nodes cannot place the actor. Set topology explicitly with --set.")
    actor_nodes = slurm["nodes"] - rollout // gpn
    if actor_nodes <= 0:
        raise CheckError(
            f"--nodes {slurm['nodes']}: the rollout alone takes {rollout // gpn} node(s) "
            f"(topology.rollout-num-gpus = {rollout}); ask for more nodes.")
    topo["actor-num-nodes"] = actor_nodes
    origin[("topology", "actor-num-nodes")] = "--nodes"


def slime_gpus(profile: Profile) -> int:
    """GPUs slime asks Ray for (the seed's RAY_NUM_GPUS)."""
    topo = profile.section("topology")
    actor = topo["actor-num-nodes"] * topo["actor-num-gpus-per-node"]
    return actor if topo.get("colocate") else actor + (topo.get("rollout-num-gpus") or 0)


def _fail(profile: Profile, keys: list[str], message: str) -> None:
    wheres = sorted({profile.where(k) for k in keys})
    raise CheckError(f"{'; '.join(wheres)}: {message}")


def _v(profile: Profile, dotted: str):
    return profile.get(dotted)


def check_batches(p: Profile) -> None:
    over, rbs = _v(p, "dynamic_sampling.over-sampling-batch-size"), _v(p, "rollout.rollout-batch-size")
    n, gbs = _v(p, "rollout.n-samples-per-prompt"), _v(p, "rollout.global-batch-size")
    if over is not None and rbs is not None and over < rbs:
        _fail(p, ["dynamic_sampling.over-sampling-batch-size", "rollout.rollout-batch-size"],
              f"over-sampling-batch-size = {over} must be >= rollout-batch-size = {rbs}. Raise the first or lower the second.")
    if None not in (rbs, n, gbs) and (rbs * n) % gbs:
        _fail(p, ["rollout.rollout-batch-size", "rollout.n-samples-per-prompt", "rollout.global-batch-size"],
              f"rollout-batch-size x n-samples-per-prompt = {rbs} x {n} = {rbs * n} is not divisible by "
              f"global-batch-size = {gbs}. Make the samples per rollout a multiple of the global batch.")


def check_gpus(p: Profile) -> None:
    topo, slurm = p.section("topology"), p.section("slurm")
    want, have = slime_gpus(p), slurm["nodes"] * slurm["gpus_per_node"]
    desc = f"actor-num-nodes x actor-num-gpus-per-node = {topo['actor-num-nodes']} x {topo['actor-num-gpus-per-node']}"
    if not topo.get("colocate"):
        desc += f" + rollout-num-gpus {topo.get('rollout-num-gpus') or 0}"
    if want != have:
        _fail(p, ["topology.actor-num-nodes", "slurm.nodes", "slurm.gpus_per_node"],
              f"slime asks Ray for {want} GPUs ({desc}, colocate={bool(topo.get('colocate'))}) but the "
              f"allocation has slurm.nodes x slurm.gpus_per_node = {slurm['nodes']} x {slurm['gpus_per_node']} = {have}. "
              "Use --nodes/--gpus-per-node or fix topology.")
    if topo.get("num-gpus-per-node") != slurm["gpus_per_node"]:
        _fail(p, ["topology.num-gpus-per-node", "slurm.gpus_per_node"],
              f"topology.num-gpus-per-node = {topo.get('num-gpus-per-node')} differs from slurm.gpus_per_node = "
              f"{slurm['gpus_per_node']}. Set both to the GPUs each node really has (or use --gpus-per-node).")
    if topo.get("colocate") and topo.get("rollout-num-gpus") not in (None, want):
        _fail(p, ["topology.rollout-num-gpus", "topology.colocate"],
              f"with colocate the rollout shares the actor's {want} GPUs, but topology.rollout-num-gpus = "
              f"{topo['rollout-num-gpus']}. Set it to {want} or turn colocate off.")


def check_parallel(p: Profile) -> None:
    topo, par = p.section("topology"), p.section("parallel")
    actor = topo["actor-num-nodes"] * topo["actor-num-gpus-per-node"]
    tp, pp, cp = (par.get(k) or 1 for k in ("tensor-model-parallel-size", "pipeline-model-parallel-size", "context-parallel-size"))
    if actor % (tp * pp * cp):
        _fail(p, ["parallel.tensor-model-parallel-size", "topology.actor-num-nodes"],
              f"tensor x pipeline x context parallel = {tp} x {pp} x {cp} = {tp * pp * cp} does not divide the "
              f"{actor} actor GPUs. Pick sizes whose product divides {actor}.")
    ep = par.get("expert-model-parallel-size") or 1
    if actor % ep:
        _fail(p, ["parallel.expert-model-parallel-size"],
              f"expert-model-parallel-size = {ep} does not divide the {actor} actor GPUs.")
    dp = actor // (tp * pp * cp)
    gbs = p.get("rollout.global-batch-size")
    if gbs is not None and gbs % dp:
        _fail(p, ["rollout.global-batch-size", "slurm.nodes"],
              f"global-batch-size = {gbs} is not divisible by the data-parallel size {dp} "
              f"({actor} actor GPUs / (TP {tp} x PP {pp} x CP {cp})). Change the batch or the node count.")
    engine = p.get("sglang.rollout-num-gpus-per-engine") or topo.get("rollout-num-gpus-per-engine") or 1
    rollout = actor if topo.get("colocate") else (topo.get("rollout-num-gpus") or 0)
    if rollout % engine:
        _fail(p, ["sglang.rollout-num-gpus-per-engine", "topology.rollout-num-gpus"],
              f"rollout-num-gpus-per-engine = {engine} does not divide the {rollout} rollout GPUs.")


def check_options(p: Profile) -> None:
    if p.get("wandb.use-wandb") and not p.get("wandb.wandb-group"):
        _fail(p, ["wandb.wandb-group"], "wandb is on (WANDB_API_KEY is set) but wandb.wandb-group is empty; slime needs a group.")
    if p.get("eval.enabled") and not p.get("eval.eval-prompt-data"):
        _fail(p, ["eval.enabled", "eval.eval-prompt-data"],
              "eval.enabled is true but eval.eval-prompt-data is empty: give [NAME, PATH] or turn eval off.")


def run_checks(profile: Profile) -> None:
    """Raise CheckError on the first inconsistency."""
    for check in (check_batches, check_gpus, check_parallel, check_options):
        check(profile)

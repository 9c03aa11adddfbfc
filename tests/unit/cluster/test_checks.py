from __future__ import annotations

import pytest

from cluster.profile.checks import run_checks, scale_topology, slime_gpus
from cluster.errors import CheckError
from cluster.profile import load_profile


def checked(name="smoke", sets=(), nodes=None, gpus=None, env=None):
    p = scale_topology(load_profile(name, sets=list(sets), env={}), nodes, gpus, env=env or {})
    run_checks(p)
    return p


@pytest.mark.parametrize("name", ["smoke", "full"])
@pytest.mark.parametrize("nodes", [1, 2])
def test_seed_profiles_pass(name, nodes):
    p = checked(name, nodes=nodes)
    assert slime_gpus(p) == nodes * 4
    assert p.get("topology.actor-num-nodes") == nodes
    assert p.get("topology.rollout-num-gpus") == nodes * 4


def test_gpus_per_node_scales_every_gpu_key():
    p = checked("smoke", nodes=2, gpus=2)
    assert (p.get("slurm.gpus_per_node"), p.get("topology.num-gpus-per-node"), p.get("topology.actor-num-gpus-per-node")) == (2, 2, 2)
    assert slime_gpus(p) == 4


def test_not_colocated_keeps_rollout_gpus_and_gives_actor_the_rest():
    p = checked("smoke", sets=["colocate=false", "rollout-num-gpus=4"], nodes=3)
    assert p.get("topology.actor-num-nodes") == 2
    assert slime_gpus(p) == 12


@pytest.mark.parametrize("sets, nodes, fragment", [
    (["over-sampling-batch-size=2"], None, "over-sampling-batch-size = 2 must be >= rollout-batch-size = 4"),
    (["global-batch-size=16", "n-samples-per-prompt=3"], None, "4 x 3 = 12 is not divisible by global-batch-size = 16"),
    (["actor-num-nodes=2"], None, "slime asks Ray for 8 GPUs"),
    (["slurm.gpus_per_node=8"], None, "slime asks Ray for 4 GPUs"),
    (["num-gpus-per-node=8"], None, "topology.num-gpus-per-node = 8 differs from slurm.gpus_per_node = 4"),
    (["rollout-num-gpus=2"], None, "with colocate the rollout shares the actor's 4 GPUs"),
    (["tensor-model-parallel-size=3"], None, "tensor x pipeline x context parallel = 3 x 1 x 1 = 3 does not divide the 4 actor GPUs"),
    (["expert-model-parallel-size=3"], None, "expert-model-parallel-size = 3 does not divide"),
    ([], 3, "global-batch-size = 8 is not divisible by the data-parallel size 6"),
    (["rollout-num-gpus-per-engine=3"], None, "rollout-num-gpus-per-engine = 3 does not divide the 4 rollout GPUs"),
    (["eval.enabled=true"], None, "eval.enabled is true but eval.eval-prompt-data is empty"),
    (["colocate=false", "rollout-num-gpus=3"], 2, "rollout-num-gpus = 3 is not a whole number of nodes"),
    (["colocate=false", "rollout-num-gpus=8"], 2, "the rollout alone takes 2 node(s)"),
])
def test_each_failed_check_has_its_own_message(sets, nodes, fragment):
    with pytest.raises(CheckError) as exc:
        checked("smoke", sets=sets, nodes=nodes)
    assert fragment in str(exc.value)
    assert "profiles/" in str(exc.value) or "--set" in str(exc.value) or "--nodes" in str(exc.value)


def test_wandb_needs_group():
    with pytest.raises(CheckError, match="wandb-group is empty"):
        checked("smoke", sets=["wandb.wandb-group=null"], env={"WANDB_API_KEY": "x"})


def test_wandb_auto_follows_the_key():
    assert checked("smoke", env={"WANDB_API_KEY": "x"}).get("wandb.use-wandb") is True
    assert checked("smoke").get("wandb.use-wandb") is False


@pytest.mark.parametrize("nodes", [0, -1])
def test_nodes_must_be_positive(nodes):
    with pytest.raises(CheckError, match=f"--nodes {nodes}: must be a positive integer"):
        checked("smoke", nodes=nodes)

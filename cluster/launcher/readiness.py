"""Pure verdicts on the live Ray cluster: is it ready, and is it the cluster slime will need?"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from cluster.launcher.api import NodeInfo


@dataclass(frozen=True)
class Verdict:
    ready: bool
    problem: str | None = None  # a fatal mismatch: fail now rather than at the deadline
    node: str | None = None  # the host the problem is about, when there is one


def describe_gpus(nodes: Sequence[NodeInfo]) -> str:
    alive = [n for n in nodes if n.state == "ALIVE"]
    per_node = ", ".join(f"{n.name}: {n.gpus}" for n in sorted(alive, key=lambda n: n.name))
    return f"{sum(n.gpus for n in alive)} GPUs ({per_node})"


def check_cluster(nodes: Sequence[NodeInfo], hosts: Sequence[str], gpus_per_node: int,
                  expected_gpus: int) -> Verdict:
    """Ready when every host of the allocation is ALIVE with its GPUs and the total is what
    slime asks for. A DEAD node, a stranger, or a node with the wrong GPU count is a problem."""
    for n in nodes:
        if n.name not in hosts:
            return Verdict(False, f"unknown Ray node {n.name} ({n.ip}) joined this job's cluster; "
                                  f"another Ray may be using its ports", None)
        if n.state == "DEAD":
            return Verdict(False, f"Ray node on {n.name} is DEAD", n.name)
        if n.state == "ALIVE" and n.gpus != gpus_per_node:
            return Verdict(False, f"{n.name} joined Ray with {n.gpus} GPUs, expected "
                                  f"{gpus_per_node} per node", n.name)
    alive = {n.name for n in nodes if n.state == "ALIVE"}
    if alive != set(hosts):
        return Verdict(False)
    total = sum(n.gpus for n in nodes if n.state == "ALIVE")
    if total != expected_gpus:
        return Verdict(False, f"the Ray cluster has {describe_gpus(nodes)} but slime asks for "
                              f"{expected_gpus} (expected_gpus); {len(hosts)} nodes x "
                              f"{gpus_per_node} GPUs per node != {expected_gpus}. Make the "
                              f"profile's slime GPU arguments match the allocation")
    return Verdict(True)


def find_dead(nodes: Sequence[NodeInfo], hosts: Sequence[str]) -> str | None:
    """First host of this allocation whose Ray node is DEAD (during the job)."""
    return next((n.name for n in nodes if n.state == "DEAD" and n.name in hosts), None)

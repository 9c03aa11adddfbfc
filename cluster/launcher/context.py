"""The state of one node's launcher (`Node`): its spec, Slurm identity, rendezvous paths, log and
heartbeat, and the `ray start` child once it exists. Shared by node.py (bring-up) and job.py (the Ray job).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cluster.errors import RayStartError
from cluster.launcher.rendezvous import Heartbeat, NodeLog, RendezvousPaths
from cluster.launcher.spec import LaunchSpec, SlurmIdentity


@dataclass
class Node:
    """One node's launcher state (mutable: the child appears during bring-up)."""

    spec: LaunchSpec
    ident: SlurmIdentity
    env: Mapping[str, str]
    paths: RendezvousPaths
    log: NodeLog
    beat: Heartbeat
    tag: str
    temp_dir: str  # the rendered name; start_ray may claim a suffixed one (see claim_temp_dir)
    proc: subprocess.Popen | None = None
    temp_claimed: bool = False
    token: str | None = None  # the job's Ray auth token (None: ray.auth disabled, or not read yet)
    driver_follower: Any = None  # job.LogFollower of the driver log: pumped once more at teardown
    run_failed: bool = False  # a worker whose node 0 reported a failure (keeps its Ray log tails)
    head_gone: bool = False  # a worker that lost node 0 (it then removes the token itself)
    claim: Any = None  # claims.Claim: this launcher's record of its port band and temp dir

    @property
    def what(self) -> str:
        return f"job {self.ident.job_id}"

    @property
    def token_file(self) -> Path:
        from cluster.launcher.auth import token_path

        return token_path(self.paths.log_dir)

    def log_of(self, node_id: int) -> Path:
        return self.paths.node_log(node_id, self.ident.hosts[node_id])

    def guard_child(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            role = "head" if self.ident.is_head else "worker"
            tail = "\n  ".join(self.log.tail(8))
            raise RayStartError(
                f"{self.what}: Ray {role} on {self.ident.host} exited with code "
                f"{self.proc.returncode} (log: {self.log.path}); last lines:\n  {tail}")

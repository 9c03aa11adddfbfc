"""Node setup on node 0: secrets kept out of Ray's job table; a Ray temp dir of its own."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from cluster.launcher.spec import LaunchSpec, parse_slurm_identity
from cluster.launcher.node import Node, claim_temp_dir
from cluster.errors import ConfigError
from cluster.launcher.job import check_no_secret_values
from cluster.launcher.rendezvous import Heartbeat, NodeLog, RendezvousPaths

SECRET = "wandb-0123456789abcdef"


def node(tmp_path: Path, entrypoint: list[str], env_vars: dict[str, str] | None = None,
         temp_dir: str = "/tmp/ray-7-0-0") -> Node:
    spec = LaunchSpec(chain_dir=str(tmp_path), nodes=1, gpus_per_node=1, expected_gpus=1,
                      entrypoint=entrypoint, env_vars=env_vars or {})
    ident = parse_slurm_identity({"SLURM_JOB_ID": "7", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "n1"})
    paths = RendezvousPaths.of(str(tmp_path), "train", "7", 0)
    return Node(spec, ident, {"WANDB_API_KEY": SECRET, "HF_TOKEN": "short"}, paths,
                NodeLog(tmp_path / "n.log", time.monotonic(), echo=False),
                Heartbeat(tmp_path / "hb.json", 0, "n1"), tag="7-0-0", temp_dir=temp_dir)


@pytest.mark.parametrize("entrypoint,env_vars", [
    (["python3", "train.py", "--wandb-key", SECRET], None),
    (["python3", "train.py", f"--wandb-key={SECRET}"], None),
    (["python3", "train.py"], {"EXTRA": SECRET}),
])
def test_secret_value_in_entrypoint_or_runtime_env_refused(tmp_path: Path, entrypoint, env_vars) -> None:
    with pytest.raises(ConfigError, match="value of WANDB_API_KEY appears"):
        check_no_secret_values(node(tmp_path, entrypoint, env_vars))


def test_a_short_secret_is_still_refused(tmp_path: Path) -> None:
    # issue 13: no minimum length; HF_TOKEN is "short" here
    with pytest.raises(ConfigError, match="value of HF_TOKEN appears"):
        check_no_secret_values(node(tmp_path, ["python3", "train.py", "--note", "short"]))


def test_clean_entrypoint_passes(tmp_path: Path) -> None:
    # the value only inside a longer word ("shortcut") is not the secret
    check_no_secret_values(node(tmp_path, ["python3", "train.py", "--note", "shortcut", "--wandb-project", "x"]))


def test_temp_dir_never_shared_with_an_existing_one(tmp_path: Path) -> None:
    base = tmp_path / "ray-7-0-0"
    base.mkdir()  # another cluster's (or a failed run's) dir with the same job id
    n = node(tmp_path, ["python3", "train.py"], temp_dir=str(base))
    claim_temp_dir(n)
    assert n.temp_claimed and n.temp_dir == f"{base}-1" and Path(n.temp_dir).is_dir()
    fresh = node(tmp_path, ["python3", "train.py"], temp_dir=str(tmp_path / "ray-8-0-0"))
    claim_temp_dir(fresh)
    assert fresh.temp_dir == str(tmp_path / "ray-8-0-0")

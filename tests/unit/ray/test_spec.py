"""LaunchSpec round trip and validation; Slurm identity; the CLI's bad-input paths."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.launcher.spec import LaunchSpec, RaySpec, load_spec, parse_slurm_identity
from cluster.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def minimal(**over: object) -> dict:
    data = {"chain_dir": "/tmp/c", "nodes": 2, "gpus_per_node": 4, "expected_gpus": 8,
            "entrypoint": ["python3", "train.py", "--lr", "1e-6"]}
    data.update(over)
    return data


def test_round_trip_through_json() -> None:
    spec = LaunchSpec.from_dict(minimal(
        working_dir="/opt/slime", env_vars={"CUDA_DEVICE_MAX_CONNECTIONS": "1"},
        ray={"node_ip": "10.0.0.1", "object_store_memory": 10**9, "num_cpus": 8,
             "health_check": {"RAY_health_check_period_ms": "500"}, "ready_timeout_s": 30}))
    again = LaunchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.ray == RaySpec(node_ip="10.0.0.1", object_store_memory=10**9, num_cpus=8,
                                health_check={"RAY_health_check_period_ms": "500"},
                                ready_timeout_s=30.0)
    assert again.stage == "train" and again.ray.port_base == 20000


@pytest.mark.parametrize("data,match", [
    (minimal(nodez=2), r"unknown key nodez \(did you mean nodes\?\)"),
    (minimal(ray={"head_timout_s": 3}), r"unknown key ray.head_timout_s \(did you mean ray.head_timeout_s\?\)"),
    ({k: v for k, v in minimal().items() if k != "entrypoint"}, "missing required key entrypoint"),
    (minimal(nodes="2"), "nodes must be int"),
    (minimal(nodes=True), "nodes must be int"),
    (minimal(entrypoint="python3 train.py"), "entrypoint must be a list of strings"),
    (minimal(entrypoint=[]), "entrypoint is empty"),
    (minimal(env_vars={"X": 1}), "env_vars must map strings to strings"),
    (minimal(env_vars={"WANDB_API_KEY": "x"}), "looks like a secret"),
    (minimal(gpus_per_node=0), "gpus_per_node must be at least 1"),
    (minimal(ray={"health_check": {"health_check_period_ms": "5"}}), "not a RAY_"),
    (minimal(ray={"num_cpus": 2}), "num_cpus 2 < gpus_per_node 4"),
    (minimal(ray={"port_base": 65500}), "port_base 65500 is out of range"),
    (minimal(ray={"ready_timeout_s": 0}), "ready_timeout_s must be positive"),
    (minimal(ray=[1]), "ray must be an object"),
])
def test_bad_specs_are_config_errors(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LaunchSpec.from_dict(data)


def slurm_env(**over: str) -> dict[str, str]:
    env = {"SLURM_JOB_ID": "4812", "SLURM_NODEID": "1", "SLURM_PROCID": "1",
           "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_NUM_NODES": "3"}
    env.update(over)
    return env


def test_identity_from_slurm_env() -> None:
    ident = parse_slurm_identity(slurm_env(SLURM_RESTART_COUNT="2"))
    assert (ident.job_id, ident.node_id, ident.hosts, ident.restart, ident.host) == (
        "4812", 1, ("n1", "n2", "n3"), 2, "n2")
    assert not ident.is_head
    assert parse_slurm_identity(slurm_env(SLURM_NODEID="0", SLURM_PROCID="0")).restart == 0


@pytest.mark.parametrize("env,match", [
    ({}, "not inside a Slurm job step"),
    (slurm_env(SLURM_PROCID="4"), "exactly one task per node"),
    (slurm_env(SLURM_JOB_NUM_NODES="2"), "Slurm environment disagrees"),
    (slurm_env(SLURM_JOB_ID="abc"), "malformed Slurm environment"),
])
def test_identity_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_slurm_identity(env)


def test_load_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_spec(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_spec(str(bad))


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.launch", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("content,env_over,match", [
    (minimal(nodez=1), {}, "unknown key nodez"),
    (minimal(), {"SLURM_JOB_ID": ""}, "not inside a Slurm job step"),
    (minimal(ray={"temp_root": "/" + "x" * 40}), {}, "temp_root"),
])
def test_cli_bad_input_one_error_line_exit_2(tmp_path: Path, content: dict, env_over: dict,
                                             match: str) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**content, "chain_dir": str(tmp_path / "chain")}))
    env = {"PATH": "/usr/bin:/bin", **slurm_env(SLURM_NODEID="0", SLURM_PROCID="0")}
    env.update(env_over)
    env = {k: v for k, v in env.items() if v}
    res = _cli(["--spec", str(spec)], env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not list((tmp_path / "chain").rglob("*.json"))  # nothing half-done

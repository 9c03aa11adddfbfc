"""Ray inside real Slurm allocations: 1-, 2- and 3-node train stages with the stand-in driver.

Each job is `sbatch … --wrap "srun python3 -m cluster.launch --spec SPEC"` on the local cluster
(one task per node, each node its own network namespace without a default route), the entrypoint
a real Ray driver (tests/standins/ray_driver.py). The helpers here are shared with
test_ray_faults.py.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import shlex
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pytest

from cluster.launcher.spec import LaunchSpec, RaySpec
from cluster.launcher.procs import find_tree
from tests.integration.conftest import FINAL_STATES, LocalSlurm, log_tails
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "standins" / "ray_driver.py"
SECRET = "sekrit-" + secrets.token_hex(8)  # must reach the driver, never a file or argv
JOB_TIMEOUT_S = 240
# Tight failure detection for tests (RAY.md); production keeps Ray's defaults.
HEALTH = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
          "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3",
          "RAY_gcs_rpc_server_reconnect_timeout_s": "5"}




@dataclass
class RayRun:
    """One submitted train job and where to look at it."""

    slurm: LocalSlurm
    job_id: str
    chain: Path
    spec: LaunchSpec
    out: Path

    @property
    def log_dir(self) -> Path:
        return self.chain / "train" / self.job_id / "restart-0"

    @property
    def rdv(self) -> Path:
        return self.log_dir / "rendezvous"

    def read(self, name: str) -> dict | None:
        try:
            return json.loads((self.rdv / name).read_text())
        except (OSError, ValueError):
            return None

    def tails(self) -> str:
        return log_tails([self.out, self.log_dir])

    def tags(self) -> list[str]:
        return [f"{self.job_id}-{i}-0" for i in range(self.spec.nodes)]

    def ray_pids(self, node: int | None = None) -> set[int]:
        tags = self.tags() if node is None else [self.tags()[node]]
        return set().union(*(find_tree(None, t) for t in tags))

    def wait_for(self, cond: Callable[[], Any], what: str, timeout_s: float = JOB_TIMEOUT_S) -> Any:
        return wait_for(cond, f"job {self.job_id}: {what}", timeout_s, self.tails)

    def finish(self, timeout_s: float = JOB_TIMEOUT_S) -> tuple[str, dict]:
        """Wait for the Slurm job to end; return its state and node 0's done marker."""
        state = self.wait_for(lambda: (s := self.slurm.job_state(self.job_id)) in FINAL_STATES and s,
                              "the Slurm job to end", timeout_s)
        done = self.read("done.json")
        assert done is not None, f"no done.json for job {self.job_id}{self.tails()}"
        return state, done

    def assert_no_ray_left(self, timeout_s: float = 60) -> None:
        self.wait_for(lambda: not self.ray_pids(), "every Ray process of the job to exit", timeout_s)


def make_spec(chain: Path, nodes: int, gpus: int, *, expected: int | None = None,
              driver_args: list[str] | None = None, record: Path | None = None,
              ray: dict[str, Any] | None = None) -> LaunchSpec:
    expected = nodes * gpus if expected is None else expected
    entry = ["python3", str(DRIVER), "--record", str(record or chain / "record.json"),
             "--expect-gpus", str(expected), "--gpus-per-node", str(gpus), *(driver_args or []),
             "--lr", "1e-6", "--rollout-batch-size", "8"]  # stand-ins for slime flags
    ray_spec = RaySpec(object_store_memory=100 * 1024 * 1024, num_cpus=gpus, health_check=HEALTH,
                       ready_timeout_s=120, head_timeout_s=120, heartbeat_timeout_s=8,
                       head_lost_s=8, stop_grace_s=10)
    if ray:
        ray_spec = replace(ray_spec, **ray)
    return LaunchSpec(chain_dir=str(chain), nodes=nodes, gpus_per_node=gpus, expected_gpus=expected,
                      entrypoint=entry, working_dir=str(ROOT / "tests"),
                      env_vars={"CUDA_DEVICE_MAX_CONNECTIONS": "1", "PYTHONPATH": str(ROOT)},
                      ray=ray_spec)


def submit(slurm: LocalSlurm, spec: LaunchSpec, *, gres: int | None = None,
           nodelist: str | None = None, name: str = "ray-test",
           env_extra: dict[str, str] | None = None, sbatch_args: list[str] | None = None) -> RayRun:
    chain = Path(spec.chain_dir)
    chain.mkdir(parents=True, exist_ok=True)
    spec_file = chain / f"spec-{name}.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    out = chain / f"slurm-{name}-%j.out"
    argv = ["sbatch", "--parsable", "-J", name, "-N", str(spec.nodes), "--ntasks-per-node=1",
            f"--gres=gpu:{spec.gpus_per_node if gres is None else gres}", f"--output={out}",
            f"--chdir={ROOT}", "--wrap",
            f"exec srun python3 -m cluster.launch --spec {shlex.quote(str(spec_file))}"]
    if nodelist:
        argv[2:2] = [f"--nodelist={nodelist}"]
    argv[2:2] = sbatch_args or []
    env = {**slurm.env, "PYTHONPATH": str(ROOT), "WANDB_API_KEY": SECRET, **(env_extra or {})}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    return RayRun(slurm, job_id, chain, spec, Path(str(out).replace("%j", job_id)))


def secret_hash() -> str:
    return f"<sha256:{hashlib.sha256(SECRET.encode()).hexdigest()[:16]}>"


def assert_secret_nowhere(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), f"secret leaked into {path}"


@pytest.mark.parametrize("nodes", [1, 2, 3])
def test_train_stage_on_n_nodes(local_slurm: LocalSlurm, tmp_path: Path, nodes: int) -> None:
    hosts = local_slurm.nodes[:nodes]
    run = submit(local_slurm, make_spec(tmp_path / "chain", nodes, 4),
                 nodelist=",".join(hosts), name=f"ok{nodes}")
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("COMPLETED", 0), run.tails()

    record = json.loads((run.chain / "record.json").read_text())
    assert record["argv"][1:] == run.spec.entrypoint[2:]  # the argv the job got, intact
    assert record["cwd"] == str(ROOT / "tests")
    assert record["cluster_gpus"] == 4 * nodes and record["placement_group"] == "ready"
    assert sorted(p["host"] for p in record["probes"]) == sorted(hosts)
    assert record["env"]["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert record["env"]["WANDB_API_KEY"] == secret_hash()  # via `ray start`'s environment
    assert record["env"]["RAY_USAGE_STATS_ENABLED"] == "0"
    assert record["env"]["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" not in record["env"]
    assert "RAY_AUTH_TOKEN_PATH" in record["env"]  # (the stand-in hashes values of *TOKEN* names)
    assert not (run.log_dir / ".auth").exists()  # deleted at teardown
    assert_secret_nowhere(run.chain)

    head = run.read("head.json")
    assert head is not None and head["host"] == hosts[0]
    # outside the node's ephemeral range (bands sit below it, or above it when the job id maps there)
    low, high = json.loads((run.log_dir / f"ports-node-0-{hosts[0]}.json").read_text())["ephemeral_range"]
    assert not low <= int(head["gcs_address"].rsplit(":", 1)[1]) <= high
    logs = sorted(p.name for p in run.log_dir.glob("node-*.log"))
    assert logs == [f"node-{i}-{h}.log" for i, h in enumerate(hosts)]
    head_log = (run.log_dir / logs[0]).read_text()
    for marker in ("head up at", f"cluster ready: {nodes} nodes, {4 * nodes} GPUs", "SUCCEEDED"):
        assert marker in head_log, run.tails()
    assert f"{4 * nodes} GPUs, placement group of {4 * nodes} bundles ready" in (
        run.log_dir / "driver.log").read_text()
    run.assert_no_ray_left()
    assert not any(Path(f"/tmp/ray-{run.job_id}-{i}-0").exists() for i in range(nodes))


def test_run_node_in_process_through_submitit(local_slurm: LocalSlurm, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """What the plan does: submitit runs `run_node(spec)` as one task per node and gets the codes."""
    import submitit

    from cluster.launcher.main import run_node

    for key, value in {**local_slurm.env, "PYTHONPATH": str(ROOT), "WANDB_API_KEY": SECRET}.items():
        monkeypatch.setenv(key, value)
    spec = make_spec(tmp_path / "chain", 2, 4)
    ex = submitit.SlurmExecutor(folder=tmp_path / "chain" / "train" / "%j")
    ex.update_parameters(nodes=2, ntasks_per_node=1, gres="gpu:4", time=10,
                         nodelist=",".join(local_slurm.nodes[:2]))
    job = ex.submit(run_node, spec)
    run = RayRun(local_slurm, job.job_id, tmp_path / "chain", spec, tmp_path / "none")
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("COMPLETED", 0), run.tails()
    assert job.results() == [0, 0]
    record = json.loads((run.chain / "record.json").read_text())
    assert record["cluster_gpus"] == 8 and record["env"]["WANDB_API_KEY"] == secret_hash()
    # the launcher's logs of each run sit in the submitit folder of the job, under restart-<n>/
    assert sorted(p.name for p in run.log_dir.glob("node-*.log")) == [
        f"node-0-{local_slurm.nodes[0]}.log", f"node-1-{local_slurm.nodes[1]}.log"]
    assert run.log_dir.name == "restart-0" and list(run.log_dir.parent.glob("*_submitted.pkl"))
    run.assert_no_ray_left()

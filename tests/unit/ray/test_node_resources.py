"""CPUs from the allocation, port bands from the kernel, restart cap, open files, Ray log tails."""
from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import pytest

from cluster.launcher import node as node_mod
from cluster.launcher.context import Node
from cluster.launcher.ray_logs import copy_tails, strip_ansi
from cluster.launcher.render import (
    PORT_BLOCK, parse_port_range, parse_reserved_ports, render_block_size, render_port_bands,
    render_ports_at, worker_ports_needed,
)
from cluster.launcher.rendezvous import Heartbeat, NodeLog, RendezvousPaths
from cluster.launcher.spec import LaunchSpec, RaySpec, parse_slurm_identity


def make_node(tmp_path: Path, env: dict[str, str] | None = None, restart: int = 0, **spec_kw) -> Node:
    spec = LaunchSpec(chain_dir=str(tmp_path), nodes=1, gpus_per_node=4, expected_gpus=4,
                      entrypoint=["true"], **spec_kw)
    ident = parse_slurm_identity({"SLURM_JOB_ID": "7", "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "n1",
                                  "SLURM_RESTART_COUNT": str(restart)})
    paths = RendezvousPaths.of(str(tmp_path), "train", "7", restart)
    return Node(spec, ident, env or {}, paths, NodeLog(tmp_path / "n.log", time.monotonic(), echo=False),
                Heartbeat(tmp_path / "hb.json", 0, "n1"), tag="7-0-0", temp_dir="/tmp/ray-7-0-0")


def test_cpus_come_from_the_allocation_not_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_mod.os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert node_mod.allocation_cpus({"SLURM_CPUS_ON_NODE": "12"}) == (12, "SLURM_CPUS_ON_NODE")
    assert node_mod.allocation_cpus({}) == (16, "CPU affinity")
    assert node_mod.node_cpus(make_node(tmp_path, {"SLURM_CPUS_ON_NODE": "2"}))[0] == 4  # >= GPUs
    assert node_mod.node_cpus(make_node(tmp_path, ray=RaySpec(num_cpus=9))) == (9, "ray.num_cpus")


def test_worker_ports_sized_from_cpus() -> None:
    assert render_block_size(4) == PORT_BLOCK
    assert worker_ports_needed(256) > 240 and render_block_size(256) % PORT_BLOCK == 0
    ports = render_ports_at(20000, render_block_size(256), 0)
    assert ports.max_worker - ports.min_worker + 1 >= worker_ports_needed(256)


def test_bands_avoid_ephemeral_and_reserved_ports() -> None:
    assert parse_port_range("9000\t65000\n") == (9000, 65000)
    assert parse_reserved_ports("8000,20100-20200\n") == [(8000, 8000), (20100, 20200)]
    assert parse_reserved_ports("\n") == []
    starts = render_port_bands(20000, 256, (32768, 60999), [(20100, 20200)])
    assert 20000 not in starts and 20256 in starts
    for s in starts:
        assert s + 255 < 32768 or s > 60999
    assert starts[-1] + 255 <= 65535 and any(s > 60999 for s in starts)
    assert render_port_bands(20000, 256, (9000, 65000), []) == [65056]
    assert render_port_bands(20000, 1024, (9000, 65000), []) == []


def test_no_band_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_mod, "read_kernel_ports", lambda: ((1024, 65535), []))
    with pytest.raises(node_mod.RayStartError, match="outside the ephemeral range 1024-65535"):
        node_mod.pick_ports(make_node(tmp_path, ray=RaySpec(num_cpus=4, temp_root=str(tmp_path))))


def test_port_map_written(tmp_path: Path) -> None:
    n = make_node(tmp_path, ray=RaySpec(num_cpus=4, temp_root=str(tmp_path)))
    ports = node_mod.pick_ports(n)
    written = (n.paths.log_dir / "ports-node-0-n1.json").read_text()
    assert f'"gcs": {ports.gcs}' in written and "ephemeral_range" in written
    node_mod._release_claim(n)


def test_a_band_another_launcher_holds_is_passed_over_and_ours_released(tmp_path: Path) -> None:
    first = make_node(tmp_path, ray=RaySpec(num_cpus=4, temp_root=str(tmp_path)))
    held = node_mod.pick_ports(first)  # this process holds it: the record's owner is alive
    second = make_node(tmp_path, ray=RaySpec(num_cpus=4, temp_root=str(tmp_path)))
    second.tag = "8-0-0"
    ports = node_mod.pick_ports(second)  # the same job id, so the same first choice of band
    assert ports.slot != held.slot and ports.gcs != held.gcs
    assert f"held by 7-0-0 (pid {os.getpid()})" in second.log.path.read_text()
    for n, band in ((first, held), (second, ports)):
        path = n.claim.path
        assert json.loads(path.read_text())["lo"] == band.gcs
        node_mod._release_claim(n)
        assert not path.exists() and n.claim is None


def test_restart_beyond_the_cap_is_refused(tmp_path: Path) -> None:
    node_mod.check_restart_limit(make_node(tmp_path, restart=2, max_restarts=2))
    node_mod.check_restart_limit(make_node(tmp_path, restart=5))  # no cap given
    with pytest.raises(node_mod.RestartLimit, match="restart 3 exceeds slurm.max_restarts = 2") as err:
        node_mod.check_restart_limit(make_node(tmp_path, restart=3, max_restarts=2))
    assert err.value.final_state == "restart-limit"


def test_nofile_soft_limit_raised_to_hard() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY and hard > 64:
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        line = node_mod.raise_nofile()
        assert "open files limit" in line
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_tails_copied_plain_and_without_the_token(tmp_path: Path) -> None:
    logs = tmp_path / "ray" / "session_latest" / "logs"
    logs.mkdir(parents=True)
    token = "f" * 64
    (logs / "raylet.out").write_text("".join(f"line {i}\n" for i in range(1000)) + f"\x1b[31mboom\x1b[0m {token}\n")
    (logs / "worker-1.err").write_text("Traceback\n")
    (logs / "worker-2.err").write_text("")
    copied = copy_tails(str(tmp_path / "ray"), tmp_path / "out", token)
    assert sorted(p.name for p in copied) == ["raylet.out.tail", "worker-1.err.tail"]
    text = (tmp_path / "out" / "raylet.out.tail").read_text()
    assert "boom <ray-auth-token>" in text and "\x1b" not in text and token not in text and "line 5\n" not in text
    assert strip_ansi("\x1b[36m(raylet)\x1b[0m x") == "(raylet) x"
    assert copy_tails(str(tmp_path / "none"), tmp_path / "out2", None) == []


def test_status_reads_final_state_and_points_at_tails(tmp_path: Path) -> None:
    from cluster.status import read_runs, render_table

    run = tmp_path / "restart-1"
    (run / "rendezvous").mkdir(parents=True)
    (run / "ray-logs").mkdir()
    (run / "rendezvous" / "done.json").write_text(
        '{"exit_code": 3, "state": "restart-limit", "message": "\\u001b[31mrestart 1 exceeds\\u001b[0m\\nmore"}')
    runs = read_runs(str(tmp_path))
    assert runs == [{"restart": 1, "final": "restart-limit", "exit_code": 3, "message": "restart 1 exceeds",
                     "ray_logs": str(run / "ray-logs")}]
    row = {"stage": "train", "job_id": "7", "state": "FAILED", "nodes": 1, "elapsed": "", "restarts": 1,
           "exit_code": "", "reason": "", "log_dir": str(tmp_path), "runs": runs}
    table = render_table([row])
    assert "train run 1: restart-limit: restart 1 exceeds" in table and "Ray's own log tails" in table


@pytest.mark.parametrize("version,ok,blocking,says", [
    ("2.60.0", True, True, "tested range 2.55 to 2.60"), ("2.55.0", True, True, "tested range"),
    # measured with Ray 2.52.0 on the local cluster: workers put their session under the head's temp dir
    ("2.54.1", False, True, "has token authentication, but its workers ignore their own --temp-dir"),
    ("2.52.1", False, True, "has token authentication, but its workers ignore"),
    ("2.40.0", False, True, "has no token authentication"), ("2.61.0", False, False, "newer than the tested range")])
def test_preflight_says_when_ray_is_outside_the_tested_range(version: str, ok: bool, blocking: bool, says: str) -> None:
    from cluster.launcher.preflight import DoctorSpec, Probe, check_ray_version

    spec = DoctorSpec(gpus_per_node=0, slime_dir=None, megatron_dir=None, inputs={}, save=None)
    [finding] = check_ray_version(spec, Probe(version_of=lambda _n: version))
    assert (finding.ok, finding.blocking) == (ok, blocking), finding.line()
    assert says in finding.line(), finding.line()
    assert check_ray_version(spec, Probe(version_of=lambda _n: None)) == []


def test_installed_ray_is_in_the_tested_range() -> None:
    from cluster.launcher.preflight import DoctorSpec, Probe, check_ray_version

    spec = DoctorSpec(gpus_per_node=0, slime_dir=None, megatron_dir=None, inputs={}, save=None)
    assert all(f.ok for f in check_ray_version(spec, Probe()))


def test_one_network_choice_for_ray_slime_nccl_gloo() -> None:
    assert node_mod.render_network_env("10.0.0.5", None, "10.0.0.1") == {
        "SLIME_HOST_IP": "10.0.0.5", "MASTER_ADDR": "10.0.0.1"}
    assert node_mod.render_network_env("10.1.0.5", "ib0", "10.1.0.1") == {
        "SLIME_HOST_IP": "10.1.0.5", "MASTER_ADDR": "10.1.0.1", "NCCL_SOCKET_IFNAME": "ib0",
        "GLOO_SOCKET_IFNAME": "ib0"}


def test_unreachable_head_names_the_node(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = make_node(tmp_path)
    with pytest.raises(node_mod.RayStartError, match=r"node 0 \(n1\) cannot reach the Ray head's GCS"):
        node_mod.check_reaches_head(n, f"127.0.0.1:{port}", "127.0.0.1", lambda: None, timeout_s=0.3)

"""The one network setting on the local cluster, whose nodes each have two interfaces: eth0 on the
shared bridge and eth1 on a network the nodes do not share (scripts/local-slurm.sh).

The right choice (by NIC or by CIDR) brings up a 2-node cluster whose driver and Ray workers on
every node see SLIME_HOST_IP / NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME / MASTER_ADDR agree with the
address Ray uses there; the isolated NIC makes the worker's reachability check fail naming the node
(before `ray start`, not a Ray timeout); a setting that matches nothing names the node and its addresses.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from cluster.launcher.spec import NetworkSpec
from tests.integration.conftest import LocalSlurm
from tests.integration.test_ray_launch import make_spec, submit

pytestmark = pytest.mark.integration


def cluster_values(slurm: LocalSlurm) -> dict[str, str]:
    values = {}
    for line in (slurm.state_dir / "cluster.env").read_text().splitlines():
        key, _, raw = line.partition("=")
        values[key] = shlex.split(raw)[0] if raw else ""
    return values


@pytest.fixture
def isolated(local_slurm: LocalSlurm) -> tuple[str, list[str]]:
    """(name, per-node addresses) of the second interface no two nodes share."""
    values = cluster_values(local_slurm)
    assert values.get("ISOLATED_IFACE"), "local-slurm.sh up did not add the second interface"
    return values["ISOLATED_IFACE"], values["ISOLATED_ADDRS"].split()


def subnet_of(addr: str) -> str:
    return addr.rsplit(".", 1)[0] + ".0/24"


@pytest.mark.parametrize("how", ["interface", "cidr"])
def test_right_network_env_agrees_on_every_node(local_slurm: LocalSlurm, tmp_path: Path, how: str) -> None:
    hosts, addrs = local_slurm.nodes[:2], local_slurm.addrs[:2]
    network = NetworkSpec(interface="eth0") if how == "interface" else NetworkSpec(cidr=subnet_of(addrs[0]))
    spec = make_spec(tmp_path / "chain", 2, 4)
    spec = replace(spec, network=network)
    run = submit(local_slurm, spec, nodelist=",".join(hosts), name=f"net-{how}")
    state, done = run.finish()
    assert (state, done["exit_code"]) == ("COMPLETED", 0), run.tails()

    record = json.loads((run.chain / "record.json").read_text())
    want = {h: {"SLIME_HOST_IP": a, "MASTER_ADDR": addrs[0], "NCCL_SOCKET_IFNAME": "eth0",
                "GLOO_SOCKET_IFNAME": "eth0"} for h, a in zip(hosts, addrs)}
    seen = {p["host"]: p for p in record["probes"]}
    assert sorted(seen) == sorted(hosts), record["probes"]
    for host, probe in seen.items():
        assert probe["net"] == want[host], (host, probe)
        assert probe["node_ip"] == want[host]["SLIME_HOST_IP"]  # Ray's --node-ip-address, the same choice
    driver_env = {k: record["env"].get(k) for k in want[hosts[0]]}
    assert driver_env == want[hosts[0]]  # the driver runs on the head
    head = run.read("head.json")
    assert head is not None and head["ip"] == addrs[0] and head["gcs_address"].startswith(f"{addrs[0]}:")
    assert "network: " in (run.log_dir / f"node-1-{hosts[1]}.log").read_text()
    run.assert_no_ray_left()


def test_isolated_interface_fails_the_reachability_check_naming_the_node(
        local_slurm: LocalSlurm, tmp_path: Path, isolated: tuple[str, list[str]]) -> None:
    iface, iso_addrs = isolated
    hosts = local_slurm.nodes[:2]
    spec = make_spec(tmp_path / "chain", 2, 4)
    spec = replace(spec, network=NetworkSpec(interface=iface))
    run = submit(local_slurm, spec, nodelist=",".join(hosts), name="net-isolated")
    state, done = run.finish()
    assert state != "COMPLETED" and done["exit_code"] != 0, run.tails()
    # node 0's verdict names the worker that cannot reach it, and why: the check, not a Ray deadline
    message = done["message"]
    assert f"node 1 ({hosts[1]}) cannot reach the Ray head's GCS at {iso_addrs[0]}:" in message, run.tails()
    assert f"from its address {iso_addrs[1]}" in message and "not reached within" not in message
    worker_log = (run.log_dir / f"node-1-{hosts[1]}.log").read_text()
    assert "ray start on" not in worker_log  # it never started Ray
    run.assert_no_ray_left()


def test_a_setting_that_matches_nothing_names_the_node_and_its_addresses(
        local_slurm: LocalSlurm, tmp_path: Path, isolated: tuple[str, list[str]]) -> None:
    iface, iso_addrs = isolated
    host, addr = local_slurm.nodes[0], local_slurm.addrs[0]
    spec = make_spec(tmp_path / "chain", 1, 4)
    spec = replace(spec, network=NetworkSpec(cidr="10.199.0.0/24"))
    run = submit(local_slurm, spec, nodelist=host, name="net-none")
    state, done = run.finish()
    assert state != "COMPLETED" and done["exit_code"] != 0, run.tails()
    assert done["message"] == (
        f"job {run.job_id}: node 0 ({host}): network.cidr 10.199.0.0/24 matches none of its interfaces: "
        f"lo 127.0.0.1, eth0 {addr}, {iface} {iso_addrs[0]}. Set network.interface or network.cidr to the "
        f"network the nodes share"), run.tails()

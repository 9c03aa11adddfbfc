"""The one network setting: validation (`--dry-run`), the per-node address choice over (ifname,
address) pairs, the env it exports, and the launcher's one-line error on a node it does not fit."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.launcher import node as node_mod
from cluster.launcher.context import Node
from cluster.launcher.network import (
    NetworkChoice, check_choice, choose_address, interface_of, local_ipv4_addresses, render_network_env,
)
from cluster.launcher.rendezvous import Heartbeat, NodeLog, RendezvousPaths
from cluster.launcher.spec import LaunchSpec, NetworkSpec, RaySpec, network_choice, parse_slurm_identity

# A multi-NIC node: Ethernet, InfiniBand (with an alias address), a container bridge, loopback.
NODE = [("lo", "127.0.0.1"), ("eth0", "192.168.1.21"), ("ib0", "10.10.0.21"), ("ib0:1", "10.11.0.21"),
        ("docker0", "172.17.0.1")]


@pytest.mark.parametrize("choice,expected", [
    (NetworkChoice(interface="ib0"), ("ib0", "10.10.0.21")),  # the NIC's first address
    (NetworkChoice(interface="eth0"), ("eth0", "192.168.1.21")),
    (NetworkChoice(cidr="10.10.0.0/16"), ("ib0", "10.10.0.21")),  # the NIC that holds it, by CIDR too
    (NetworkChoice(cidr="10.11.0.0/24"), ("ib0", "10.11.0.21")),  # an alias label counts as its NIC
    (NetworkChoice(interface="ib0", cidr="10.11.0.0/24"), ("ib0", "10.11.0.21")),  # both must match
    (NetworkChoice(cidr="192.168.1.21/32"), ("eth0", "192.168.1.21")),  # ray.node_ip, mapped
    (NetworkChoice(interface="ib1"), None),
    (NetworkChoice(interface="ib"), None),  # a name, not NCCL's prefix match
    (NetworkChoice(cidr="10.12.0.0/24"), None),
    (NetworkChoice(interface="eth0", cidr="10.10.0.0/16"), None),
])
def test_choose_address(choice: NetworkChoice, expected: tuple[str, str] | None) -> None:
    assert choose_address(NODE, choice) == expected


def test_a_cidr_spanning_two_nics_is_ambiguous() -> None:
    with pytest.raises(ValueError, match=r"network.cidr 10.0.0.0/8 matches addresses on 2 interfaces \(ib0 "
                                         r"10.10.0.21, ib0 10.11.0.21, eth9 10.1.0.5\); set network.interface"):
        choose_address([*NODE, ("eth9", "10.1.0.5")], NetworkChoice(cidr="10.0.0.0/8"))


def test_interface_of_and_env() -> None:
    assert interface_of(NODE, "10.11.0.21") == "ib0" and interface_of(NODE, "10.9.9.9") is None
    assert render_network_env("10.10.0.22", "ib0", "10.10.0.21") == {
        "SLIME_HOST_IP": "10.10.0.22", "MASTER_ADDR": "10.10.0.21",
        "NCCL_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "ib0"}


@pytest.mark.parametrize("choice,match", [
    (NetworkChoice(interface="eth0@if7"), "is `ip`'s display form; the interface name is 'eth0'"),
    (NetworkChoice(interface="^docker,lo"), "NCCL's list syntax"),
    (NetworkChoice(interface="=ib0"), "NCCL's list syntax"),
    (NetworkChoice(interface="eth 0"), "not a network interface name"),
    (NetworkChoice(interface="averyveryverylongname"), "not a network interface name"),
    (NetworkChoice(cidr="10.0.0.0"), "has no prefix length"),
    (NetworkChoice(cidr="10.0.0.5/24"), r"has host bits set; did you mean 10.0.0.0/24\?"),
    (NetworkChoice(cidr="10.0.0.0/33"), "not a network in CIDR notation"),
    (NetworkChoice(cidr="banana/8"), "not a network in CIDR notation"),
    (NetworkChoice(cidr="fd00::/64"), "IPv6"),
])
def test_bad_values(choice: NetworkChoice, match: str) -> None:
    problem = check_choice(choice)
    assert problem is not None and re.search(match, problem), problem


def test_good_values() -> None:
    for choice in (NetworkChoice(), NetworkChoice(interface="enp65s0f0"), NetworkChoice(interface="ib0.8001"),
                   NetworkChoice(cidr="10.77.0.0/24"), NetworkChoice(interface="eth1", cidr="10.78.0.0/24")):
        assert check_choice(choice) is None


def minimal(**over: object) -> dict:
    return {"chain_dir": "/tmp/c", "nodes": 2, "gpus_per_node": 4, "expected_gpus": 8,
            "entrypoint": ["python3", "train.py"], **over}


@pytest.mark.parametrize("data,match", [
    (minimal(network={"cidr": "10.0.0.1/24"}), r"network.cidr '10.0.0.1/24' has host bits set"),
    (minimal(network={"interface": "^lo"}), r"network.interface '\^lo' is NCCL's list syntax"),
    (minimal(network={"iface": "eth0"}), r"unknown key network.iface"),
    (minimal(network={"interface": "eth0"}, ray={"interface": "eth1"}), r"ray.interface and network.\* are both set"),
    (minimal(ray={"node_ip": "n1"}), r"ray.node_ip 'n1' is not an IPv4 address"),
    (minimal(ray={"interface": "eth0@if3"}), r"ray.interface 'eth0@if3' is `ip`'s display form"),
    (minimal(env_vars={"MASTER_ADDR": "10.0.0.1"}), r"env_vars.MASTER_ADDR is set per node by the launcher"),
    (minimal(env_vars={"NCCL_SOCKET_IFNAME": "ib0"}), r"env_vars.NCCL_SOCKET_IFNAME is set per node"),
])
def test_bad_specs(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LaunchSpec.from_dict(data)


def test_spec_round_trip_and_deprecated_aliases() -> None:
    spec = LaunchSpec.from_dict(minimal(network={"cidr": "10.77.0.0/24"}))
    assert LaunchSpec.from_dict(spec.to_dict()) == spec and spec.network == NetworkSpec(cidr="10.77.0.0/24")
    assert network_choice(spec) == NetworkChoice(cidr="10.77.0.0/24", key="network")
    old = LaunchSpec.from_dict(minimal(ray={"interface": "ib0"}))
    assert network_choice(old) == NetworkChoice(interface="ib0", key="ray")
    assert network_choice(LaunchSpec.from_dict(minimal(ray={"node_ip": "10.0.0.7"}))).cidr == "10.0.0.7/32"
    assert not network_choice(LaunchSpec.from_dict(minimal())).is_set


def test_profile_dry_run_checks_the_network_section() -> None:
    from cluster.plan import render_launch_spec
    from cluster.profile import load_profile

    good = load_profile("smoke", env={}, sets=["network.cidr=10.77.0.0/24"])
    assert render_launch_spec(good, "/tmp/c", ["--lr", "1"]).network == NetworkSpec(cidr="10.77.0.0/24")
    bad = load_profile("smoke", env={}, sets=["network.interface=eth0@if7"])
    with pytest.raises(ConfigError, match=r"^--set network.interface: network.interface 'eth0@if7'"):
        render_launch_spec(bad, "/tmp/c", ["--lr", "1"])


def make_node(tmp_path: Path, **spec_kw) -> Node:
    spec = LaunchSpec(chain_dir=str(tmp_path), nodes=2, gpus_per_node=4, expected_gpus=8,
                      entrypoint=["true"], **spec_kw)
    ident = parse_slurm_identity({"SLURM_JOB_ID": "7", "SLURM_NODEID": "1", "SLURM_PROCID": "1",
                                  "SLURM_JOB_NODELIST": "n[1-2]"})
    paths = RendezvousPaths.of(str(tmp_path), "train", "7", 0)
    return Node(spec, ident, {}, paths, NodeLog(tmp_path / "n.log", time.monotonic(), echo=False),
                Heartbeat(tmp_path / "hb.json", 1, "n2"), tag="7-1-0", temp_dir="/tmp/ray-7-1-0")


def test_a_node_the_setting_does_not_fit_names_itself_and_its_addresses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_mod, "local_ipv4_addresses", lambda: NODE)
    n = make_node(tmp_path, network=NetworkSpec(interface="eth1"))
    with pytest.raises(ConfigError) as err:
        node_mod.resolve_node_address(n)
    msg = str(err.value)
    assert msg == ("job 7: node 1 (n2): network.interface eth1 matches none of its interfaces: lo 127.0.0.1, "
                   "eth0 192.168.1.21, ib0 10.10.0.21, ib0:1 10.11.0.21, docker0 172.17.0.1. Set "
                   "network.interface or network.cidr to the network the nodes share")
    assert node_mod.resolve_node_address(make_node(tmp_path, network=NetworkSpec(cidr="10.11.0.0/24"))) == (
        "10.11.0.21", "ib0")
    assert node_mod.resolve_node_address(make_node(tmp_path, ray=RaySpec(interface="eth0"))) == (
        "192.168.1.21", "eth0")


def test_this_machine_lists_its_loopback() -> None:
    assert ("lo", "127.0.0.1") in local_ipv4_addresses()

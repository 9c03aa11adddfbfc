"""One network setting per job: which address a node uses between nodes, and the env that follows.

The profile's `network.interface` (a NIC name) or `network.cidr` (an IPv4 network) picks, on each
node, one IPv4 address; Ray gets it as `--node-ip-address`, and the same choice is exported to
every process of the node's Ray tree: SLIME_HOST_IP (this node's address), NCCL_SOCKET_IFNAME and
GLOO_SOCKET_IFNAME (the NIC holding it) and MASTER_ADDR (the head's address). Without a setting the
address is what the hostname resolves to. Validation and the choice are pure (unit-tested); listing
this node's addresses is the only part that touches the machine. Stdlib only.
"""
from __future__ import annotations

import array
import fcntl
import ipaddress
import re
import socket
import struct
from dataclasses import dataclass
from typing import Sequence

# What the launcher sets per node in `ray start`'s environment (reaches the driver and every Ray
# worker); a job-wide runtime env (profile `env`) must not set them: it would override per-node values.
NETWORK_ENV = ("SLIME_HOST_IP", "MASTER_ADDR", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")

# A Linux interface name: at most 15 bytes (IFNAMESIZ 16), no '/', ':', whitespace; we also refuse
# NCCL's list syntax (^, =, ',') and `ip`'s "eth0@if7" display form: this is one NIC's name.
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")


@dataclass(frozen=True)
class NetworkChoice:
    """The setting in effect: `key` names where it came from (for messages)."""

    interface: str | None = None
    cidr: str | None = None
    key: str = "network"

    @property
    def is_set(self) -> bool:
        return bool(self.interface or self.cidr)

    def describe(self) -> str:
        parts = ([f"{self.key}.interface {self.interface}"] if self.interface else []) + (
            [f"{self.key}.cidr {self.cidr}"] if self.cidr else [])
        return " and ".join(parts)


def interface_problem(name: str) -> str | None:
    """Why `name` is not a NIC name, or None."""
    if "@" in name:
        return f"{name!r} is `ip`'s display form; the interface name is {name.split('@')[0]!r}"
    if any(c in name for c in "^=,"):
        return f"{name!r} is NCCL's list syntax; give one interface name, e.g. eth0 or ib0"
    if not _IFNAME.fullmatch(name):
        return (f"{name!r} is not a network interface name (at most 15 letters, digits, '_', '.', '-', "
                f"e.g. eth0, ib0, enp65s0f0)")
    return None


def parse_cidr(text: str) -> ipaddress.IPv4Network:
    """An IPv4 network such as 10.77.0.0/24; ValueError with the reason otherwise."""
    if "/" not in text:
        raise ValueError(f"{text!r} has no prefix length; give a network such as 10.0.0.0/24")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not a network in CIDR notation ({err})") from None
        raise ValueError(f"{text!r} has host bits set; did you mean {loose}?") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError(f"{text!r} is IPv6; the launcher picks IPv4 addresses only")
    return net


def check_choice(choice: NetworkChoice) -> str | None:
    """Why the setting cannot work on any node, or None (the `--dry-run` check)."""
    if choice.interface is not None:
        problem = interface_problem(choice.interface)
        if problem:
            return f"{choice.key}.interface {problem}"
    if choice.cidr is not None:
        try:
            parse_cidr(choice.cidr)
        except ValueError as err:
            return f"{choice.key}.cidr {err}"
    return None


def choose_address(addrs: Sequence[tuple[str, str]], choice: NetworkChoice) -> tuple[str, str] | None:
    """The (interface, IPv4 address) the setting picks among a node's (interface, address) pairs,
    in the kernel's order; None when nothing matches. An interface name matches itself and its
    alias labels (eth0:1); with a CIDR too, both must match. ValueError when a CIDR matches
    addresses on two different interfaces (say which one with network.interface)."""
    net = parse_cidr(choice.cidr) if choice.cidr else None
    found = []
    for ifname, addr in addrs:
        nic = ifname.split(":", 1)[0]
        if choice.interface and nic != choice.interface:
            continue
        if net is not None and ipaddress.IPv4Address(addr) not in net:
            continue
        found.append((nic, addr))
    if not found:
        return None
    nics = sorted({nic for nic, _ in found})
    if len(nics) > 1:
        raise ValueError(f"{choice.describe()} matches addresses on {len(nics)} interfaces ("
                         + ", ".join(f"{n} {a}" for n, a in found) + "); set network.interface too")
    return found[0]


def interface_of(addrs: Sequence[tuple[str, str]], ip: str) -> str | None:
    """The NIC that holds `ip` (alias label stripped), or None."""
    return next((ifname.split(":", 1)[0] for ifname, addr in addrs if addr == ip), None)


def describe_addresses(addrs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{ifname} {addr}" for ifname, addr in addrs) or "no IPv4 addresses"


def render_network_env(ip: str, interface: str | None, head_ip: str) -> dict[str, str]:
    """One choice for everything that opens sockets between nodes: slime's own address, the NIC of
    NCCL's and Gloo's bootstrap sockets, torch.distributed's MASTER_ADDR (the head's address)."""
    env = {"SLIME_HOST_IP": ip, "MASTER_ADDR": head_ip}
    if interface:
        env.update({"NCCL_SOCKET_IFNAME": interface, "GLOO_SOCKET_IFNAME": interface})
    return env


def local_ipv4_addresses() -> list[tuple[str, str]]:
    """This node's (interface, IPv4 address) pairs, aliases included (Linux SIOCGIFCONF)."""
    siocgifconf, size = 0x8912, 40  # struct ifreq on 64-bit Linux: 16-byte name + 24-byte union
    count = 64
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while True:
            buf = array.array("B", b"\0" * (count * size))
            ptr, _ = buf.buffer_info()
            used = struct.unpack("iL", fcntl.ioctl(s.fileno(), siocgifconf, struct.pack("iL", len(buf), ptr)))[0]
            if used < len(buf):  # a full buffer may have been truncated: ask again with more room
                break
            count *= 2
    data = buf.tobytes()[:used]
    out = []
    for off in range(0, used, size):
        name = data[off:off + 16].split(b"\0", 1)[0].decode(errors="replace")
        out.append((name, socket.inet_ntoa(data[off + 20:off + 24])))
    return out

"""Pure renderers for Ray inside a Slurm allocation: node lists, ports, temp dirs, argv, env.

Nothing here touches the world; `cluster/ray_cluster.py` runs what these functions describe.
"""
from __future__ import annotations

import re
import shlex
import sys
from dataclasses import asdict, dataclass
from typing import Mapping

from cluster.errors import ConfigError

# Fixed ports stay below Linux's ephemeral range (32768-60999) so no outgoing connection of any
# process can hold one of them, and above Ray's own defaults (6379, 8265, 10001, workers
# 10002-19999) so a default-configured Ray of another user on the node cannot take them either.
PORT_CEILING = 32768
DEFAULT_PORT_BASE = 20000
# One block per (job, restart) on a node: 16 fixed slots, then the worker port range. Ray needs one
# worker port per worker process; 240 covers a node with a few hundred CPUs' worth of idle workers.
PORT_BLOCK = 256
WORKER_PORT_OFFSET = 16
# Unix socket paths are limited to 107 bytes and Ray nests deep under the temp dir.
MAX_TEMP_DIR_LEN = 45
# Inherited by every process of one node's Ray tree (env survives re-parenting to init), so
# teardown and tests can find exactly this node's processes and nobody else's.
TAG_ENV = "HOLDEM_RAY_TAG"


@dataclass(frozen=True)
class RayPorts:
    """Every port one Ray node opens, all pinned (Ray's gRPC uses SO_REUSEPORT: a shared port
    does not fail to bind, two clusters silently split its connections)."""

    slot: int
    gcs: int
    dashboard: int
    client_server: int
    agent_listen: int
    agent_grpc: int
    runtime_env_agent: int
    metrics_export: int
    node_manager: int
    object_manager: int
    dashboard_metric: int
    autoscaler_metric: int
    min_worker: int
    max_worker: int

    def fixed(self) -> list[int]:
        return [v for k, v in asdict(self).items() if k not in ("slot", "min_worker", "max_worker")]

    def all_ports(self) -> list[int]:
        return self.fixed() + list(range(self.min_worker, self.max_worker + 1))


def count_port_slots(port_base: int) -> int:
    if not 1024 <= port_base <= PORT_CEILING - PORT_BLOCK:
        raise ConfigError(
            f"ray.port_base {port_base} is out of range: it must be between 1024 and "
            f"{PORT_CEILING - PORT_BLOCK} (ports stay below the ephemeral range {PORT_CEILING}+)"
        )
    return (PORT_CEILING - port_base) // PORT_BLOCK


def render_ports(port_base: int, slot: int) -> RayPorts:
    if not 0 <= slot < count_port_slots(port_base):
        raise ConfigError(f"port slot {slot} does not fit above ray.port_base {port_base}")
    b = port_base + slot * PORT_BLOCK
    return RayPorts(
        slot=slot, gcs=b, dashboard=b + 1, client_server=b + 2, agent_listen=b + 3,
        agent_grpc=b + 4, runtime_env_agent=b + 5, metrics_export=b + 6, node_manager=b + 7,
        object_manager=b + 8, dashboard_metric=b + 9, autoscaler_metric=b + 10,
        min_worker=b + WORKER_PORT_OFFSET, max_worker=b + PORT_BLOCK - 1,
    )


MAX_PORT = 65535
DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default ip_local_port_range


def check_port_base(port_base: int) -> None:
    if not 1024 <= port_base <= MAX_PORT - PORT_BLOCK + 1:
        raise ConfigError(f"ray.port_base {port_base} is out of range: it must be between 1024 and "
                          f"{MAX_PORT - PORT_BLOCK + 1}; each node places its ports at or above it, outside "
                          f"its kernel's ephemeral range (ip_local_port_range)")


def worker_ports_needed(cpus: int) -> int:
    """Ray takes one port per worker process: the idle pool (one per CPU), every actor (slime's
    trainers, rollout engines, helpers) and drivers. Twice the CPUs plus headroom, at least 64."""
    return max(64, 2 * cpus + 32)


def render_block_size(cpus: int) -> int:
    """Fixed ports plus the worker range, rounded up to whole PORT_BLOCKs so that blocks of jobs
    with different sizes stay aligned on the same grid."""
    need = WORKER_PORT_OFFSET + worker_ports_needed(cpus)
    return -(-need // PORT_BLOCK) * PORT_BLOCK


def parse_port_range(text: str) -> tuple[int, int]:
    """/proc/sys/net/ipv4/ip_local_port_range: "32768\t60999"."""
    lo, hi = (int(x) for x in text.split()[:2])
    return lo, hi


def parse_reserved_ports(text: str) -> list[tuple[int, int]]:
    """/proc/sys/net/ipv4/ip_local_reserved_ports: "8000,9000-9100" (empty: none)."""
    out = []
    for item in text.replace("\n", "").split(","):
        item = item.strip()
        if item:
            lo, _, hi = item.partition("-")
            out.append((int(lo), int(hi or lo)))
    return out


def render_port_bands(port_base: int, block: int, ephemeral: tuple[int, int],
                      reserved: list[tuple[int, int]]) -> list[int]:
    """Start ports of every aligned block at or above port_base that avoids the kernel's
    ephemeral range (an outgoing connection could hold any of those ports) and its reserved ports
    (set aside by the admin for some other service)."""
    avoid = [ephemeral, *reserved]
    starts = []
    start = port_base
    while start + block - 1 <= MAX_PORT:
        end = start + block - 1
        if not any(lo <= end and start <= hi for lo, hi in avoid):
            starts.append(start)
        start += block
    return starts


def render_ports_at(start: int, block: int, slot: int) -> RayPorts:
    b = start
    return RayPorts(
        slot=slot, gcs=b, dashboard=b + 1, client_server=b + 2, agent_listen=b + 3,
        agent_grpc=b + 4, runtime_env_agent=b + 5, metrics_export=b + 6, node_manager=b + 7,
        object_manager=b + 8, dashboard_metric=b + 9, autoscaler_metric=b + 10,
        min_worker=b + WORKER_PORT_OFFSET, max_worker=b + block - 1,
    )


def render_band_order(job_id: int, restart: int, n: int) -> list[int]:
    """Band indices to try, in order: Slurm job ids are sequential, so `job_id mod n` keeps jobs
    started close together apart; the caller skips bands whose ports are taken."""
    first = (job_id + restart) % n
    return [(first + i) % n for i in range(n)]


def render_slot_order(job_id: int, restart: int, port_base: int) -> list[int]:
    """Slots to try on a node, in order. Slurm job ids are sequential, so `job_id mod slots`
    keeps jobs started close together apart; the caller skips slots whose ports are taken."""
    n = count_port_slots(port_base)
    first = (job_id + restart) % n
    return [(first + i) % n for i in range(n)]


def render_temp_dir(root: str, job_id: int, node_id: int, restart: int) -> str:
    # Distinct per node even on one host: a temp dir shared by two raylets crashes one of them.
    path = f"{root.rstrip('/')}/ray-{job_id}-{node_id}-{restart}"
    if len(path) + 2 > MAX_TEMP_DIR_LEN:  # + room for the "-N" suffix of claim_temp_dir
        raise ConfigError(
            f"Ray temp dir {path} is {len(path)} characters; Unix socket paths under it would "
            f"exceed 107 bytes. Set ray.temp_root to a shorter directory (at most "
            f"{MAX_TEMP_DIR_LEN} characters in all), e.g. /tmp"
        )
    return path


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's compressed host list (`n[1-3,7],gpu-[01-02]`) -> host names, in order."""
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        hosts.extend(_expand_item(item))
    if not hosts:
        raise ConfigError(f"SLURM_JOB_NODELIST {nodelist!r} names no host")
    return hosts


def _split_top_level(text: str) -> list[str]:
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if depth != 0:
        raise ConfigError(f"SLURM_JOB_NODELIST {text!r} has unbalanced brackets")
    return [i for i in items + [cur] if i]


def _expand_item(item: str) -> list[str]:
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
    if not m:
        return [item]
    prefix, ranges, rest = m.groups()
    out: list[str] = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ConfigError(f"SLURM_JOB_NODELIST item {item!r} has a bad range {part!r}")
        width = len(lo)
        for n in range(int(lo), int(hi or lo) + 1):
            out.extend(prefix + str(n).zfill(width) + tail for tail in _expand_item(rest))
    return out


def count_visible_devices(value: str | None) -> int | None:
    """GPUs named by CUDA_VISIBLE_DEVICES; None when unset (Ray then trusts --num-gpus)."""
    if value is None:
        return None
    return len([d for d in value.split(",") if d.strip()])


def render_start_argv(
    *, head_address: str | None, node_ip: str, node_name: str, ports: RayPorts, num_gpus: int,
    num_cpus: int, object_store_memory: int | None, temp_dir: str,
) -> list[str]:
    """`ray start --block` for the head (head_address None) or a worker joining head_address."""
    argv = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block"]
    if head_address is None:
        argv += [
            "--head", f"--port={ports.gcs}", f"--dashboard-host={node_ip}",
            f"--dashboard-port={ports.dashboard}", f"--ray-client-server-port={ports.client_server}",
        ]
    else:
        argv += [f"--address={head_address}"]
    argv += [
        f"--node-ip-address={node_ip}", f"--node-name={node_name}",
        f"--node-manager-port={ports.node_manager}", f"--object-manager-port={ports.object_manager}",
        f"--dashboard-agent-listen-port={ports.agent_listen}",
        f"--dashboard-agent-grpc-port={ports.agent_grpc}",
        f"--runtime-env-agent-port={ports.runtime_env_agent}",
        f"--metrics-export-port={ports.metrics_export}",
        f"--min-worker-port={ports.min_worker}", f"--max-worker-port={ports.max_worker}",
        f"--num-gpus={num_gpus}", f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    if object_store_memory:
        argv.append(f"--object-store-memory={object_store_memory}")
    return argv


AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")


def render_start_env(
    base: Mapping[str, str], ports: RayPorts, ray_env: Mapping[str, str], tag: str,
    auth: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment of `ray start`: the task's own (secrets reach the driver only this way),
    usage reporting pointed at a closed local port, the two metric ports Ray takes from env, and
    Ray's auth mode always explicit (`auth`, from cluster/launcher/auth.py; None: disabled) — a
    RAY_AUTH_* the user exported, or ~/.ray/auth_token, never decides it."""
    env = {k: v for k, v in base.items() if k != "RAY_ADDRESS" and k not in AUTH_ENV}
    env.update({
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
        "DASHBOARD_METRIC_PORT": str(ports.dashboard_metric),
        "AUTOSCALER_METRIC_PORT": str(ports.autoscaler_metric),
        # A finished or failing job has nothing to drain; Ray's default waits up to 30 s.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        TAG_ENV: tag,
    })
    env.update({k: v for k, v in ray_env.items() if k not in AUTH_ENV})
    env.update(auth if auth is not None else {"RAY_AUTH_MODE": "disabled"})
    return env


def render_entrypoint(argv: list[str], working_dir: str | None) -> str:
    """The shell line Ray's job supervisor runs. `cd` instead of runtime_env.working_dir, which
    would upload the whole directory (the slime checkout) through the GCS."""
    cmd = shlex.join(argv)
    return f"cd {shlex.quote(working_dir)} && exec {cmd}" if working_dir else f"exec {cmd}"


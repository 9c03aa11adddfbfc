"""The launch spec every node's launcher reads (typed, validated) and the Slurm identity of this task.

The plan builds a `LaunchSpec` from the profile and validates it with `check_spec` before anything is
submitted; each node validates it again after reading `launch.json` (the file may be old or hand-made).
Stdlib only: this module is imported on the submit path and inside the allocation.
"""
from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from cluster.errors import ConfigError
from cluster.launcher.network import NETWORK_ENV, NetworkChoice, check_choice
from cluster.launcher.render import DEFAULT_PORT_BASE, check_port_base, expand_nodelist
from cluster.secrets import is_secret_name


@dataclass(frozen=True)
class RaySpec:
    """How Ray runs on each node (the profile's `ray` section)."""

    node_ip: str | None = None  # deprecated: network.cidr <node_ip>/32 (one fixed address fits one node only)
    interface: str | None = None  # deprecated alias of network.interface
    object_store_memory: int | None = None  # bytes per node; None: Ray's default (30 % of RAM)
    num_cpus: int | None = None  # None: max(GPUs per node, os.cpu_count()); must be >= GPUs
    health_check: dict[str, str] = field(default_factory=dict)  # RAY_* env for every node
    ready_timeout_s: float = 300.0  # head up -> all nodes ALIVE with their GPUs
    head_timeout_s: float = 180.0  # head API up; workers: head.json appears
    port_base: int = DEFAULT_PORT_BASE  # lowest port of the per-job port blocks
    temp_root: str = "/tmp"  # node-local; Ray's temp dir is <temp_root>/ray-<job>-<node>-<restart>
    heartbeat_timeout_s: float = 60.0  # a node whose launcher is silent this long is lost
    head_lost_s: float = 30.0  # a worker leaves when the head API is unreachable this long
    stop_grace_s: float = 15.0  # SIGTERM -> SIGKILL for this node's Ray processes
    auth: str = "token"  # token: a fresh random token per job (cluster/launcher/auth.py); disabled: explicit opt-out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NetworkSpec:
    """Which address each node uses between nodes (the profile's `network` section;
    cluster/launcher/network.py). Neither set: the address the node's hostname resolves to."""

    interface: str | None = None  # a NIC name (eth1, ib0): its IPv4 address on every node
    cidr: str | None = None  # an IPv4 network (10.0.0.0/24): each node's address inside it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def network_choice(spec: LaunchSpec) -> NetworkChoice:
    """The network setting in effect: `network.*`, else the deprecated `ray.interface` / `ray.node_ip`."""
    n, r = spec.network, spec.ray
    if n.interface or n.cidr:
        return NetworkChoice(n.interface, n.cidr, "network")
    return NetworkChoice(r.interface, f"{r.node_ip}/32" if r.node_ip else None, "ray")


@dataclass(frozen=True)
class WatchdogSpec:
    """The stall watchdog on node 0 (the profile's `watchdog` section; cluster/launcher/watchdog.py)."""

    stall_s: float | None = None  # no metric line, checkpoint or driver output this long = a stall; None: off
    on_stall: str = "fail"  # fail: end the job "stalled N s after rollout R"; requeue: scontrol requeue it
    dump_timeout_s: float = 60.0  # how long node 0 waits for every node's Python stacks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LaunchSpec:
    """Everything one node's launcher needs; written to JSON by the plan, read by each task."""

    chain_dir: str  # the chain's log dir on the shared FS (logs and rendezvous)
    nodes: int
    gpus_per_node: int
    expected_gpus: int  # what slime asks Ray for; checked against the live cluster
    entrypoint: list[str]  # argv of the Ray job, e.g. ["python3", "train.py", *slime_args]
    stage: str = "train"
    working_dir: str | None = None  # cwd of the entrypoint (the slime checkout)
    env_vars: dict[str, str] = field(default_factory=dict)  # runtime env; never secrets
    resume: dict[str, str] = field(default_factory=dict)  # load_ckpt / save_dir / ref_load (cluster.launcher.resume)
    preflight: dict[str, Any] | None = None  # cluster.doctor.DoctorSpec, run on every node before Ray
    ray: RaySpec = field(default_factory=RaySpec)
    # Runs allowed after the first (slurm.max_restarts); a run whose SLURM_RESTART_COUNT is above
    # it stops at once, also after requeues no signal handler saw (scontrol requeue, NODE_FAIL).
    max_restarts: int | None = None
    watchdog: WatchdogSpec = field(default_factory=WatchdogSpec)
    network: NetworkSpec = field(default_factory=NetworkSpec)
    # slurm.max_excluded_nodes: nodes the launcher may leave out of this job's requeues, in all
    # (cluster/launcher/quarantine.py); 0: never
    max_excluded_nodes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "launch spec") -> LaunchSpec:
        values = _parse_fields(cls, data, where, prefix="")
        ray_data = data.get("ray", {})
        if not isinstance(ray_data, Mapping):
            raise ConfigError(f"{where}: ray must be an object, got {type(ray_data).__name__}")
        values["ray"] = RaySpec(**_parse_fields(RaySpec, ray_data, where, prefix="ray."))
        watchdog_data = data.get("watchdog", {})
        if not isinstance(watchdog_data, Mapping):
            raise ConfigError(f"{where}: watchdog must be an object, got {type(watchdog_data).__name__}")
        values["watchdog"] = WatchdogSpec(**_parse_fields(WatchdogSpec, watchdog_data, where, prefix="watchdog."))
        network_data = data.get("network", {})
        if not isinstance(network_data, Mapping):
            raise ConfigError(f"{where}: network must be an object, got {type(network_data).__name__}")
        values["network"] = NetworkSpec(**_parse_fields(NetworkSpec, network_data, where, prefix="network."))
        spec = cls(**values)
        check_spec(spec, where)
        return spec


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a spec dataclass (resolving them compiles each one: once per class)."""
    return typing.get_type_hints(cls)


def _parse_fields(cls: type, data: Mapping[str, Any], where: str, prefix: str) -> dict[str, Any]:
    hints = _type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f"; known: {', '.join(names)}"
            raise ConfigError(f"{where}: unknown key {prefix}{key}{hint}")
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in ("ray", "watchdog", "network") and cls is LaunchSpec:
            continue
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{where}: missing required key {prefix}{f.name}")
            continue
        out[f.name] = _check_type(data[f.name], hints[f.name], f"{where}: {prefix}{f.name}")
    return out


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _check_type(value, next(a for a in args if a is not type(None)), where)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        return list(value)
    if origin is dict:
        any_value = args[1:] == (Any,)
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and (any_value or isinstance(v, str)) for k, v in value.items()
        ):
            raise ConfigError(f"{where} must map strings to {'values' if any_value else 'strings'}, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (isinstance(value, bool) and hint is not bool):
        raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def check_spec(spec: LaunchSpec, where: str = "launch spec") -> None:
    """Value checks that types alone cannot express. Raises ConfigError."""
    for name in ("nodes", "gpus_per_node", "expected_gpus"):
        if getattr(spec, name) < 1:
            raise ConfigError(f"{where}: {name} must be at least 1, got {getattr(spec, name)}")
    if not spec.entrypoint:
        raise ConfigError(f"{where}: entrypoint is empty; give the argv of the Ray job")
    if not spec.chain_dir or not spec.stage or "/" in spec.stage:
        raise ConfigError(f"{where}: chain_dir and stage must be set (stage without '/')")
    for key in spec.env_vars:
        if is_secret_name(key):
            raise ConfigError(
                f"{where}: env_vars.{key} looks like a secret; runtime env vars end up in Ray's job "
                f"table. Export {key} in the job's environment instead: it reaches the driver "
                f"through `ray start`")
    if spec.max_restarts is not None and spec.max_restarts < 0:
        raise ConfigError(f"{where}: max_restarts must not be negative, got {spec.max_restarts}")
    if spec.max_excluded_nodes < 0:
        raise ConfigError(f"{where}: max_excluded_nodes must not be negative, got {spec.max_excluded_nodes}")
    if spec.ray.auth not in ("token", "disabled"):
        raise ConfigError(f"{where}: ray.auth {spec.ray.auth!r} must be token (a fresh token per job, "
                          f"the default) or disabled")
    for key in spec.ray.health_check:
        if not key.startswith("RAY_"):
            raise ConfigError(f"{where}: ray.health_check.{key} is not a RAY_* setting")
        if key.startswith("RAY_AUTH_"):
            raise ConfigError(f"{where}: ray.health_check.{key}: Ray's auth mode and token are the "
                              f"launcher's (ray.auth: token | disabled)")
    r = spec.ray
    if r.num_cpus is not None and r.num_cpus < spec.gpus_per_node:
        raise ConfigError(
            f"{where}: ray.num_cpus {r.num_cpus} < gpus_per_node {spec.gpus_per_node}; slime's "
            f"{{GPU: 1, CPU: 1}} placement group would never be ready. Raise ray.num_cpus")
    if r.object_store_memory is not None and r.object_store_memory < 78 * 1024 * 1024:
        raise ConfigError(f"{where}: ray.object_store_memory must be at least 78 MiB (Ray's minimum)")
    for name in ("ready_timeout_s", "head_timeout_s", "heartbeat_timeout_s", "head_lost_s", "stop_grace_s"):
        if getattr(r, name) <= 0:
            raise ConfigError(f"{where}: ray.{name} must be positive")
    check_port_base(r.port_base)
    check_network(spec, where)
    w = spec.watchdog
    if w.stall_s is not None and w.stall_s <= 0:
        raise ConfigError(f"{where}: watchdog.stall_s must be positive (seconds without progress), or null for off")
    if w.on_stall not in ("fail", "requeue"):
        raise ConfigError(f"{where}: watchdog.on_stall {w.on_stall!r} must be fail (end the job) or requeue")
    if w.dump_timeout_s <= 0:
        raise ConfigError(f"{where}: watchdog.dump_timeout_s must be positive")


def check_network(spec: LaunchSpec, where: str) -> None:
    n, r = spec.network, spec.ray
    if (n.interface or n.cidr) and (r.interface or r.node_ip):
        raise ConfigError(f"{where}: ray.{'interface' if r.interface else 'node_ip'} and network.* are both set; "
                          f"ray.interface and ray.node_ip are deprecated: keep network.interface or network.cidr only")
    if r.node_ip is not None:
        try:
            ipaddress.IPv4Address(r.node_ip)
        except ValueError:
            raise ConfigError(f"{where}: ray.node_ip {r.node_ip!r} is not an IPv4 address (deprecated: use "
                              f"network.cidr, e.g. 10.0.0.0/24)") from None
    for key in spec.env_vars:
        if key in NETWORK_ENV:
            raise ConfigError(f"{where}: env_vars.{key} is set per node by the launcher from network.interface / "
                              f"network.cidr (a job-wide value would override it on every node); drop it")
    problem = check_choice(network_choice(spec))
    if problem:
        raise ConfigError(f"{where}: {problem}")


def load_spec(path: str) -> LaunchSpec:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the launch spec ({err.strerror})") from None
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the launch spec must be a JSON object")
    return LaunchSpec.from_dict(data, where=path)


@dataclass(frozen=True)
class SlurmIdentity:
    """Who this task is, from Slurm's environment."""

    job_id: str
    node_id: int
    num_nodes: int
    hosts: tuple[str, ...]  # SLURM_JOB_NODELIST expanded; hosts[0] runs the head
    restart: int
    host: str  # this node's Slurm name

    @property
    def is_head(self) -> bool:
        return self.node_id == 0


def parse_slurm_identity(env: Mapping[str, str]) -> SlurmIdentity:
    missing = [k for k in ("SLURM_JOB_ID", "SLURM_NODEID", "SLURM_JOB_NODELIST") if k not in env]
    if missing:
        raise ConfigError(
            f"not inside a Slurm job step: {', '.join(missing)} unset. Run this with srun (one "
            f"task per node) or through submitit")
    try:
        job_id = int(env["SLURM_JOB_ID"])
        node_id = int(env["SLURM_NODEID"])
        proc_id = int(env.get("SLURM_PROCID", env["SLURM_NODEID"]))
        restart = int(env.get("SLURM_RESTART_COUNT") or 0)
        hosts = tuple(expand_nodelist(env["SLURM_JOB_NODELIST"]))
        num_nodes = int(env.get("SLURM_JOB_NUM_NODES") or len(hosts))
    except ValueError as err:
        raise ConfigError(f"malformed Slurm environment: {err}") from None
    if proc_id != node_id:
        raise ConfigError(
            f"task {proc_id} runs on node {node_id}: the launcher needs exactly one task per node "
            f"(srun --ntasks-per-node=1)")
    if len(hosts) != num_nodes or not 0 <= node_id < num_nodes:
        raise ConfigError(
            f"Slurm environment disagrees: SLURM_JOB_NUM_NODES={num_nodes}, node list {hosts}, "
            f"SLURM_NODEID={node_id}")
    host = env.get("SLURMD_NODENAME") or hosts[node_id]
    return SlurmIdentity(str(job_id), node_id, num_nodes, hosts, restart, host)

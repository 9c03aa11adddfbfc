"""Ray head on node 0, workers on the others: bring-up, GPU check, the job, fail-fast, teardown.

Every wait polls a condition with a deadline and fails at once when a `ray start --block` child
exits, a node turns DEAD or another node's launcher fails or falls silent.
"""
from __future__ import annotations

import os
import resource
import shutil
import socket
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from cluster.launcher import api as ray_api
from cluster.launcher import auth
from cluster.errors import EXIT_INFRA, EXIT_OK, ConfigError, HoldemClusterError, Interrupted, NodeFault, RayStartError
from cluster.launcher.job import check_no_secret_values, run_job
from cluster.launcher.procs import find_tree, rss_bytes, start_owned, stop_owned
from cluster.launcher.ray_logs import copy_tails, strip_ansi
from cluster.launcher.readiness import check_cluster, describe_gpus
from cluster.launcher.render import (
    DEFAULT_EPHEMERAL, WORKER_PORT_OFFSET, RayPorts, count_visible_devices, parse_port_range,
    parse_reserved_ports, render_band_order, render_block_size, render_port_bands, render_ports_at,
    render_start_argv, render_start_env, render_temp_dir, worker_ports_needed,
)
from cluster.launcher.rendezvous import (
    Heartbeat, HeartbeatWatch, NodeLog, RendezvousPaths, read_json, write_json_atomic,
)

from cluster.launcher import claims, quarantine
from cluster.launcher.context import Node
from cluster.launcher.network import (
    choose_address, describe_addresses, interface_of, local_ipv4_addresses, render_network_env,
)
from cluster.launcher.spec import LaunchSpec, SlurmIdentity, network_choice
from cluster.launcher.watchdog import answer_stack_request

T = TypeVar("T")
POLL_S = 0.1


def run_ray_node(spec: LaunchSpec, ident: SlurmIdentity, env: Mapping[str, str], t0: float) -> int:
    paths = RendezvousPaths.of(spec.chain_dir, spec.stage, ident.job_id, ident.restart)
    temp_dir = render_temp_dir(spec.ray.temp_root, int(ident.job_id), ident.node_id, ident.restart)
    try:
        paths.rdv_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {paths.rdv_dir}: {err.strerror}. Check chain_dir") from None
    log = NodeLog(paths.node_log(ident.node_id, ident.host), t0)
    node = Node(spec, ident, env, paths, log,
                Heartbeat(paths.heartbeat(ident.node_id), ident.node_id, ident.host),
                tag=f"{ident.job_id}-{ident.node_id}-{ident.restart}", temp_dir=temp_dir)
    log.mark(f"=== job {ident.job_id} restart {ident.restart}: node {ident.node_id}/"
             f"{ident.num_nodes} on {ident.host}, {'head' if ident.is_head else 'worker'}")
    # Whatever ends this node (even KeyboardInterrupt or a bug), node 0's done marker must not
    # claim success unless the job really succeeded.
    code, message = EXIT_INFRA, f"{node.what}: launcher on {ident.host} stopped unexpectedly"
    final = "failed"
    left_out: quarantine.Decision | None = None  # a blamed node to leave out of the requeued job
    try:
        node.beat.beat("starting")
        check_restart_limit(node)
        log.mark(raise_nofile())
        if spec.preflight is not None:
            _preflight(node)
        if ident.is_head:
            _run_head(node)
        else:
            _run_worker(node)
        code, message, final = EXIT_OK, "ok", "succeeded"
        log.mark("finished ok")
    except HoldemClusterError as err:
        code, message = err.exit_code, strip_ansi(auth.redact(str(err), node.token))
        final = getattr(err, "final_state", "interrupted" if isinstance(err, Interrupted) else "failed")
        left_out = quarantine.plan(node, err)
        if left_out is not None:
            message = f"{message}; {left_out.summary}"
        log.mark(f"error: {message}")
        node.beat.beat("failed", message=message.splitlines()[0], **quarantine.heartbeat_fields(node, err))
    except Exception as err:  # a bug, not a cluster state: still tear down and say where
        message = strip_ansi(f"{message}: {type(err).__name__}: {err} (traceback in {log.path})")
        log.mark(f"error: {message}\n{traceback.format_exc()}")
        node.beat.beat("failed", message=message)
    finally:
        # Workers leave on this marker; it must exist whatever happened here, before our own
        # (slower) teardown, so that they stop in parallel with us.
        if ident.is_head:
            write_json_atomic(paths.done, {"exit_code": code, "state": final, "message": message,
                                           "restart": ident.restart, "time": time.time()})
        _teardown(node, ok=code == 0)
        if left_out is not None and left_out.requeue:  # after teardown: Slurm stops the job at once
            log.mark(quarantine.apply(node, left_out))
    if code:
        sys.stderr.write(f"error: {message}\n")
    return code


def _preflight(node: Node) -> None:
    """cluster.doctor on this node before Ray starts: fail in seconds, not minutes into training."""
    from cluster.launcher.preflight import DoctorSpec, raise_on_blocking, run_doctor

    findings = run_doctor(DoctorSpec.from_dict(node.spec.preflight))
    try:
        raise_on_blocking(findings, where=f"{node.what}: preflight")
    except ConfigError as err:  # a failed GPU check is this node's fault (quarantine)
        raise quarantine.preflight_fault(node, findings, err) from None
    node.log.mark("preflight ok (cluster.doctor)")


def _teardown(node: Node, ok: bool) -> None:
    if node.proc is not None:
        rep = stop_owned(node.proc, node.tag, node.spec.ray.stop_grace_s)
        extra = f", {rep.killed} needed SIGKILL" if rep.killed else ""
        node.log.mark(f"ray stopped in {rep.seconds:.1f}s{extra}")
    if node.driver_follower is not None:
        # The driver's last words (often why it stopped) are written while Ray shuts down.
        node.driver_follower.pump()
    if node.beat.state != "failed":
        node.beat.beat("stopped")
    if node.temp_claimed and (not ok or node.run_failed):
        dest = node.paths.ray_logs(node.ident.node_id, node.ident.host)
        try:
            copied = copy_tails(node.temp_dir, dest, node.token)
            node.log.mark(f"tails of {len(copied)} Ray session logs copied to {dest}" if copied
                          else f"no Ray session logs in {node.temp_dir}")
        except OSError as err:
            node.log.mark(f"copying Ray's session logs to {dest} failed ({err}); keeping {node.temp_dir}")
            _release_claim(node)
            return _remove_token(node)
    if node.temp_claimed:
        shutil.rmtree(node.temp_dir, ignore_errors=True)
    _release_claim(node)
    _remove_token(node)


def _release_claim(node: Node) -> None:
    """The port band is free again (also when the temp dir is kept: the record would get it removed)."""
    if node.claim is not None:
        node.claim.release()
        node.claim = None


def _remove_token(node: Node) -> None:
    # Node 0 owns the token; a worker removes it only once node 0 is finished or gone.
    if node.spec.ray.auth == "token" and (node.ident.is_head or node.head_gone or node.paths.done.exists()):
        if auth.remove_token(node.token_file):
            node.log.mark("Ray auth token deleted")


class RestartLimit(HoldemClusterError):
    """This run is a requeue beyond slurm.max_restarts (one no signal handler saw: `scontrol
    requeue`, NODE_FAIL); it stops before starting anything."""

    exit_code = EXIT_INFRA
    final_state = "restart-limit"


def check_restart_limit(node: Node) -> None:
    cap, restart = node.spec.max_restarts, node.ident.restart
    if cap is not None and restart > cap:
        raise RestartLimit(
            f"{node.what}: restart {restart} exceeds slurm.max_restarts = {cap}; not running again "
            f"(Slurm requeued the job {restart} times, e.g. scontrol requeue or a node failure). "
            f"Resubmit the chain to continue from the newest checkpoint")


def raise_nofile() -> str:
    """Soft open-files limit up to the hard one (Ray opens many sockets and files per worker)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        return f"open files limit: soft {soft} = hard {hard}"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as err:
        return f"open files limit: soft {soft}, hard {hard}; raising the soft limit failed ({err})"
    return f"open files limit: soft {soft} raised to hard {hard}"


def poll(check: Callable[[], T | None], timeout_s: float, what: str,
         guard: Callable[[], None], explain: Callable[[], str] = lambda: "") -> T:
    """Call check every POLL_S until it returns non-None; guard raises on a fatal condition."""
    deadline = time.monotonic() + timeout_s
    while True:
        guard()
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise RayStartError(f"{what} not reached within the {timeout_s:g} s deadline{explain()}")
        time.sleep(POLL_S)


# --- node setup -------------------------------------------------------------------------------

def resolve_node_address(node: Node) -> tuple[str, str | None]:
    """This node's (address, NIC) from the one network setting (network.interface / network.cidr,
    or the deprecated ray.interface / ray.node_ip), else from what its hostname resolves to. A
    setting that matches nothing here fails with one line naming the node and its addresses."""
    choice, host = network_choice(node.spec), node.ident.host
    addrs = local_ipv4_addresses()
    if choice.is_set:
        try:
            found = choose_address(addrs, choice)
        except ValueError as err:
            raise ConfigError(f"{node.what}: node {node.ident.node_id} ({host}): {err}") from None
        if found is None:
            raise ConfigError(
                f"{node.what}: node {node.ident.node_id} ({host}): {choice.describe()} matches none of its "
                f"interfaces: {describe_addresses(addrs)}. Set network.interface or network.cidr to the network "
                f"the nodes share")
        node.log.mark(f"network: {found[1]} on {found[0]} ({choice.describe()}; this node has "
                      f"{describe_addresses(addrs)})")
        return found[1], found[0]
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError as err:
        raise ConfigError(
            f"{host}: hostname {socket.gethostname()} does not resolve ({err}). Set network.interface "
            f"or network.cidr in the profile (this node has {describe_addresses(addrs)})") from None
    if ip.startswith("127."):
        raise ConfigError(
            f"{host}: hostname {socket.gethostname()} resolves to loopback {ip}; other nodes could not "
            f"reach Ray here. Set network.interface (e.g. ib0) or network.cidr (this node has "
            f"{describe_addresses(addrs)})")
    nic = interface_of(addrs, ip)
    node.log.mark(f"network: {ip}{f' on {nic}' if nic else ''} (the hostname's address; no network.* set)")
    return ip, nic


def check_reaches_head(node: Node, gcs_address: str, ip: str, guard: Callable[[], None],
                       timeout_s: float = 15.0) -> None:
    """Before `ray start`: a TCP connection from this node's address to the head's GCS port, so
    a wrong network choice names the node that cannot reach the head instead of timing out."""
    host, _, port = gcs_address.rpartition(":")
    last: list[str] = [""]

    def connect() -> bool | None:
        try:
            with socket.create_connection((host, int(port)), timeout=2.0, source_address=(ip, 0)):
                return True
        except OSError as err:
            last[0] = str(err)
            return None

    try:
        poll(connect, timeout_s, "", guard)
    except RayStartError:
        raise RayStartError(
            f"{node.what}: node {node.ident.node_id} ({node.ident.host}) cannot reach the Ray head's GCS at "
            f"{gcs_address} from its address {ip} ({last[0]}). Set network.interface or network.cidr to the "
            f"network the nodes share (its addresses: {describe_addresses(local_ipv4_addresses())}; "
            f"log: {node.log.path})") from None
    node.log.mark(f"head GCS {gcs_address} reachable from {ip}")


def _busy_ports(ports: RayPorts) -> list[int]:
    busy = []
    for port in ports.all_ports():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # SO_REUSEADDR ignores TIME_WAIT leftovers; only a live listener makes bind fail.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("", port))
            except OSError:
                busy.append(port)
    return busy


def read_kernel_ports(root: str = "/proc/sys/net/ipv4") -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """This node's ephemeral port range and reserved ports (Linux defaults when unreadable)."""
    try:
        ephemeral = parse_port_range(Path(root, "ip_local_port_range").read_text())
    except (OSError, ValueError):
        ephemeral = DEFAULT_EPHEMERAL
    try:
        reserved = parse_reserved_ports(Path(root, "ip_local_reserved_ports").read_text())
    except (OSError, ValueError):
        reserved = []
    return ephemeral, reserved


def allocation_cpus(env: Mapping[str, str]) -> tuple[int, str]:
    """CPUs this task may use: its affinity mask (cgroup/cpuset, srun binding) and Slurm's
    SLURM_CPUS_ON_NODE, whichever is smaller — never os.cpu_count(), the whole machine's."""
    found = []
    try:
        found.append((len(os.sched_getaffinity(0)), "CPU affinity"))
    except (AttributeError, OSError):
        pass
    value = env.get("SLURM_CPUS_ON_NODE", "")
    if value.isdigit() and int(value) > 0:
        found.append((int(value), "SLURM_CPUS_ON_NODE"))
    if not found:
        return os.cpu_count() or 1, "os.cpu_count()"
    return min(found)


def node_cpus(node: Node) -> tuple[int, str]:
    """Ray's --num-cpus: ray.num_cpus, else the allocation's CPUs (at least one per GPU: slime's
    {GPU: 1, CPU: 1} bundles would never be placed otherwise)."""
    r, g = node.spec.ray, node.spec.gpus_per_node
    if r.num_cpus is not None:
        return r.num_cpus, "ray.num_cpus"
    n, source = allocation_cpus(node.env)
    if n < g:
        return g, f"{source} = {n}, raised to the {g} GPUs"
    return n, source


def pick_ports(node: Node) -> RayPorts:
    """The job's own band, or the next one whose ports are all free on this node. Bands are sized
    for this node's CPUs and placed outside the kernel's ephemeral range and reserved ports; the
    node's port map is written to the run's log dir."""
    r, ident = node.spec.ray, node.ident
    cpus, _ = node_cpus(node)
    block = render_block_size(cpus)
    ephemeral, reserved = read_kernel_ports()
    starts = render_port_bands(r.port_base, block, ephemeral, reserved)
    if not starts:
        raise RayStartError(
            f"{node.what}: no block of {block} ports ({worker_ports_needed(cpus)} worker ports for "
            f"{cpus} CPUs + {WORKER_PORT_OFFSET} fixed) fits on {ident.host} at or above ray.port_base "
            f"{r.port_base} outside the ephemeral range {ephemeral[0]}-{ephemeral[1]} (ip_local_port_range)"
            + (f" and the reserved ports {reserved}" if reserved else "")
            + f". Set ray.port_base below {ephemeral[0] - block} (or lower ray.num_cpus)")
    order = render_band_order(int(ident.job_id), ident.restart, len(starts))
    bands = [render_ports_at(starts[i], block, i) for i in order]
    choice = claims.claim_band(r.temp_root, ident.host, node.tag, [(b.gcs, b.max_worker) for b in bands],
                               lambda k: _busy_ports(bands[k]))
    for line in filter(None, [choice.note, *choice.swept]):
        node.log.mark(line)
    if choice.index is None:
        raise RayStartError(f"{node.what}: no free block of {block} Ray ports on {ident.host} above "
                            f"{r.port_base}: every one of the {len(starts)} bands has a listener or is "
                            f"held by another job's launcher ({'; '.join(choice.skipped[:3])})")
    ports, node.claim = bands[choice.index], choice.claim
    if choice.skipped:
        node.log.mark(f"passed over on {ident.host}: {'; '.join(choice.skipped)}; using band {ports.slot}")
    write_json_atomic(node.paths.log_dir / f"ports-node-{ident.node_id}-{ident.host}.json", {
        "host": ident.host, "band": ports.slot, "block": block, "cpus": cpus,
        "ephemeral_range": list(ephemeral), "reserved_ports": [list(x) for x in reserved],
        "ports": {k: v for k, v in asdict(ports).items() if k != "slot"}, "time": time.time()})
    return ports


def check_gpus_here(node: Node) -> int:
    """--num-gpus from the allocation; it must agree with CUDA_VISIBLE_DEVICES, which overrides it."""
    g = node.spec.gpus_per_node
    cvd = node.env.get("CUDA_VISIBLE_DEVICES")
    seen = count_visible_devices(cvd)
    if seen is not None and seen != g:
        raise RayStartError(
            f"{node.what}: {node.ident.host} has CUDA_VISIBLE_DEVICES={cvd!r} ({seen} GPUs) but "
            f"the profile asks for {g} GPUs per node. Request --gres=gpu:{g} (or fix "
            f"topology.gpus_per_node)")
    return g


def claim_temp_dir(node: Node) -> None:
    """Create this node's Ray temp dir, never one that already exists: two raylets sharing one
    crash, and a kept one holds a failed run's logs (job ids repeat after a Slurm state wipe, or
    across two Slurm clusters sharing a host)."""
    for suffix in ("", *(f"-{i}" for i in range(1, 10))):
        try:
            os.mkdir(node.temp_dir + suffix, 0o700)
        except FileExistsError:
            continue
        except OSError as err:
            raise ConfigError(f"cannot create Ray temp dir {node.temp_dir + suffix}: "
                                    f"{err.strerror}. Set ray.temp_root") from None
        node.temp_dir, node.temp_claimed = node.temp_dir + suffix, True
        if node.claim is not None:  # so the dir is removed even if this launcher is SIGKILLed
            node.claim.note_temp_dir(node.temp_dir)
        return
    raise RayStartError(f"{node.what}: {node.temp_dir} and 9 suffixed variants exist on "
                        f"{node.ident.host}; remove the stale ones")


def start_ray(node: Node, ports: RayPorts, head_address: str | None, ip: str,
              interface: str | None = None, head_ip: str | None = None) -> None:
    r, g = node.spec.ray, check_gpus_here(node)
    claim_temp_dir(node)
    cpus, source = node_cpus(node)
    node.log.mark(f"{cpus} CPUs for Ray ({source}); worker ports {ports.min_worker}-{ports.max_worker}")
    argv = render_start_argv(
        head_address=head_address, node_ip=ip, node_name=node.ident.host, ports=ports,
        num_gpus=g, num_cpus=cpus, object_store_memory=r.object_store_memory, temp_dir=node.temp_dir)
    env = render_start_env(node.env, ports, r.health_check, node.tag,
                           auth=auth.render_auth_env(r.auth, node.token_file))
    net = render_network_env(ip, interface, head_ip or ip)
    if not network_choice(node.spec).is_set:  # nothing chosen: a NIC the user exported stays theirs
        net = {k: v for k, v in net.items() if not (k.endswith("_SOCKET_IFNAME") and k in node.env)}
    env.update(net)
    node.log.mark("network env: " + " ".join(f"{k}={v}" for k, v in sorted(net.items())))
    node.log.mark(f"ray start on {ip} ({g} GPUs, {cpus} CPUs, ports {ports.gcs}..{ports.max_worker}, "
                  f"temp {node.temp_dir})")
    node.proc = start_owned(argv, env, node.log.path)
    node.beat.beat("ray started", ports_slot=ports.slot, ray_pid=node.proc.pid, ip=ip)


# --- head -------------------------------------------------------------------------------------

def _run_head(node: Node) -> None:
    ident, r = node.ident, node.spec.ray
    check_no_secret_values(node)
    if ident.num_nodes != node.spec.nodes:
        raise RayStartError(f"{node.what}: the allocation has {ident.num_nodes} nodes "
                            f"({','.join(ident.hosts)}) but the spec asks for {node.spec.nodes}")
    ip, nic = resolve_node_address(node)
    ports = pick_ports(node)
    base = f"http://{ip}:{ports.dashboard}"
    workers = HeartbeatWatch({i: node.paths.heartbeat(i) for i in range(1, ident.num_nodes)},
                             r.heartbeat_timeout_s)

    def guard() -> None:
        node.guard_child()
        node.beat.beat()
        lost = workers.check()
        if lost:
            i, why = lost
            raise quarantine.peer_failure(node, i, f"{node.what}: node {i} ({ident.hosts[i]}) failed: {why} "
                                                   f"(log: {node.log_of(i)})")

    if r.auth == "token":
        node.token = auth.create_token(node.token_file)
        node.log.mark(f"Ray token auth on: a fresh token for this run in {node.token_file} (mode 600)")
    else:
        node.log.mark("Ray token auth disabled (ray.auth: disabled): anyone who reaches the dashboard "
                      "port can run code as this job's user")
    start_ray(node, ports, None, ip, nic, ip)
    poll(lambda: _api_up(base, node.token), r.head_timeout_s, f"{node.what}: Ray head API at {base}", guard)
    node.log.mark(f"head API up at {base}")
    poll(lambda: _head_alive(base, node.token), r.head_timeout_s, f"{node.what}: head node ALIVE", guard)
    write_json_atomic(node.paths.head, {
        "gcs_address": f"{ip}:{ports.gcs}", "dashboard_url": base, "host": ident.host, "ip": ip,
        "job_id": ident.job_id, "restart": ident.restart, "ports_slot": ports.slot,
        "time": time.time()})
    node.log.mark(f"head up at {ident.host}:{ports.gcs} (head.json written)")
    nodes = _wait_ready(node, base, guard)
    write_json_atomic(node.paths.ready, {"time": time.time(), "elapsed_s": node.log.elapsed(),
                                         "gpus": sum(n.gpus for n in nodes)})
    rss = rss_bytes(find_tree(node.proc.pid if node.proc else None, node.tag))
    node.log.mark(f"cluster ready: {len(nodes)} nodes, {describe_gpus(nodes)}; head's Ray "
                  f"processes {rss / 2**20:.0f} MiB RSS")
    run_job(node, base, guard)


def _api_up(base: str, token: str | None) -> bool | None:
    try:
        ray_api.get_version(base, token=token)
        return True
    except ray_api.ApiUnavailable:
        return None


def _head_alive(base: str, token: str | None) -> bool | None:
    try:
        return True if any(n.is_head and n.state == "ALIVE" for n in ray_api.list_nodes(base, token=token)) else None
    except ray_api.ApiUnavailable:
        return None


def _wait_ready(node: Node, base: str, guard: Callable[[], None]) -> list[ray_api.NodeInfo]:
    spec, ident = node.spec, node.ident
    last: list[list[ray_api.NodeInfo]] = [[]]

    def check() -> list[ray_api.NodeInfo] | None:
        try:
            last[0] = ray_api.list_nodes(base, token=node.token)
        except ray_api.ApiUnavailable:
            return None
        verdict = check_cluster(last[0], ident.hosts, spec.gpus_per_node, spec.expected_gpus)
        if verdict.problem and verdict.node:  # a DEAD node, a wrong GPU count: that node's fault
            raise NodeFault(f"{node.what}: {verdict.problem}{_log_hint(node, verdict.node)}", host=verdict.node,
                            why=f"at bring-up: {verdict.problem}")
        if verdict.problem:
            raise RayStartError(f"{node.what}: {verdict.problem}{_log_hint(node, verdict.node)}")
        return last[0] if verdict.ready else None

    def explain() -> str:
        alive = {n.name for n in last[0] if n.state == "ALIVE"}
        missing = [h for h in ident.hosts if h not in alive]
        states = HeartbeatWatch({i: node.paths.heartbeat(i) for i in range(ident.num_nodes)}, 1).states()
        return (f"; {len(alive)}/{ident.num_nodes} Ray nodes joined, missing: "
                + ", ".join(f"{h} (launcher: {states[ident.hosts.index(h)]}, log: "
                            f"{node.log_of(ident.hosts.index(h))})" for h in missing))

    return poll(check, spec.ray.ready_timeout_s, f"{node.what}: all {ident.num_nodes} nodes ready",
                guard, explain)


def _log_hint(node: Node, host: str | None) -> str:
    if host in node.ident.hosts:
        return f" (log: {node.log_of(node.ident.hosts.index(host))})"
    return ""


# --- worker -----------------------------------------------------------------------------------

def _run_worker(node: Node) -> None:
    ident, r, paths = node.ident, node.spec.ray, node.paths
    head_watch = HeartbeatWatch({0: paths.heartbeat(0)}, r.heartbeat_timeout_s)

    def guard() -> None:
        answer_stack_request(node)  # the watchdog on node 0 asked for this node's Python stacks
        node.guard_child()
        node.beat.beat()
        lost = head_watch.check()
        if lost and not paths.done.exists():
            node.head_gone = True
            raise quarantine.peer_failure(node, 0, f"{node.what}: head node {ident.hosts[0]} failed: {lost[1]} "
                                                   f"(log: {node.log_of(0)})")

    def head_or_done() -> dict | None:
        done = read_json(paths.done)
        if done is not None:
            raise _HeadFinished(done)
        return read_json(paths.head)

    check_gpus_here(node)  # before waiting, so a bad allocation is reported at once
    ip, nic = resolve_node_address(node)
    try:
        head = poll(head_or_done, r.head_timeout_s, f"{node.what}: head.json from "
                    f"{ident.hosts[0]} ({paths.head})", guard)
        node.log.mark(f"head is {head['gcs_address']}")
        if r.auth == "token":
            node.token = auth.read_token(node.token_file)
        check_reaches_head(node, head["gcs_address"], ip, guard)
        start_ray(node, pick_ports(node), head["gcs_address"], ip, nic,
                  head.get("ip") or head["gcs_address"].rpartition(":")[0])
        _wait_until_done(node, head["dashboard_url"], guard)
    except _HeadFinished as fin:
        node.log.mark(f"leaving: node 0 finished (exit {fin.done.get('exit_code')})")
        node.run_failed = fin.done.get("exit_code") != 0  # keep this node's Ray log tails too


class _HeadFinished(Exception):
    def __init__(self, done: dict) -> None:
        super().__init__("head finished")
        self.done = done


def _wait_until_done(node: Node, base: str, guard: Callable[[], None]) -> None:
    """Stay until node 0's done marker; leave with an error if the head disappears."""
    paths, lost_s, ident = node.paths, node.spec.ray.head_lost_s, node.ident
    last_ok, next_probe = time.monotonic(), 0.0
    while True:
        done = read_json(paths.done)
        if done is not None:
            raise _HeadFinished(done)
        if node.proc is not None and node.proc.poll() is not None:
            if paths.done.exists():
                raise _HeadFinished(read_json(paths.done) or {})
            if not _api_up(base, node.token):  # a raylet exits once the GCS is gone: name the cause
                node.head_gone = True
                raise NodeFault(
                    f"{node.what}: lost the head {ident.hosts[0]}: its API at {base} does not "
                    f"answer and the Ray worker on {ident.host} exited with code "
                    f"{node.proc.returncode} (head log: {node.log_of(0)}; this node: {node.log.path})",
                    host=ident.hosts[0], why="lost mid-run: the head's API went away")
        guard()
        now = time.monotonic()
        if now >= next_probe:
            next_probe = now + 1.0
            if _api_up(base, node.token):
                last_ok = now
            elif now - last_ok > lost_s:
                node.head_gone = True
                raise NodeFault(f"{node.what}: head {node.ident.hosts[0]} unreachable at {base} "
                                f"for {lost_s:g} s (log: {node.log_of(0)})", host=node.ident.hosts[0],
                                why=f"lost mid-run: the head's API unreachable for {lost_s:g} s")
        time.sleep(POLL_S)


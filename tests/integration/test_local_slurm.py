"""scripts/local-slurm.sh against the real machine: a multi-node Slurm whose nodes have their own
hostnames, addresses and GPUs, reach each other by name and nothing outside.

The shared session cluster (fixture `local_slurm`) is never stopped here; the up/down cycle tests
run a second, independent instance with its own state dir, names, subnet and ports."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    SCRIPT,
    LocalSlurm,
    load_cluster,
    pid_alive,
    run_script,
    skip_or_fail,
    why_unavailable,
)

# A TCP echo between two nodes of one job: the server binds its node's address and publishes the
# port through the shared filesystem; the client connects by node name.
TCP_PAIR = r'''
import pathlib, socket, sys, time
ready, server_node = pathlib.Path(sys.argv[1]), sys.argv[2]
me = socket.gethostname()
if me == server_node:
    srv = socket.socket()
    srv.bind((socket.gethostbyname(me), 0))
    srv.listen(1)
    srv.settimeout(60)
    tmp = ready.with_name(ready.name + ".tmp")
    tmp.write_text(str(srv.getsockname()[1]))
    tmp.rename(ready)
    conn, peer = srv.accept()
    data = conn.recv(100).decode()
    conn.sendall(f"echo {data} from {me}".encode())
    print(f"server {me} got {data} from {peer[0]}", flush=True)
else:
    deadline = time.monotonic() + 60
    while not ready.exists():
        if time.monotonic() > deadline:
            sys.exit(f"client {me}: no port file {ready} after 60 s")
        time.sleep(0.05)
    with socket.create_connection((server_node, int(ready.read_text())), timeout=10) as conn:
        conn.sendall(me.encode())
        print(f"client {me} got: {conn.recv(100).decode()}", flush=True)
'''

# Connecting off the subnet must fail at once, locally (no default route): nothing leaves.
OFF_SUBNET = r'''
import errno, socket
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("192.0.2.1", 9))
    print("connected")
except OSError as exc:
    print("errno", errno.errorcode.get(exc.errno, exc.errno))
'''

SCRATCH_ENV = {
    "LOCAL_SLURM_STATE_DIR": "/var/lib/holdem-local-slurm-scratch",
    "LOCAL_SLURM_NAME": "hlscratch",
    "LOCAL_SLURM_SUBNET": "10.87.0",
    "LOCAL_SLURM_NODE_PREFIX": "s",
    "LOCAL_SLURM_PORT_BASE": "9817",
    "LOCAL_SLURM_ETC_LINK": "0",
}


def status_pids(text: str) -> dict[str, int]:
    """`name: running (pid N)` lines of `local-slurm.sh status`."""
    pids = {}
    for line in text.splitlines():
        name, _, rest = line.partition(": running (pid ")
        if rest:
            pids[name] = int(rest.rstrip(")"))
    return pids


# ---------------------------------------------------------------- bad usage (no cluster needed)

def test_script_parses_with_bash_n_and_shellcheck() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def test_help_prints_usage() -> None:
    proc = run_script("--help", timeout=10)
    assert proc.returncode == 0 and "up [N]" in proc.stdout and "LOCAL_SLURM_STATE_DIR" in proc.stdout


@pytest.mark.parametrize("args, env, fragment", [
    ([], {}, "missing command"),
    (["start"], {}, "unknown command 'start'"),
    (["up", "0"], {}, "node count '0'"),
    (["up", "two"], {}, "node count 'two'"),
    (["up", "2", "3"], {}, "at most one argument"),
    (["down", "--now"], {}, "down takes only --purge"),
    (["status", "x"], {}, "status takes no arguments"),
    (["up"], {"LOCAL_SLURM_NAME": "Bad-Name"}, "LOCAL_SLURM_NAME=Bad-Name"),
    (["up"], {"LOCAL_SLURM_SUBNET": "10.77"}, "LOCAL_SLURM_SUBNET=10.77"),
    (["up"], {"LOCAL_SLURM_SUBNET2": "10.77.0"}, "LOCAL_SLURM_SUBNET2=10.77.0"),
    (["up"], {"LOCAL_SLURM_PORT_BASE": "80"}, "LOCAL_SLURM_PORT_BASE=80"),
    (["up"], {"LOCAL_SLURM_STATE_DIR": "relative/dir"}, "must be an absolute path"),
    (["up"], {"LOCAL_SLURM_ETC_LINK": "yes"}, "LOCAL_SLURM_ETC_LINK=yes"),
])
def test_bad_usage_is_one_error_line_and_exit_2(args: list[str], env: dict[str, str], fragment: str) -> None:
    proc = run_script(*args, env_extra=env, timeout=10)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], proc.stderr
    assert proc.stdout == ""


# ---------------------------------------------------------------- the shared session cluster

@pytest.mark.integration
def test_two_node_job_sees_own_hostnames_addresses_and_gpus(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    nodes = local_slurm.nodes[:2]
    job = local_slurm.sbatch(
        "-N2", "--ntasks-per-node=1", f"--gres=gpu:{local_slurm.gpus_per_node}", "-w", ",".join(nodes),
        "-o", str(out), "--wrap", """srun sh -c 'echo "$(hostname) $(hostname -I) $CUDA_VISIBLE_DEVICES"'""")
    local_slurm.wait_for_job(job, "COMPLETED", logs=[out])
    rows = sorted(line.split() for line in out.read_text().splitlines())
    assert [r[0] for r in rows] == list(nodes)
    assert [r[1] for r in rows] == list(local_slurm.addrs[:2])  # distinct, one per node (eth0 first)
    assert [len(r) for r in rows] == [4, 4]  # and each node's isolated second address (eth1)
    assert [r[3] for r in rows] == ["0,1,2,3", "0,1,2,3"]
    row = local_slurm.wait_for_accounting(job, "COMPLETED", fields=("AllocTRES", "NodeList"))
    assert f"gres/gpu={2 * local_slurm.gpus_per_node}" in row["AllocTRES"], row


@pytest.mark.integration
def test_job_on_one_node_reaches_a_tcp_server_on_another_by_name(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    script = tmp_path / "tcp_pair.py"
    script.write_text(TCP_PAIR)
    out = tmp_path / "out.txt"
    client, server = local_slurm.nodes[0], local_slurm.nodes[1]
    job = local_slurm.sbatch(
        "-N2", "--ntasks-per-node=1", "-w", f"{client},{server}", "-o", str(out),
        "--wrap", f"srun {sys.executable} {script} {tmp_path / 'port'} {server}")
    local_slurm.wait_for_job(job, "COMPLETED", logs=[out])
    text = out.read_text()
    assert f"client {client} got: echo {client} from {server}" in text, text
    assert f"server {server} got {client} from {local_slurm.addrs[0]}" in text, text


@pytest.mark.integration
def test_node_namespaces_have_no_default_route(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    for ns, addr in zip(local_slurm.netns, local_slurm.addrs):
        routes = subprocess.run(["ip", "-n", ns, "route", "show"], capture_output=True, text=True, check=True).stdout
        assert "default" not in routes and f"src {addr}" in routes, routes
    script = tmp_path / "off_subnet.py"
    script.write_text(OFF_SUBNET)
    out = tmp_path / "out.txt"
    job = local_slurm.sbatch("-N1", "-o", str(out), "--wrap", f"{sys.executable} {script}")
    local_slurm.wait_for_job(job, "COMPLETED", logs=[out])
    assert out.read_text().strip() == "errno ENETUNREACH"


@pytest.mark.integration
def test_clients_work_without_any_environment(local_slurm: LocalSlurm) -> None:
    if local_slurm.state_dir != Path("/var/lib/holdem-local-slurm"):
        pytest.skip("only the default instance links /etc/slurm/slurm.conf")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    sinfo = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %P"], env=env, capture_output=True, text=True)
    assert sinfo.returncode == 0, sinfo.stderr
    assert {line.split()[0] for line in sinfo.stdout.splitlines()} == set(local_slurm.nodes)
    assert {line.split()[1] for line in sinfo.stdout.splitlines()} == {"debug*", "long"}
    sacct = subprocess.run(["sacct", "-n", "-X", "-S", "now-1hours"], env=env, capture_output=True, text=True)
    assert sacct.returncode == 0, sacct.stderr
    assert Path("/etc/slurm/slurm.conf").resolve() == local_slurm.slurm_conf.resolve()


@pytest.mark.integration
def test_unknown_account_is_rejected_and_known_ones_are_recorded(local_slurm: LocalSlurm, tmp_path: Path) -> None:
    bad = local_slurm.run("sbatch", "--account=no-such-account", "--wrap", "true", check=False)
    assert bad.returncode != 0 and "Invalid account" in bad.stderr, bad.stderr
    default = local_slurm.sbatch("-o", str(tmp_path / "a.out"), "--wrap", "true")
    other = local_slurm.sbatch("-p", "long", "--account=other", "-o", str(tmp_path / "b.out"), "--wrap", "true")
    rows = []
    for job in (default, other):
        local_slurm.wait_for_job(job, "COMPLETED")
        row = local_slurm.wait_for_accounting(job, "COMPLETED", fields=("Account", "Partition"))
        rows.append((row["Account"], row["Partition"]))
    assert rows == [("holdem", "debug"), ("other", "long")]


@pytest.mark.integration
def test_status_lists_running_daemons_and_nodes(local_slurm: LocalSlurm) -> None:
    proc = local_slurm.script("status", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "state: up" in proc.stdout
    pids = status_pids(proc.stdout)
    expected = {"munged", "mariadbd", "slurmdbd", "slurmctld", *(f"slurmd-{n}" for n in local_slurm.nodes)}
    assert set(pids) == expected and all(pid_alive(p) for p in pids.values()), proc.stdout
    for node, addr in zip(local_slurm.nodes, local_slurm.addrs):
        assert f"node {node}: {addr} in netns" in proc.stdout


@pytest.mark.integration
def test_up_on_a_running_cluster_is_a_no_op(local_slurm: LocalSlurm) -> None:
    before = status_pids(local_slurm.script("status", timeout=60).stdout)
    proc = local_slurm.script("up", str(len(local_slurm.nodes)))
    assert proc.returncode == 0 and "no-op" in proc.stdout, proc.stdout + proc.stderr
    assert status_pids(local_slurm.script("status", timeout=60).stdout) == before


# ---------------------------------------------------------------- a second instance: up/down cycles

@pytest.fixture(scope="module")
def scratch() -> Iterator[dict[str, str]]:
    """Settings of a private instance; purged at the end."""
    reason = why_unavailable()
    if reason:
        skip_or_fail(reason)
    yield SCRATCH_ENV
    run_script("down", "--purge", env_extra=SCRATCH_ENV)


def scratch_up(env: dict[str, str], nodes: int) -> LocalSlurm:
    proc = run_script("up", str(nodes), env_extra=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return load_cluster(Path(env["LOCAL_SLURM_STATE_DIR"]), env)


@pytest.mark.integration
def test_up_keeps_ip_forward_off_and_links_nothing_in_etc(scratch: dict[str, str]) -> None:
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    before = forward.read_text()
    link_before = os.path.realpath("/etc/slurm/slurm.conf")
    cluster = scratch_up(scratch, 2)
    assert forward.read_text() == before
    assert os.path.realpath("/etc/slurm/slurm.conf") == link_before  # LOCAL_SLURM_ETC_LINK=0
    assert cluster.nodes == ("s1", "s2") and cluster.addrs == ("10.87.0.11", "10.87.0.12")


@pytest.mark.integration
def test_up_adds_a_missing_second_interface_to_a_running_cluster_and_nothing_else(scratch: dict[str, str]) -> None:
    cluster = scratch_up(scratch, 2)
    ns = f"/run/netns/{cluster.netns[1]}"
    subprocess.run(["ip", "-n", cluster.netns[1], "link", "del", "eth1"], check=True)  # as before eth1 existed
    before = status_pids(cluster.script("status", timeout=60).stdout)
    proc = cluster.script("up", "2")
    assert proc.returncode == 0 and "no-op" in proc.stdout, proc.stdout + proc.stderr
    assert f"added isolated interface eth1 10.78.0.12 to {cluster.nodes[1]}" in proc.stdout
    assert status_pids(cluster.script("status", timeout=60).stdout) == before  # no daemon restarted
    addr = subprocess.run(["nsenter", f"--net={ns}", "ip", "-4", "-o", "addr", "show", "eth1"],
                          capture_output=True, text=True, check=True).stdout
    assert " 10.78.0.12/24 " in addr


@pytest.mark.integration
def test_down_with_a_job_running_stops_everything_and_twice_is_fine(scratch: dict[str, str], tmp_path: Path) -> None:
    cluster = scratch_up(scratch, 2)
    # Each task leaves a daemonised child behind (like `ray start` without --block) and sleeps.
    job = cluster.sbatch(
        "-N2", "--ntasks-per-node=1", "-o", str(tmp_path / "job.out"), "--wrap",
        f"""srun sh -c 'setsid sleep 301 & echo "$$ $!" > {tmp_path}/pids.$(hostname); exec sleep 300'""")
    cluster.wait_for_job(job, "RUNNING")
    pid_files = [tmp_path / f"pids.{n}" for n in cluster.nodes]
    deadline_wait(lambda: all(p.exists() and p.read_text().strip() for p in pid_files), 30, "task PID files")
    job_pids = [int(x) for p in pid_files for x in p.read_text().split()]
    daemons = status_pids(cluster.script("status", timeout=60).stdout)
    assert len(daemons) == 6

    down = cluster.script("down")
    assert down.returncode == 0, down.stdout + down.stderr
    alive = [p for p in [*job_pids, *daemons.values()] if pid_alive(p)]
    assert not alive, f"still running after down: {alive}\n{down.stdout}"
    assert not any(Path(f"/run/netns/{ns}").exists() for ns in cluster.netns)
    assert not Path("/sys/class/net/hlscratchbr").exists()
    assert not [p.name for p in Path("/sys/class/net").glob("hlscratch[vw][0-9]*")]  # both veths of each node
    status = cluster.script("status", timeout=60)
    assert status.returncode == 3 and "state: down" in status.stdout, status.stdout

    again = cluster.script("down")
    assert again.returncode == 0, again.stdout + again.stderr

    # From stopped: the accounting survived and recorded the job as cancelled by `down`.
    restarted = scratch_up(scratch, 2)
    restarted.wait_for_accounting(job, "CANCELLED", fields=("End",), timeout=10)
    assert int(restarted.sbatch("-o", "/dev/null", "--wrap", "true")) > int(job)


@pytest.mark.integration
def test_up_with_another_node_count_restarts_with_that_count(scratch: dict[str, str]) -> None:
    scratch_up(scratch, 2)
    proc = run_script("up", "3", env_extra=scratch)
    assert proc.returncode == 0 and "restarting it with 3" in proc.stdout, proc.stdout + proc.stderr
    cluster = load_cluster(Path(scratch["LOCAL_SLURM_STATE_DIR"]), scratch)
    sinfo = cluster.run("sinfo", "-h", "-N", "-p", "debug", "-o", "%N %T").stdout.split("\n")
    assert sorted(line for line in sinfo if line) == ["s1 idle", "s2 idle", "s3 idle"]


def deadline_wait(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(0.05)

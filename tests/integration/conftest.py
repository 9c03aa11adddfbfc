"""The real local Slurm cluster (scripts/local-slurm.sh) as a session fixture, plus job helpers.

`local_slurm` brings the cluster up once per test session (3 nodes; a no-op when it already
runs) and yields a `LocalSlurm` describing it. It tears the cluster down at the end only if a
pytest session started it and no other live pytest session is still using it (several sessions
may share one machine). Where the script cannot run (not root, no Slurm and no apt-get) the
integration tests are skipped — except on CI (`CI` set), where that is a failure.

Clients need no environment: the script links /etc/slurm/slurm.conf to the cluster's config.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local-slurm.sh"
DEFAULT_STATE_DIR = Path("/var/lib/holdem-local-slurm")
SESSION_NODES = 3
UP_TIMEOUT_S = 600  # a fresh machine installs packages first

# Slurm job states after which a job never runs again (without a requeue).
FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED",
})


class JobWaitError(AssertionError):
    """A job did not reach the wanted state before the deadline (or ended in another one)."""


@dataclass(frozen=True)
class LocalSlurm:
    """One running local cluster, as described by its state dir's cluster.env."""

    state_dir: Path
    slurm_conf: Path
    nodes: tuple[str, ...]
    addrs: tuple[str, ...]
    netns: tuple[str, ...]
    controller_addr: str
    partitions: tuple[str, ...]
    default_partition: str
    accounts: tuple[str, ...]
    default_account: str
    gpus_per_node: int
    script_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm clients of this cluster (SLURM_CONF names its config)."""
        return {**os.environ, "SLURM_CONF": str(self.slurm_conf)}

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client (sbatch, squeue, ...) against this cluster."""
        proc = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def script(self, *args: str, timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run scripts/local-slurm.sh for this instance."""
        return run_script(*args, env_extra=self.script_env, timeout=timeout)

    def sbatch(self, *args: str) -> str:
        """Submit with `sbatch --parsable ARGS`; return the job id."""
        out = self.run("sbatch", "--parsable", *args).stdout.strip()
        return out.split(";")[0]

    def job_state(self, job_id: str) -> str:
        """The job's state from squeue (fast) or, once it left the queue, from sacct."""
        out = self.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).stdout.split()
        if out:
            return out[0]
        lines = self.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State", check=False).stdout.split()
        # "CANCELLED by 0" → CANCELLED; no record yet → UNKNOWN
        return lines[-1].split()[0] if lines else "UNKNOWN"

    def wait_for_job(self, job_id: str, states: str | Sequence[str], timeout: float = 120,
                     logs: Sequence[Path] = ()) -> str:
        """Poll until the job is in one of `states`; on expiry or a different final state raise
        JobWaitError with the tails of the job's logs (its StdOut/StdErr and `logs`)."""
        wanted = {states} if isinstance(states, str) else set(states)
        paths = [*self.job_log_paths(job_id), *logs]
        deadline = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in wanted:
                return state
            if state in FINAL_STATES:
                raise JobWaitError(f"job {job_id} ended {state} while waiting for {sorted(wanted)}"
                                   f"{log_tails(paths)}")
            time.sleep(0.1)
        raise JobWaitError(f"timed out after {timeout:g} s waiting for job {job_id} to reach {sorted(wanted)}; "
                           f"last state {state}{log_tails(paths)}")

    def wait_for_accounting(self, job_id: str, states: str | Sequence[str],
                            fields: Sequence[str] = ("Partition", "Account", "NodeList", "Start", "End"),
                            timeout: float = 60) -> dict[str, str]:
        """Poll sacct alone until it records the job in one of `states` with every field in
        `fields` filled in; return those fields (and State). slurmdbd lags behind slurmctld: a
        short job can show COMPLETED in sacct ~1 s before its Partition is recorded."""
        wanted = {states} if isinstance(states, str) else set(states)
        names = ["State", *fields]
        deadline = time.monotonic() + timeout
        row: dict[str, str] = {}
        while time.monotonic() < deadline:
            out = self.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", ",".join(names), check=False).stdout
            lines = out.strip().splitlines()
            row = dict(zip(names, lines[-1].split("|"))) if lines else {}
            row["State"] = row.get("State", "UNKNOWN").split(" ")[0]
            if row["State"] in wanted and all(row.get(f) for f in fields):
                return row
            time.sleep(0.1)
        raise JobWaitError(f"timed out after {timeout:g} s waiting for sacct to record job {job_id} as "
                           f"{sorted(wanted)} with {', '.join(fields)}; sacct says {row}")

    def job_log_paths(self, job_id: str) -> list[Path]:
        """StdOut/StdErr of a job slurmctld still knows (see MinJobAge)."""
        text = self.run("scontrol", "show", "job", "-o", job_id, check=False).stdout
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        return [Path(fields[key]) for key in ("StdOut", "StdErr") if fields.get(key)]


def log_tails(paths: Sequence[Path], lines: int = 30) -> str:
    """The last lines of each existing file (files of a directory included), for failure messages."""
    files: list[Path] = []
    for path in dict.fromkeys(paths):
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    chunks = []
    for path in files:
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"\n--- last {len(tail)} lines of {path}:\n" + "\n".join(tail))
    return "".join(chunks) or "\n(no job logs found)"


def run_script(*args: str, env_extra: Mapping[str, str] | None = None,
               timeout: float = UP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def load_cluster(state_dir: Path, script_env: Mapping[str, str] | None = None) -> LocalSlurm:
    """Read the cluster.env the script writes once the cluster is up."""
    values: dict[str, str] = {}
    for line in (state_dir / "cluster.env").read_text().splitlines():
        key, _, raw = line.partition("=")
        values[key] = shlex.split(raw)[0] if raw else ""
    return LocalSlurm(
        state_dir=state_dir,
        slurm_conf=Path(values["SLURM_CONF"]),
        nodes=tuple(values["NODES"].split()),
        addrs=tuple(values["ADDRS"].split()),
        netns=tuple(values["NETNS"].split()),
        controller_addr=values["CONTROLLER_ADDR"],
        partitions=tuple(values["PARTITIONS"].split()),
        default_partition=values["DEFAULT_PARTITION"],
        accounts=tuple(values["ACCOUNTS"].split()),
        default_account=values["DEFAULT_ACCOUNT"],
        gpus_per_node=int(values["GPUS_PER_NODE"]),
        script_env=dict(script_env or {}),
    )


def why_unavailable() -> str | None:
    """Why local-slurm.sh cannot run here, or None if it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "scripts/local-slurm.sh needs root"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    for tool in ("ip", "nsenter", "unshare", "flock"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    return None


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"local Slurm unavailable on CI: {reason}", pytrace=False)
    pytest.skip(f"local Slurm unavailable: {reason}")


def pid_alive(pid: int) -> bool:
    """Running and not a zombie (this machine's init reaps late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class SessionRegistry:
    """Which pytest sessions use the shared cluster, and whether one of them started it."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "run" / "pytest-sessions"
        self.started_marker = state_dir / "run" / "pytest-started"

    def enter(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / str(os.getpid())).touch()

    def leave(self) -> bool:
        """Unregister; True if the caller should stop the cluster (a pytest session started it
        and no other live session uses it)."""
        (self.dir / str(os.getpid())).unlink(missing_ok=True)
        others = [p for p in self.dir.iterdir() if p.name.isdigit() and pid_alive(int(p.name))]
        return self.started_marker.exists() and not others

    def mark_started(self) -> None:
        self.started_marker.write_text(f"{os.getpid()}\n")

    def clear_started(self) -> None:
        self.started_marker.unlink(missing_ok=True)


def cluster_is_up(env_extra: Mapping[str, str] | None = None) -> bool:
    return run_script("status", env_extra=env_extra, timeout=120).returncode == 0


@pytest.fixture(scope="session")
def local_slurm() -> Iterator[LocalSlurm]:
    """The shared local cluster with 3 nodes, brought up for this session if needed."""
    reason = why_unavailable()
    if reason:
        skip_or_fail(reason)
    state_dir = Path(os.environ.get("LOCAL_SLURM_STATE_DIR", DEFAULT_STATE_DIR))
    was_up = cluster_is_up()
    proc = run_script("up", str(SESSION_NODES))
    if proc.returncode != 0:
        pytest.fail(f"scripts/local-slurm.sh up {SESSION_NODES} exited {proc.returncode}:\n"
                    f"{proc.stdout}{proc.stderr}", pytrace=False)
    registry = SessionRegistry(state_dir)
    if not was_up:
        registry.mark_started()
    registry.enter()
    try:
        yield load_cluster(state_dir)
    finally:
        if registry.leave():
            registry.clear_started()
            down = run_script("down")
            if down.returncode != 0:
                pytest.fail(f"scripts/local-slurm.sh down exited {down.returncode}:\n{down.stdout}{down.stderr}",
                            pytrace=False)

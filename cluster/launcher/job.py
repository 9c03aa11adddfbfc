"""Node 0's Ray job: submit the entrypoint, stream the driver's log, report the real final state.

`ray job submit` exits 0 for a STOPPED job and `ray job logs`/`status` always exit 0, so the
final state and `driver_exit_code` come from `GET /api/jobs/<id>`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from cluster.launcher import api as ray_api
from cluster.errors import JobFailedError, ConfigError, NodeFault, RayStartError
from cluster.launcher.context import Node
from cluster.launcher.ray_logs import strip_ansi
from cluster.launcher.readiness import find_dead
from cluster.launcher.render import render_entrypoint
from cluster.secrets import secret_env_values, value_exposed
from cluster.launcher.rendezvous import tail_lines, write_json_atomic
from cluster.launcher.watchdog import Watchdog


STATUS_EVERY_S = 0.5
TAIL_LINES = 20


class LogFollower:
    """Copies what a growing file gained since the last call into another file."""

    def __init__(self, source: Path, dest: Path) -> None:
        self.source, self.dest, self.offset = source, dest, 0

    def pump(self) -> int:
        try:
            with open(self.source, "rb") as src:
                src.seek(self.offset)
                data = src.read()
        except OSError:
            return 0  # the driver has not started yet
        if data:
            with open(self.dest, "ab") as dst:
                dst.write(data)
            self.offset += len(data)
        return len(data)


def submission_id(node: Node) -> str:
    return f"{node.spec.stage}-{node.ident.job_id}-r{node.ident.restart}"


def check_no_secret_values(node: Node) -> None:
    """Secrets must reach the driver through the environment only: refuse an entrypoint or a
    runtime env that carries the value of one (both land in Ray's job table and in logs)."""
    spec = node.spec
    exposed = [*spec.entrypoint, *spec.env_vars.values(), spec.working_dir or ""]
    for name, value in secret_env_values(node.env).items():  # any length: a short secret is still one
        if any(value_exposed(value, item) for item in exposed):
            raise ConfigError(
                f"{node.what}: the value of {name} appears in the entrypoint or env_vars; it would "
                f"be stored in Ray's job table. Drop it there (e.g. --wandb-key): the driver gets "
                f"{name} from the environment")


def wandb_run_flags(spec) -> list[str]:
    """`--wandb-run-id <the chain's id>` on every start (the plan minted it once per chain), so a
    requeued job continues the same W&B run; nothing when W&B is off or the entrypoint sets one."""
    run_id = (spec.resume or {}).get("wandb_run_id")
    if not run_id or any(w == "--wandb-run-id" or w.startswith("--wandb-run-id=") for w in spec.entrypoint):
        return []
    return ["--wandb-run-id", run_id]


def resumed_entrypoint(node: Node) -> list[str]:
    """The entrypoint plus `--load` (and `--ckpt-step`) decided from disk alone, so a requeued
    run resumes even when no signal handler ran, and the chain's `--wandb-run-id`; logged and
    recorded in resume.json."""
    from cluster.launcher.resume import resolve_resume

    spec = node.spec
    wandb = wandb_run_flags(spec)
    if not spec.resume or "--load" in spec.entrypoint:
        return [*spec.entrypoint, *wandb]
    info = resolve_resume(spec.resume.get("load_ckpt"), spec.resume.get("save_dir"), spec.resume.get("ref_load"))
    extra = [word for key, value in info.flags.items() for word in (f"--{key}", str(value))]
    node.log.mark(f"resume: {info.reason}" + (f"; W&B run {wandb[1]}" if wandb else ""))
    write_json_atomic(node.paths.log_dir / "resume.json", {
        "restart": node.ident.restart, "source": info.source, "checkpoint": info.checkpoint,
        "flags": extra, "reason": info.reason, "wandb_run_id": wandb[1] if wandb else None, "time": time.time()})
    return [*spec.entrypoint, *extra, *wandb]


def run_job(node: Node, base: str, guard: Callable[[], None]) -> None:
    sid, spec = submission_id(node), node.spec
    entry = render_entrypoint(resumed_entrypoint(node), spec.working_dir)
    driver_log = node.paths.driver_log
    with open(driver_log, "a") as f:
        f.write(f"=== job {node.ident.job_id} restart {node.ident.restart}: Ray job {sid} ===\n")
    try:
        ray_api.submit_job(base, sid, entry, spec.env_vars, token=node.token)
    except ray_api.ApiUnavailable as err:
        raise RayStartError(f"{node.what}: submitting the Ray job failed: {err}") from None
    node.log.mark(f"job {sid} submitted: {entry}")
    follower = LogFollower(
        Path(node.temp_dir) / "session_latest" / "logs" / f"job-driver-{sid}.log", driver_log)
    node.driver_follower = follower  # teardown pumps it again once Ray has stopped
    try:
        job = _follow(node, base, sid, follower, guard)
    finally:
        # Every exit path (a dead node, a signal, the API gone) keeps what the driver wrote so far.
        follower.pump()
    if follower.offset == 0:
        _copy_logs_from_api(base, sid, driver_log, node.token)
    if job.status == "SUCCEEDED":
        node.log.mark(f"job {sid} SUCCEEDED")
        return
    dead = _dead_node(node, base)
    if dead:  # the job failed because a node went away: that is the cause to report
        raise NodeFault(f"{node.what}: Ray node on {dead} is DEAD; job {sid} ended "
                        f"{job.status} (log: {_log_of(node, dead)})", host=dead, why="lost mid-run: its Ray node is DEAD")
    code = "" if job.driver_exit_code is None else f" with exit code {job.driver_exit_code}"
    first = strip_ansi(job.message).splitlines()[0] if job.message else ""
    tail = "\n  ".join(tail_lines(driver_log, TAIL_LINES))
    raise JobFailedError(f"{node.what}: Ray job {sid} {job.status}{code}: {first}\n"
                         f"last lines of {driver_log}:\n  {tail}")


def _follow(node: Node, base: str, sid: str, follower: LogFollower,
            guard: Callable[[], None]) -> ray_api.JobInfo:
    last_ok = next_status = time.monotonic()
    lost_s = node.spec.ray.head_lost_s
    watch = Watchdog(node)  # watchdog.stall_s: no progress that long -> stacks dumped, job ended
    while True:
        guard()
        follower.pump()
        watch.check()
        now = time.monotonic()
        if now >= next_status:
            next_status = now + STATUS_EVERY_S
            try:
                job = ray_api.get_job(base, sid, token=node.token)
                dead = find_dead(ray_api.list_nodes(base, token=node.token), node.ident.hosts)
                last_ok = now
            except ray_api.ApiUnavailable as err:
                if now - last_ok > lost_s:
                    raise RayStartError(f"{node.what}: Ray head API silent for {lost_s:g} s "
                                        f"while job {sid} ran: {err}") from None
                continue
            if dead:
                raise NodeFault(f"{node.what}: Ray node on {dead} is DEAD while job {sid} "
                                f"was {job.status} (log: {_log_of(node, dead)})", host=dead,
                                why="lost mid-run: its Ray node is DEAD")
            if job.status in ray_api.TERMINAL_JOB_STATES:
                return job
        time.sleep(0.1)


def _dead_node(node: Node, base: str) -> str | None:
    try:
        return find_dead(ray_api.list_nodes(base, token=node.token), node.ident.hosts)
    except ray_api.ApiUnavailable:
        return None


def _log_of(node: Node, host: str) -> Path:
    return node.log_of(node.ident.hosts.index(host))


def _copy_logs_from_api(base: str, sid: str, dest: Path, token: str | None) -> None:
    # The driver ran somewhere other than this node's temp dir: take what the job API kept.
    try:
        logs = ray_api.get_job_logs(base, sid, token=token)
    except ray_api.ApiUnavailable:
        return
    with open(dest, "a") as f:
        f.write(logs)

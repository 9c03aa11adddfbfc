"""Files on the chain's shared log dir through which the nodes of one allocation meet.

Layout, keyed by job id AND restart count so a requeued job never reads a stale file:
    <chain_dir>/<stage>/<job_id>/node-<nodeid>-<host>.log        phase markers + `ray start` output
    <chain_dir>/<stage>/<job_id>/driver.log                       the Ray job's driver log (node 0)
    <chain_dir>/<stage>/<job_id>/restart-<n>/node-<i>-<host>.log, driver.log, resume.json
    .../restart-<n>/rendezvous/head.json   written once the head answers
    .../restart-<n>/rendezvous/ready.json  cluster ready (all nodes, GPUs checked)
    .../restart-<n>/rendezvous/done.json   node 0 finished (any outcome): workers leave
    .../restart-<n>/rendezvous/node-<i>.json  heartbeat + state of node i
    .../restart-<n>/ray-logs/node-<i>-<host>/*.tail  tails of Ray's session logs (failed runs only)
    .../restart-<n>/.auth/token            the run's Ray auth token (0600; deleted at teardown)
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.outputs import write_json_atomic  # noqa: F401  (re-exported for the launcher)


@dataclass(frozen=True)
class RendezvousPaths:
    log_dir: Path
    rdv_dir: Path

    @classmethod
    def of(cls, chain_dir: str, stage: str, job_id: str, restart: int) -> RendezvousPaths:
        # Each run of a requeued job has its own dir: its logs never mix with an earlier run's,
        # and its rendezvous files are never a stale run's.
        log_dir = Path(chain_dir) / stage / job_id / f"restart-{restart}"
        return cls(log_dir=log_dir, rdv_dir=log_dir / "rendezvous")

    def node_log(self, node_id: int, host: str) -> Path:
        return self.log_dir / f"node-{node_id}-{host}.log"

    @property
    def driver_log(self) -> Path:
        return self.log_dir / "driver.log"

    @property
    def head(self) -> Path:
        return self.rdv_dir / "head.json"

    @property
    def ready(self) -> Path:
        return self.rdv_dir / "ready.json"

    @property
    def done(self) -> Path:
        return self.rdv_dir / "done.json"

    def ray_logs(self, node_id: int, host: str) -> Path:
        """Tails of a node's Ray session logs, copied there when the run fails."""
        return self.log_dir / "ray-logs" / f"node-{node_id}-{host}"

    def heartbeat(self, node_id: int) -> Path:
        return self.rdv_dir / f"node-{node_id}.json"


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's object, or None while it does not exist (or is not a whole JSON object)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class NodeLog:
    """Phase markers with seconds since the launcher started: `[+4.1s] head up at n1:20000`."""

    def __init__(self, path: Path, t0: float, echo: bool = True) -> None:
        self.path, self.t0, self.echo = path, t0, echo
        path.parent.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, msg: str) -> None:
        line = f"[+{self.elapsed():.1f}s] {msg}\n"
        with open(self.path, "a") as f:
            f.write(line)
        if self.echo:
            sys.stderr.write(line)
            sys.stderr.flush()

    def tail(self, n: int = 20) -> list[str]:
        return tail_lines(self.path, n)


def tail_lines(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return []
    return data.splitlines()[-n:]


class Heartbeat:
    """This node's state file, rewritten at most every `period_s` (and at once on a state change)."""

    def __init__(self, path: Path, node_id: int, host: str, period_s: float = 1.0) -> None:
        self.path, self.period_s = path, period_s
        self.base = {"node_id": node_id, "host": host, "pid": os.getpid()}
        self.seq, self.state, self.extra, self.last = 0, "", {}, -1e9

    def beat(self, state: str | None = None, **extra: Any) -> None:
        changed = state is not None and state != self.state
        if state is not None:
            self.state = state
        self.extra.update(extra)
        if not changed and time.monotonic() - self.last < self.period_s:
            return
        self.seq += 1
        self.last = time.monotonic()
        write_json_atomic(self.path, {**self.base, **self.extra, "state": self.state,
                                      "seq": self.seq, "time": time.time()})


class HeartbeatWatch:
    """Watches other nodes' heartbeats by content change on *this* node's clock, so clock skew
    between nodes does not matter. A node counts as lost once its file stopped changing for
    `timeout_s`, or at once when it reports state "failed"."""

    def __init__(self, paths: dict[int, Path], timeout_s: float) -> None:
        self.paths, self.timeout_s = paths, timeout_s
        self.seen: dict[int, tuple[Any, float]] = {}

    def check(self) -> tuple[int, str] | None:
        """(node_id, reason) of the first failed or silent node, else None."""
        now = time.monotonic()
        for node_id, path in self.paths.items():
            data = read_json(path)
            if data is None:
                continue  # not started yet: the bring-up deadline covers nodes that never start
            if data.get("state") == "failed":
                return node_id, str(data.get("message") or "it reported a failure")
            if data.get("state") == "stopped":
                continue
            key = data.get("seq")
            prev = self.seen.get(node_id)
            if prev is None or prev[0] != key:
                self.seen[node_id] = (key, now)
            elif now - prev[1] > self.timeout_s:
                return node_id, (f"its launcher (pid {data.get('pid')}) stopped reporting "
                                 f"{now - prev[1]:.0f} s ago (heartbeat {path})")
        return None

    def states(self) -> dict[int, str]:
        return {i: str((read_json(p) or {}).get("state", "not started")) for i, p in self.paths.items()}

"""Ray's own node-local session logs, kept past the allocation when a run fails.

On failure each node copies the tails of its Ray logs (raylet, GCS, dashboard and its agent, the
runtime-env agent, monitor, the newest non-empty worker `.err` files) into the run's log dir on the
shared filesystem, `restart-<n>/ray-logs/node-<i>-<host>/<file>.tail`, then removes its node-local
Ray temp dir (so failed runs leave nothing behind on the node's disk). `.tail` files are not
followed by `cluster.logs`; `cluster.status` points at the directory. The job's auth token is
redacted from every copy.
"""
from __future__ import annotations

import re
from pathlib import Path

from cluster.launcher.auth import redact

TAIL_BYTES = 64 * 1024
TAIL_LINES = 300
FIXED = ("raylet.out", "raylet.err", "gcs_server.out", "gcs_server.err", "dashboard.log", "dashboard.err",
         "dashboard_agent.log", "dashboard_agent.err", "runtime_env_agent.log", "runtime_env_agent.err",
         "monitor.log", "monitor.err", "log_monitor.err", "ray_process_exit.log")
MAX_WORKER_ERR = 10
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


def strip_ansi(text: str) -> str:
    """Ray colours its messages (`\\x1b[36m(raylet)\\x1b[0m`); files and status want plain text."""
    return _ANSI.sub("", text)


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        data = f.read().decode(errors="replace")
    lines = data.splitlines()[-TAIL_LINES:]
    return "\n".join(lines) + ("\n" if lines else "")


def pick_files(logs: Path) -> list[Path]:
    """The session logs worth keeping: the fixed daemons' plus the newest non-empty worker errors."""
    out = [logs / name for name in FIXED if (logs / name).is_file()]
    try:
        errs = [p for p in logs.glob("worker-*.err") if p.stat().st_size > 0]
    except OSError:
        errs = []
    errs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return out + errs[:MAX_WORKER_ERR]


def copy_tails(temp_dir: str, dest: Path, token: str | None) -> list[Path]:
    """Copy the tails of this node's Ray session logs into dest; returns the files written."""
    logs = Path(temp_dir) / "session_latest" / "logs"
    if not logs.is_dir():
        return []
    written = []
    for src in pick_files(logs):
        try:
            text = redact(strip_ansi(_tail(src)), token)
        except OSError:
            continue
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / f"{src.name}.tail"
        out.write_text(f"# last {TAIL_LINES} lines (at most {TAIL_BYTES // 1024} KiB) of {src}\n{text}")
        written.append(out)
    return written

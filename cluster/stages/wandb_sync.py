"""`python -m cluster.stages.wandb_sync DIR`: upload a chain's offline W&B runs (the sync stage, or by hand
from any node with internet once the train job has ended).

DIR is the chain's --wandb-dir (`<chain dir>/wandb` by default); W&B writes each start of the train
job to `DIR/wandb/offline-run-<time>-<run id>/`, all with the chain's one run id. They are uploaded
oldest first: the first segment of a run id as it is, every later one with `--append` to the same
id (W&B's way to continue a run from offline segments), each marked synced so a second sync skips
it. WANDB_API_KEY comes from the environment (or `wandb login`'s ~/.netrc), never from argv.

Exit 0 when everything was uploaded (or there was nothing to upload), 1 when an upload failed,
2 when `wandb` or the key is missing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from cluster.errors import ConfigError, JobFailedError

RUN_DIR = re.compile(r"^offline-run-(\d{8}_\d{6})-(.+)$")


def offline_runs(root: str | Path) -> list[Path]:
    """The offline run dirs under DIR/wandb (or DIR itself), oldest first."""
    root = Path(root)
    found = {p for base in (root / "wandb", root) if base.is_dir() for p in base.iterdir()
             if p.is_dir() and RUN_DIR.match(p.name)}
    return sorted(found, key=lambda p: (RUN_DIR.match(p.name).group(1), p.name))


def run_id_of(run: Path) -> str:
    return RUN_DIR.match(run.name).group(2)


def is_synced(run: Path) -> bool:
    """`wandb sync --mark-synced` leaves `<run-file>.wandb.synced` in the run dir."""
    return any(run.glob("*.wandb.synced"))


def sync_commands(runs: Sequence[Path], wandb: str = "wandb") -> list[list[str]]:
    """One `wandb sync` per run dir not yet synced; the later segments of a run id append to it."""
    seen: set[str] = set()
    commands = []
    for run in runs:
        run_id = run_id_of(run)
        later = run_id in seen
        seen.add(run_id)
        if is_synced(run):
            continue
        commands.append([wandb, "sync", "--include-offline", "--mark-synced",
                         *(["--append", "--id", run_id] if later else []), str(run)])
    return commands


def _has_login(env: Mapping[str, str]) -> bool:
    if env.get("WANDB_API_KEY"):
        return True
    netrc = Path(env.get("NETRC") or Path(env.get("HOME", "~")).expanduser() / ".netrc")
    try:
        return "api.wandb.ai" in netrc.read_text() or bool(env.get("WANDB_BASE_URL"))
    except OSError:
        return bool(env.get("WANDB_BASE_URL"))


def main(argv: Sequence[str] | None = None) -> int:
    from cluster.cli import ArgumentParser

    parser = ArgumentParser(prog="python -m cluster.stages.wandb_sync",
                            description="Upload a chain's offline W&B runs (oldest first, later segments appended).")
    parser.add_argument("dir", help="the chain's W&B dir (--wandb-dir; default <chain dir>/wandb)")
    args = parser.parse_args(argv)
    runs = offline_runs(args.dir)
    if not runs:
        print(f"no offline W&B run under {args.dir}: nothing to upload")
        return 0
    wandb = shutil.which("wandb")
    if wandb is None:
        raise ConfigError("the `wandb` command is not on PATH: it comes with the Python package wandb "
                          "(pip install wandb) in the environment this runs in.")
    if not _has_login(os.environ):
        raise ConfigError("WANDB_API_KEY is not set (and no `wandb login` in ~/.netrc): export it where you submit "
                          "or run this; it reaches the job through the environment only.")
    commands = sync_commands(runs, wandb)
    print(f"{len(runs)} offline run dir(s) under {args.dir}, {len(commands)} to upload", flush=True)
    failed = []
    for command in commands:
        print("$ " + " ".join(command), flush=True)
        if subprocess.run(command).returncode != 0:
            failed.append(Path(command[-1]).name)
    if failed:
        raise JobFailedError(f"wandb sync failed for {', '.join(failed)}; run this again to retry (uploaded dirs "
                             "are marked and skipped)")
    return 0


if __name__ == "__main__":
    from cluster.cli import run_cli

    sys.exit(run_cli(main))

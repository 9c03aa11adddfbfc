"""python -m cluster.logs CHAIN|JOB [--stage S] [-f]: every log file of a chain with a
`[stage node]` prefix; with -f it follows them like `tail -F`, picks up files that appear later
(new nodes, a requeued run's files) and stops by itself when the jobs reach a final state."""
from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TextIO

from cluster.chain import find_chain, read_chain
from cluster.cli import ArgumentParser, run_cli

LOG_SUFFIXES = (".out", ".err", ".log")
_SUBMITIT = re.compile(r"^(\d+)_(\d+)_log\.(out|err)$")
_NODE = re.compile(r"^node-(\d+)-(.+)\.log$")
_RESTART = re.compile(r"^restart-(\d+)$")


_HOST = re.compile(rb"hostname=([^,\s)]+)")


def _task_host(out_file: Path) -> str | None:
    """submitit's first line in a task's .out names the node: `JobEnvironment(..., hostname=n1, ...)`."""
    try:
        with out_file.open("rb") as fh:
            m = _HOST.search(fh.read(4096))
    except OSError:
        return None
    return m.group(1).decode() if m else None


def label_for(path: Path, stage: str) -> str | None:
    """`[stage node]` for our launcher's node files and submitit's task files (`[stage n1/t0]`),
    `[stage driver]` for the Ray driver; a requeued run's files get `@rN`. None while a task
    file does not yet say which node it runs on."""
    name = path.name
    if m := _NODE.match(name):
        who = m.group(2)
    elif m := _SUBMITIT.match(name):
        host = _task_host(path.with_name(f"{m.group(1)}_{m.group(2)}_log.out"))
        if host is None:
            return None
        who = f"{host}/t{m.group(2)}" + (" err" if m.group(3) == "err" else "")
    else:
        who = path.stem
    restart = next((m.group(1) for part in path.parts if (m := _RESTART.match(part))), None)
    return f"[{stage} {who}{f'@r{restart}' if restart and restart != '0' else ''}]"


def discover(chain_dir: Path, stages: Sequence[str]) -> list[tuple[Path, str]]:
    found = []
    for stage in stages:
        root = chain_dir / stage
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix in LOG_SUFFIXES and "rendezvous" not in path.parts:
                    found.append((path, stage))
    return found


@dataclass
class Tail:
    """Read what was appended to one file since last time; survives truncation and rotation."""

    path: Path
    label: str
    offset: int = 0
    inode: int = -1
    partial: bytes = b""

    def read_lines(self, final: bool = False) -> list[str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        if st.st_ino != self.inode or st.st_size < self.offset:
            self.inode, self.offset, self.partial = st.st_ino, 0, b""
        if st.st_size == self.offset and not (final and self.partial):
            return []
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        chunks = (self.partial + data).split(b"\n")
        self.partial = chunks.pop()
        if final and self.partial:
            chunks.append(self.partial)
            self.partial = b""
        return [c.decode("utf-8", "replace") for c in chunks]


@dataclass
class Follower:
    chain_dir: Path
    stages: Sequence[str]
    out: TextIO = sys.stdout
    tails: dict[Path, Tail] = field(default_factory=dict)

    def pump(self, final: bool = False) -> int:
        """Print every new complete line of every file (new files included); returns lines."""
        count = 0
        for path, stage in discover(self.chain_dir, self.stages):
            if path not in self.tails:
                label = label_for(path, stage) or (f"[{stage} {path.stem}]" if final else None)
                if label is not None:
                    self.tails[path] = Tail(path, label)
        for tail in self.tails.values():
            for line in tail.read_lines(final=final):
                self.out.write(f"{tail.label} {line}\n")
                count += 1
        self.out.flush()
        return count


def follow(follower: Follower, jobs_final: Callable[[], bool], poll_s: float = 0.5,
           state_every_s: float = 2.0, stop: threading.Event | None = None) -> None:
    """Pump until `jobs_final()` says every job is done, then drain once more."""
    stop = stop or threading.Event()
    next_check = 0.0
    while not stop.is_set():
        follower.pump()
        now = time.monotonic()
        if now >= next_check:
            next_check = now + state_every_s
            if jobs_final():
                break
        stop.wait(poll_s)  # a poll interval, like tail -F; the exit condition is the job state
    follower.pump(final=True)


def _jobs_final(job_ids: list[str]) -> Callable[[], bool]:
    from cluster.slurm import query_jobs

    def check() -> bool:
        jobs = query_jobs(job_ids)
        return all(j in jobs and jobs[j].final for j in job_ids)
    return check


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m cluster.logs",
                            description="Print (and with -f follow) every log file of a chain, each line "
                                        "prefixed with [stage node]. Ctrl-C stops following; the job keeps running.",
                            epilog="examples:\n  python -m cluster.logs smoke-20261124-101500-ab12 -f\n"
                                   "  python -m cluster.logs 4812 --stage train")
    parser.add_argument("ref", help="chain id, chain dir, or a job id of one of its stages")
    parser.add_argument("--stage", help="only this stage (data, model, convert, train)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing until the jobs end")
    parser.add_argument("--log-dir", default="logs", help="where chains are recorded (default: ./logs)")
    args = parser.parse_args(argv)
    chain_dir, job_stage = find_chain(args.ref, args.log_dir)
    record = read_chain(chain_dir)
    names = [s["name"] for s in record.get("stages", [])]
    stages = [args.stage or job_stage] if (args.stage or job_stage) else names
    unknown = [s for s in stages if s not in names]
    if unknown:
        parser.error(f"--stage {unknown[0]}: not a stage of chain {record.get('chain_id')} ({', '.join(names)})")
    follower = Follower(chain_dir, stages)
    if not args.follow:
        follower.pump(final=True)
        return 0
    job_ids = [str(s["job_id"]) for s in record["stages"] if s["name"] in stages and s.get("job_id")]
    try:
        follow(follower, _jobs_final(job_ids))
    except KeyboardInterrupt:
        sys.stderr.write(f"\nstopped following; the jobs keep running (python -m cluster.status {record.get('chain_id')})\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""python -m cluster.status [CHAIN|JOB]: every stage of a chain with its Slurm state, or the
user's recent chains."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from cluster.chain import find_chain, list_chains, read_chain
from cluster.cli import ArgumentParser, run_cli
from cluster.slurm import JobInfo, query_jobs
from cluster.sweep import SWEEP_FILE, add_eval_scores, eval_lines, render_sweep, sweep_status
from cluster.triage import add_causes
from cluster.launcher.ray_logs import strip_ansi
from cluster.launcher.rendezvous import read_json

COLUMNS = ("stage", "job_id", "state", "nodes", "elapsed", "restarts", "exit_code", "log_dir")


def stage_rows(record: dict[str, Any], jobs: dict[str, JobInfo]) -> list[dict[str, Any]]:
    """One row per stage (pure): skipped stages say so, the rest take their job's state."""
    rows = []
    for stage in record.get("stages", []):
        job = jobs.get(str(stage.get("job_id")))
        if stage.get("skip"):
            state = "SKIPPED"
        elif not stage.get("job_id"):
            state = "NOT SUBMITTED"
        else:
            state = job.state if job else "UNKNOWN"
        rows.append({
            "stage": stage["name"], "job_id": stage.get("job_id") or "-", "state": state,
            "nodes": job.nodes if job else "", "elapsed": job.elapsed if job else "",
            "restarts": job.restarts if job else 0, "exit_code": job.exit_code if job else "",
            "reason": job.reason if job and job.state in ("PENDING", "CANCELLED") and job.reason not in ("None", "") else "",
            "log_dir": stage.get("log_dir") or "",
            "runs": read_runs(stage.get("log_dir")),
        })
        rows[-1]["excluded_nodes"] = excluded_nodes(rows[-1]["runs"])
    return rows


def excluded_nodes(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes the launcher left out of the job's requeues: which, why, after which run."""
    return [{"node": q["node"], "why": q["why"], "restart": run["restart"]} for run in runs
            if (q := run.get("quarantine")) and q.get("left_out") and q.get("requeued")]




def read_runs(log_dir: str | None) -> list[dict[str, Any]]:
    """Each run of a (requeued) train job as its launcher recorded it: what it resumed from, how it
    ended (node 0's done marker, colour codes stripped) and where Ray's own log tails were kept."""
    runs = []
    for run_dir in sorted(Path(log_dir).glob("restart-*")) if log_dir else []:
        if not run_dir.name.removeprefix("restart-").isdigit():
            continue
        info, done = read_json(run_dir / "resume.json"), read_json(run_dir / "rendezvous" / "done.json")
        if info is None and done is None and not (run_dir / "quarantine.json").is_file():
            continue
        run: dict[str, Any] = {"restart": int(run_dir.name.removeprefix("restart-"))}
        if info is not None:
            run.update({"source": info.get("source"), "checkpoint": info.get("checkpoint"),
                        "reason": info.get("reason")})
        if done is not None:
            message = strip_ansi(str(done.get("message") or ""))
            run.update({"final": done.get("state") or ("succeeded" if done.get("exit_code") == 0 else "failed"),
                        "exit_code": done.get("exit_code"), "message": (message.splitlines() or [""])[0]})
        if (run_dir / "ray-logs").is_dir():
            run["ray_logs"] = str(run_dir / "ray-logs")
        quarantine = read_json(run_dir / "quarantine.json")  # a node the launcher blamed (cluster/launcher/quarantine.py)
        if quarantine is not None:
            run["quarantine"] = {k: quarantine.get(k) for k in ("node", "why", "left_out", "requeued", "exclude",
                                                                 "decision", "outcome")}
        runs.append(run)
    return sorted(runs, key=lambda r: r["restart"])


def _quarantine_line(q: dict[str, Any]) -> str:
    if q.get("left_out") and q.get("requeued"):
        return f"left {q['node']} out of the requeued job ({q['why']})"
    if q.get("requeued") is False or (q.get("requeued") and not q.get("left_out")):
        return f"blamed {q['node']} ({q['why']}): {q.get('outcome')}"  # the requeue itself went wrong
    return f"blamed {q['node']} ({q['why']}): {q.get('decision')}"


def chain_state(rows: list[dict[str, Any]]) -> str:
    states = [r["state"] for r in rows if r["state"] != "SKIPPED"]
    for bad in ("FAILED", "TIMEOUT", "CANCELLED", "PREEMPTED"):
        if bad in states:
            failed = next(r["stage"] for r in rows if r["state"] == bad)
            return f"{bad} at {failed}"
    if states and all(s == "COMPLETED" for s in states):
        return "COMPLETED"
    if "RUNNING" in states:
        return "RUNNING " + next(r["stage"] for r in rows if r["state"] == "RUNNING")
    return "PENDING" if states else "COMPLETED (all skipped)"


def render_table(rows: list[dict[str, Any]]) -> str:
    cells = [[str(r[c]) for c in COLUMNS] for r in rows]
    header = [c.upper() for c in COLUMNS]
    widths = [max(len(x) for x in col) for col in zip(header, *cells)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    out = [fmt.format(*header)] + [fmt.format(*c) for c in cells]
    out += [f"  {r['stage']}: {r['reason']}" for r in rows if r["reason"] and r["state"] != "COMPLETED"]
    out += [f"  {r['stage']}: cause: {r['cause']}" for r in rows if r.get("cause")]
    out += eval_lines(rows)  # the eval stage's scores, trained vs starting model (cluster/sweep.py)
    for r in rows:
        for run in r.get("runs", []):
            if "source" in run:
                what = Path(run["checkpoint"]).name if run["source"] != "ref_load" and run["checkpoint"] else "fresh (ref-load)"
                out.append(f"  {r['stage']} run {run['restart']}: resumed from {what} [{run['source']}]")
            if run.get("final") and run["final"] != "succeeded":
                out.append(f"  {r['stage']} run {run['restart']}: {run['final']}: {run['message']}")
            if run.get("cause"):
                out.append(f"  {r['stage']} run {run['restart']}: cause: {run['cause']}")
            if run.get("quarantine"):
                out.append(f"  {r['stage']} run {run['restart']}: {_quarantine_line(run['quarantine'])}")
            if run.get("ray_logs"):
                out.append(f"  {r['stage']} run {run['restart']}: Ray's own log tails (raylet, GCS, workers): {run['ray_logs']}")
    out += [f"  {r['stage']}: nodes left out (slurm.max_excluded_nodes): "
            + ", ".join(f"{e['node']} (after run {e['restart']})" for e in r["excluded_nodes"])
            for r in rows if r.get("excluded_nodes")]
    return "\n".join(line.rstrip() for line in out)


def chain_status(chain_dir: Path) -> dict[str, Any]:
    record = read_chain(chain_dir)
    jobs = query_jobs(str(s.get("job_id")) for s in record.get("stages", []) if s.get("job_id"))
    rows = stage_rows(record, jobs)
    add_eval_scores(record, rows)
    add_causes(rows, {j: info.slurm_state for j, info in jobs.items()})  # one-line failure causes (cluster/triage.py)
    return {"chain_id": record.get("chain_id"), "profile": record.get("profile"), "chain_dir": str(chain_dir),
            "state": chain_state(rows), "stages": rows}


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m cluster.status",
                            description="Show every stage of a chain (job id, state, nodes, elapsed, restarts, "
                                        "exit code, log dir), or the recent chains when no argument is given.",
                            epilog="examples:\n  python -m cluster.status                 # recent chains\n"
                                   "  python -m cluster.status smoke-20261124-101500-ab12\n"
                                   "  python -m cluster.status 4812 --json      # the chain of job 4812")
    parser.add_argument("ref", nargs="?", help="chain id, chain dir, or a job id of one of its stages")
    parser.add_argument("--log-dir", default="logs", help="where chains are recorded (default: ./logs)")
    parser.add_argument("--limit", type=int, default=10, help="recent chains to list (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.ref:
        chain_dir, _stage = find_chain(args.ref, args.log_dir)
        if (chain_dir / SWEEP_FILE).is_file() and _stage is None:  # a sweep: one row per point
            sweep = sweep_status(chain_dir, chain_status)
            print(json.dumps(sweep, indent=2) if args.json else render_sweep(sweep))
            return 0
        status = chain_status(chain_dir)
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            print(f"chain {status['chain_id']} ({status['profile']}): {status['state']}")
            print(render_table(status["stages"]))
        return 0
    chains = [chain_status(d) for d in list_chains(args.log_dir)[: args.limit]]
    if args.json:
        print(json.dumps(chains, indent=2))
    elif not chains:
        print(f"no chains under {args.log_dir}/ (submit one with python -m cluster.submit)")
    else:
        for status in chains:
            jobs = " ".join(f"{r['stage']}={r['job_id']}" for r in status["stages"] if r["job_id"] != "-")
            print(f"{status['chain_id']:40s} {status['state']:28s} {jobs}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

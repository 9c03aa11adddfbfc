"""The demo driver's rollout report: per-rollout figures from the samples, the run's summary, and the
readable lines the driver prints (pure functions).

    python -m demo.report REPORT.json [--job ID]   # the summary (scripts/demo.sh)
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from cluster.cli import ArgumentParser
from holdem.metrics import ACTIONS, compute_rollout_metrics


def summarize_rollout(rollout_id: int, samples: list, tasks: list[dict], seconds: float) -> dict[str, Any]:
    """One rollout's entry: reward mean, action mix, protocol errors, token rates, placement."""
    metrics = compute_rollout_metrics(samples)
    rewards = [s.reward for s in samples if isinstance(s.reward, dict)]
    model_tokens = sum(sum(s.loss_mask or []) for s in samples)
    response_tokens = sum(s.response_length for s in samples)
    actions = Counter(r.get("action") or "none" for r in rewards)
    return {
        "rollout_id": rollout_id,
        "samples": len(samples),
        "reward_mean": round(sum(float(r["score"]) for r in rewards) / max(1, len(rewards)), 4),
        "exact_match": round(metrics.get("holdem/reward/exact", 0.0), 4),
        "action_mix": {k: actions[k] for k in (*ACTIONS, "none") if actions[k]},
        "protocol_errors": int(sum(r.get("protocol_errors", 0) for r in rewards)),
        "protocol_error_rate": round(metrics["holdem/protocol_error_rate"], 4),
        "statuses": dict(Counter(s.status.name for s in samples)),
        "turns_mean": round(metrics["holdem/turns_mean"], 3),
        "model_tokens": model_tokens,
        "response_tokens": response_tokens,
        "seconds": round(seconds, 3),
        "model_tokens_per_s": round(model_tokens / seconds, 1) if seconds > 0 else None,
        "response_tokens_per_s": round(response_tokens / seconds, 1) if seconds > 0 else None,
        "tasks": tasks,
        "hosts": dict(Counter(t["host"] for t in tasks)),
    }


def summarize_run(rollouts: list[dict]) -> dict[str, Any]:
    """Totals over every rollout done so far (those of earlier runs included)."""
    samples = sum(r["samples"] for r in rollouts)
    seconds = sum(r["seconds"] for r in rollouts)
    actions: Counter = Counter()
    hosts: Counter = Counter()
    for r in rollouts:
        actions.update(r["action_mix"])
        hosts.update(r["hosts"])
    return {
        "rollouts_done": len(rollouts),
        "samples": samples,
        "reward_mean": round(sum(r["reward_mean"] * r["samples"] for r in rollouts) / max(1, samples), 4),
        "action_mix": dict(actions.most_common()),
        "protocol_errors": sum(r["protocol_errors"] for r in rollouts),
        "model_tokens_per_s": round(sum(r["model_tokens"] for r in rollouts) / seconds, 1) if seconds else None,
        "response_tokens_per_s": round(sum(r["response_tokens"] for r in rollouts) / seconds, 1) if seconds else None,
        "tasks_per_host": dict(sorted(hosts.items())),
    }


def _mix(actions: dict[str, int]) -> str:
    return " ".join(f"{k} {v}" for k, v in actions.items()) or "-"


def render_rollout_line(entry: dict, num_rollout: int) -> str:
    hosts = " ".join(f"{h}:{n}" for h, n in sorted(entry["hosts"].items()))
    saved = f"; saved {entry['saved']}" if entry.get("saved") else ""
    return (f"rollout {entry['rollout_id'] + 1}/{num_rollout}: {entry['samples']} samples, reward mean "
            f"{entry['reward_mean']:+.3f}, actions {_mix(entry['action_mix'])}, protocol errors "
            f"{entry['protocol_errors']}, {entry['response_tokens_per_s']:,.0f} tok/s, tasks {hosts}, "
            f"{entry['seconds']:.1f} s{saved}")


def render_summary(report: dict) -> str:
    """The report as a few readable lines (the driver log and scripts/demo.sh print it)."""
    s = report.get("summary") or {}
    if not s:
        return "  no rollout finished yet"
    runs = report.get("runs", [])
    resumed = [r for r in runs if r.get("resumed_from")]
    lines = [
        f"  rollouts       {s['rollouts_done']}/{report.get('num_rollout')} "
        f"({'complete' if report.get('complete') else 'incomplete'}; {len(runs)} run(s)"
        + (f", resumed from {resumed[-1]['resumed_from']}" if resumed else "") + ")",
        f"  samples        {s['samples']}",
        f"  reward mean    {s['reward_mean']:+.3f}",
        f"  actions        {_mix(s['action_mix'])}",
        f"  protocol errs  {s['protocol_errors']}",
        f"  tokens/s       {s['response_tokens_per_s']:,.0f} (response tokens through the rollout path; "
        f"{s['model_tokens_per_s']:,.0f} sampled by the policy)",
        f"  tasks per node {' '.join(f'{h}: {n}' for h, n in s['tasks_per_host'].items())}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m demo.report")
    parser.add_argument("report")
    parser.add_argument("--job", help="the train job that should have written it (warns when it did not)")
    args = parser.parse_args(argv)
    try:
        report = json.loads(open(args.report, encoding="utf-8").read())
    except (OSError, ValueError) as err:
        print(f"error: {args.report}: no readable report ({err}); the train stage writes it after its first rollout",
              file=sys.stderr)
        return 2
    last = (report.get("runs") or [{}])[-1]
    if args.job and last.get("slurm_job_id") != args.job:
        print(f"  (not written by train job {args.job}: the last run that wrote it was job {last.get('slurm_job_id')})")
    print(render_summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Aggregates of `holdem.eval` predictions, overall and by street, and the printed table."""
from __future__ import annotations

from collections import defaultdict

from holdem.table import STREETS

METRICS = ("exact_match", "action_accuracy", "strict_accuracy", "protocol_error_rate", "mean_reward")


def summarize(predictions: list[dict]) -> dict:
    """`{"overall": {...}, "by_street": {street: {...}}}`; each block has `n` and METRICS."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for p in predictions:
        groups[p["street"]].append(p)
    order = [s for s in STREETS if s in groups] + sorted(set(groups) - set(STREETS))
    return {"overall": _block(predictions), "by_street": {s: _block(groups[s]) for s in order}}


def _block(preds: list[dict]) -> dict:
    n = len(preds)
    if n == 0:
        return {"n": 0, **{m: None for m in METRICS}}
    rewards = [p["reward"] for p in preds if p.get("reward") is not None]
    return {
        "n": n,
        "exact_match": sum(p["exact_match"] for p in preds) / n,
        "action_accuracy": sum(p["action_match"] for p in preds) / n,
        "strict_accuracy": sum(p["strict"] for p in preds) / n,
        "protocol_error_rate": sum(p["protocol_error"] for p in preds) / n,
        "mean_reward": sum(rewards) / len(rewards) if rewards else None,
    }


def render_table(summary: dict) -> str:
    head = f"{'street':<8}{'n':>7}{'exact':>8}{'action':>8}{'strict':>8}{'proto.err':>10}{'reward':>8}"
    lines = [head, "-" * len(head)]
    rows = list(summary["by_street"].items()) + [("overall", summary["overall"])]
    for name, b in rows:
        lines.append(
            f"{name:<8}{b['n']:>7}" + "".join(_pct(b[m], w) for m, w in (
                ("exact_match", 8), ("action_accuracy", 8), ("strict_accuracy", 8), ("protocol_error_rate", 10)))
            + (f"{b['mean_reward']:>8.3f}" if b["mean_reward"] is not None else f"{'-':>8}")
        )
    return "\n".join(lines)


def _pct(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{100 * value:>{width - 1}.1f}%"

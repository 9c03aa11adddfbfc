"""slime's `--custom-rollout-log-function-path` hook: what the holdem episodes did.

`log_rollout_data` logs the action mix, protocol-error rate, mean turns, tool usage, episode
end reasons and the mean of every reward component under `holdem/…` (through slime's own
logger, so W&B / TensorBoard when they are on; else Python logging) and returns False so
slime's default rollout metrics are logged too.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from holdem.reward import reward_error_count

logger = logging.getLogger(__name__)
PREFIX = "holdem/"
ACTIONS = ("fold", "check", "call", "bet", "raise")


def log_rollout_data(rollout_id: int, args: Any, samples: list, rollout_extra_metrics: dict | None, rollout_time: float) -> bool:
    """Log holdem metrics for one rollout; returns False (slime still logs its own)."""
    try:
        metrics = compute_rollout_metrics(samples)
        metrics[PREFIX + "rollout_time_s"] = float(rollout_time)
        _log(rollout_id, args, metrics)
    except Exception:  # noqa: BLE001 - metrics must never stop training
        logger.warning("holdem metrics: rollout %s could not be logged", rollout_id, exc_info=True)
    return False


def compute_rollout_metrics(samples: Iterable[Any]) -> dict[str, float]:
    """Pure: the metrics of a (possibly nested) list of samples."""
    flat = list(_flatten(samples))
    n = max(1, len(flat))
    rewards = [s.reward for s in flat if isinstance(getattr(s, "reward", None), dict)]
    episodes = [s.metadata.get("holdem", {}) for s in flat if isinstance(getattr(s, "metadata", None), dict)]
    out: dict[str, float] = {PREFIX + "samples": float(len(flat))}

    actions = Counter(r.get("action") or "none" for r in rewards)
    for kind in (*ACTIONS, "none"):
        out[f"{PREFIX}action_frac/{kind}"] = actions.get(kind, 0) / max(1, len(rewards))
    errors = sum(1 for r in rewards if r.get("protocol_errors", 0) > 0 or not r.get("made_action"))
    out[PREFIX + "protocol_error_rate"] = errors / max(1, len(rewards))
    for key in _numeric_keys(rewards):
        out[f"{PREFIX}reward/{key}"] = sum(float(r.get(key, 0.0)) for r in rewards) / max(1, len(rewards))

    out[PREFIX + "turns_mean"] = sum(e.get("turns", 0) for e in episodes) / max(1, len(episodes))
    tools = Counter()
    for episode in episodes:
        tools.update(episode.get("tools", {}))
    for name, count in sorted(tools.items()):
        out[f"{PREFIX}tool_calls_per_sample/{name}"] = count / n
    ends = Counter(e.get("end", "unknown") for e in episodes)
    for reason, count in sorted(ends.items()):
        out[f"{PREFIX}end_frac/{reason}"] = count / max(1, len(episodes))
    out[PREFIX + "reward_exceptions_total"] = float(reward_error_count())
    return out


def _flatten(samples: Iterable[Any]) -> Iterable[Any]:
    for item in samples or []:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


def _numeric_keys(rewards: list[dict]) -> list[str]:
    keys = set()
    for reward in rewards:
        keys.update(k for k, v in reward.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    return sorted(keys)


def _log(rollout_id: int, args: Any, metrics: dict[str, float]) -> None:
    logger.info("holdem rollout %s: %s", rollout_id, {k: round(v, 4) for k, v in metrics.items()})
    try:  # inside slime: its own logger (W&B and/or TensorBoard as configured)
        from slime.observability import logging_utils
        from slime.observability.metric_utils import compute_rollout_step
    except ImportError:
        logging_utils = None
    if logging_utils is not None:
        metrics["rollout/step"] = compute_rollout_step(args, rollout_id)
        logging_utils.log(args, metrics, step_key="rollout/step")
        return
    if getattr(args, "use_wandb", False):
        import wandb

        if wandb.run is not None:
            wandb.log(metrics)

"""The metric lines slime prints into the driver log, printed by the demo driver for every rollout, in
slime's exact format (../shared/SLIME.md, "What slime prints"; slime 624b824), so that
`python -m cluster.metrics` and its `--plot` work on the demo's run as on a real one.

What is real and what is a STAND-IN (there is no Megatron and no training in the CPU demo):

    perf N: {...}    REAL. slime's default rollout log (slime/observability/rollout_metrics.py,
                     `log_rollout_data`, which slime runs because our hook returns False), computed as
                     slime computes it from the demo's real samples and the rollout's wall time:
                     rollout/response_len/*, rollout/zero_std/*, rollout/repetition_frac,
                     rollout/truncated_ratio, perf/rollout_time, perf/tokens_per_gpu_per_sec (response
                     tokens / wall time / rollout GPUs), perf/longest_sample_tokens_per_sec, and the
                     `effective_` variants (model tokens only). SGLang's prefix-cache and request
                     timings are left out: the SGLang stand-in has none.
    rollout N: {...} REAL where the samples say it: the Megatron side's summary of the rollout
                     (slime/observability/train_metric_utils.py): rollout/raw_reward (the reward's
                     `--reward-key`), rollout/rewards and rollout/advantages = rollout/returns (GRPO's
                     group-normalised rewards), rollout/truncated, rollout/response_lengths,
                     rollout/total_lengths, rollout/rollout_log_probs (the SGLang stand-in's log-probs
                     per model token). Megatron's recomputed rollout/log_probs and ref_log_probs are left out.
    step S: {...}    one per train step (slime/backends/megatron_utils/model.py). DERIVED where GRPO says
                     what a step's value is: the first step after a rollout is on-policy (ratio 1), so
                     train/ppo_kl = 0 and train/pg_clipfrac = 0 (slime's CI asserts both) and
                     train/pg_loss = -mean advantage of the step's samples; train/entropy_loss is
                     estimated from the sampled tokens' log-probs; lr and global_batch_size are the
                     args'. STAND-IN (`standin_*` below): train/train_rollout_logprob_abs_diff,
                     train/grad_norm, train/kl_loss, and ppo_kl/pg_clipfrac of later steps of a rollout —
                     deterministic smooth curves of the step id in the healthy ranges of
                     docs/TROUBLESHOOTING.md, the same for a step redone after a restart.
"""
from __future__ import annotations

import logging
import math
import zlib
from collections import Counter, defaultdict
from typing import Any, Sequence

logger = logging.getLogger(__name__)


# --- perf N: slime's default rollout log (REAL) ------------------------------------------------------

def _stats(values: Sequence[float]) -> dict[str, float]:
    """slime's compute_statistics: mean, median, max, min."""
    ordered = sorted(values)
    n = len(ordered)
    middle = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {"mean": sum(ordered) / n, "median": float(middle), "max": float(ordered[-1]), "min": float(ordered[0])}


def _has_repetition(text: str) -> bool:
    """slime's has_repetition: the last 10,000 characters of a long response compress over 10x."""
    if len(text) <= 10000:
        return False
    raw = text[-10000:].encode("utf-8")
    return len(raw) / max(1, len(zlib.compress(raw, 9))) > 10


def reward_value(sample: Any, reward_key: str | None) -> float:
    """slime's Sample.get_reward_value: the reward dict's --reward-key entry (holdem: `score`)."""
    reward = sample.reward
    if isinstance(reward, dict):
        return float(reward.get(reward_key or "score", 0.0))
    return float(reward or 0.0)


def _effective_length(sample: Any) -> int:
    return sum(sample.loss_mask) if sample.loss_mask is not None else sample.response_length


def perf_metrics(args: Any, samples: Sequence[Any], rollout_time: float) -> dict[str, float]:
    """The `perf N:` dict slime's rollout manager logs (rollout/* and perf/* keys)."""
    out: dict[str, float] = {}
    for key, value in _stats([_effective_length(s) for s in samples]).items():
        out[f"rollout/response_len/{key}"] = value
    groups: dict[Any, list[float]] = defaultdict(list)
    for s in samples:
        groups[s.group_index].append(reward_value(s, args.reward_key))
    flat = [str(round(g[0], 1)) for g in groups.values() if all(r == g[0] for r in g)]
    for reward, count in Counter(flat).items():
        out[f"rollout/zero_std/count_{reward}"] = count
    out["rollout/repetition_frac"] = sum(_has_repetition(s.response) for s in samples) / len(samples)
    out["rollout/truncated_ratio"] = sum(s.status.name == "TRUNCATED" for s in samples) / len(samples)
    out["perf/rollout_time"] = rollout_time
    for key, lengths in (("", [s.response_length for s in samples]),
                         ("effective_", [_effective_length(s) for s in samples])):
        if args.rollout_num_gpus:
            out[f"perf/{key}tokens_per_gpu_per_sec"] = sum(lengths) / rollout_time / args.rollout_num_gpus
        out[f"perf/longest_{key}sample_tokens_per_sec"] = max(lengths) / rollout_time
    return out


# --- rollout N: the Megatron side's rollout summary (REAL where the samples say it) -----------------

def grpo_rewards(args: Any, samples: Sequence[Any]) -> list[float]:
    """slime's _post_process_rewards for grpo: reward minus its group's mean, over the group's
    (unbiased) std + 1e-6. A one-sample group has no spread: its reward becomes 0."""
    raw = [reward_value(s, args.reward_key) for s in samples]
    if args.advantage_estimator not in ("grpo", "gspo", "cispo", "reinforce_plus_plus_baseline"):
        return raw
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[s.group_index].append(i)
    out = list(raw)
    for members in groups.values():
        values = [raw[i] for i in members]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        for i in members:
            out[i] = raw[i] - mean
            if args.advantage_estimator != "reinforce_plus_plus_baseline":
                out[i] /= std + 1e-6
    return out


def _token_mean_logprob(samples: Sequence[Any]) -> float:
    """Mean log-prob per model token (loss mask 1), over every sample of the batch."""
    total = count = 0.0
    for s in samples:
        for logprob, mask in zip(s.rollout_log_probs or [], s.loss_mask or []):
            total, count = total + logprob * mask, count + mask
    return total / count if count else 0.0


def rollout_metrics(args: Any, samples: Sequence[Any]) -> dict[str, float]:
    """The `rollout N:` dict: per-sample means of what the Megatron side receives."""
    n = len(samples)
    rewards = grpo_rewards(args, samples)
    out = {
        "rollout/response_lengths": sum(s.response_length for s in samples) / n,
        "rollout/rewards": sum(rewards) / n,
        "rollout/raw_reward": sum(reward_value(s, args.reward_key) for s in samples) / n,
        "rollout/truncated": sum(s.status.name == "TRUNCATED" for s in samples) / n,
        "rollout/total_lengths": sum(len(s.tokens) for s in samples) / n,
        "rollout/rollout_log_probs": _token_mean_logprob(samples),
    }
    # GRPO: every token of a sample carries its normalised reward as advantage and return.
    out["rollout/advantages"] = out["rollout/returns"] = out["rollout/rewards"]
    return out


# --- step S: one per train step (DERIVED / STAND-IN) ------------------------------------------------

def standin_logprob_abs_diff(step: int) -> float:
    """STAND-IN: SGLang vs Megatron log-prob gap; healthy is ~0.01 and steady."""
    return 0.0105 + 0.0015 * math.sin(0.7 * step) + 0.0005 * math.sin(0.23 * step)


def standin_grad_norm(step: int) -> float:
    """STAND-IN: settling from ~0.3 to ~0.18 with a gentle wobble."""
    return 0.18 + 0.12 * math.exp(-step / 6.0) + 0.025 * math.cos(0.45 * step)


def standin_kl_loss(step: int) -> float:
    """STAND-IN: low_var_kl to the reference model, 0 before the first update, then slowly growing."""
    return 4e-4 * (1.0 - math.exp(-step / 12.0))


def standin_ppo_kl(step: int) -> float:
    """STAND-IN, for a step after the first of its rollout (off-policy by the earlier updates)."""
    return 2e-4 * (1.0 + 0.5 * math.sin(0.9 * step))


def steps_per_rollout(args: Any, num_samples: int) -> int:
    """slime's num_steps_per_rollout: the rollout's samples over --global-batch-size (at least 1)."""
    gbs = args.global_batch_size or num_samples
    return max(1, num_samples // gbs)


def step_metrics(args: Any, samples: Sequence[Any], rollout_id: int) -> list[tuple[int, dict[str, float]]]:
    """(accumulated step id, the `step S:` dict) for each train step of the rollout."""
    spr = steps_per_rollout(args, len(samples))
    size = max(1, len(samples) // spr)
    rewards = grpo_rewards(args, samples)
    out = []
    for step_id in range(spr):
        step = rollout_id * spr + step_id
        part = range(step_id * size, min(len(samples), (step_id + 1) * size))
        on_policy = step_id == 0
        pg_loss = -sum(rewards[i] for i in part) / max(1, len(part))  # ratio 1: -A, per-sample mean
        entropy = -_token_mean_logprob([samples[i] for i in part])  # Monte Carlo estimate of the entropy
        kl_loss = standin_kl_loss(step) if args.use_kl_loss else 0.0
        values = {
            "train/loss": pg_loss - args.entropy_coef * entropy + (args.kl_loss_coef * kl_loss if args.use_kl_loss else 0.0),
            "train/pg_loss": pg_loss,
            "train/entropy_loss": entropy,
            "train/pg_clipfrac": 0.0 if on_policy else 0.01,
            "train/ppo_kl": 0.0 if on_policy else standin_ppo_kl(step),
            "train/train_rollout_logprob_abs_diff": standin_logprob_abs_diff(step),
        }
        if args.use_kl_loss:
            values["train/kl_loss"] = kl_loss
        values["train/grad_norm"] = standin_grad_norm(step)
        values["train/lr-pg_0"] = args.lr
        values["train/global_batch_size"] = len(part)
        values["train/step"] = step
        out.append((step, values))
    return out


def log_slime_metrics(rollout_id: int, args: Any, samples: Sequence[Any], rollout_time: float) -> None:
    """Print one rollout's lines in slime's order: the rollout side's `perf`, the Megatron side's
    `rollout`, then its train steps (`logger.info(f"{name} {id}: {dict}")`, as slime does)."""
    if not samples:
        return
    logger.info(f"perf {rollout_id}: {_rounded(perf_metrics(args, samples, max(rollout_time, 1e-9)))}")
    logger.info(f"rollout {rollout_id}: {_rounded(rollout_metrics(args, samples))}")
    for step, values in step_metrics(args, samples, rollout_id):
        logger.info(f"step {step}: {_rounded(values)}")


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}

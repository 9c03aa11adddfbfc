"""The layered reward: protocol, action, sizing, efficiency. Never raises.

`score_response(prompt, label, response)` is the pure scorer (the offline evaluation reuses it);
`reward_func(args, sample, **kw)` is slime's `--custom-rm-path` hook around it. Weights and the
action distance matrix live in holdem/reward_config.py.

Time is linear in the response length (plain `str.find` scans, see holdem/toolcall.py), and
the work that repeats is cached: per prompt the parsed table, per label its action, per
tool-call text its verdict (a policy writes the same few calls over and over).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from holdem import reward_config as cfg
from holdem.pokerbench import parse_instruction, parse_label
from holdem.table import Action, TableInfo, check_action, resolve_allin
from holdem.toolcall import ToolCall, action_from_arguments, call_bodies, parse_call_body
from holdem.tools import TOOL_NAMES

logger = logging.getLogger(__name__)

_USER_TURN = "<|im_start|>user\n"  # a tool-response turn the rollout appended ...
_TURN_END = "<|im_end|>"  # ... ends at the next turn end (and its newline)
_ASSISTANT = "<|im_start|>assistant"
_SIZED = ("bet", "raise")
_CACHED_BODY_CHARS = 512  # longer tool-call texts are judged every time, not kept
_errors = 0
_errors_lock = threading.Lock()

# What one tool-call text is, for the protocol layer.
_MALFORMED, _TOOL, _UNKNOWN_TOOL, _ACTION, _BAD_ACTION = range(5)


def reward_error_count() -> int:
    """How many scorings have failed with an exception (each got MIN_SCORE) in this process."""
    return _errors


def clear_caches() -> None:
    """Forget the per-prompt, per-label and per-call caches (benchmarks measure cold prompts)."""
    _spot.cache_clear()
    _target.cache_clear()
    _judge_cached.cache_clear()


async def reward_func(args: Any, sample: Any, **kwargs: Any) -> dict | list[dict]:
    """slime reward hook: a dict with "score" in [-1, 1] plus its components. With
    `--group-rm` slime passes a list of samples and gets a list back."""
    if isinstance(sample, list):
        return [_score_sample(item) for item in sample]
    return _score_sample(sample)


def _score_sample(sample: Any) -> dict:
    try:
        prompt = sample.prompt
        if isinstance(prompt, list):  # chat-message prompts: the instruction is the user turn
            users = (m for m in reversed(prompt) if isinstance(m, dict) and m.get("role") == "user")
            prompt = next(users).get("content", "")
        return score_response(prompt, sample.label, sample.response)
    except Exception:  # noqa: BLE001 - the trainer must never see a reward exception
        return _failed("sample")


def score_response(prompt: str, label: str, response: str) -> dict:
    """Score one response against its PokerBench prompt and label. Never raises: any
    exception gives MIN_SCORE with "error": 1 and is counted (reward_error_count)."""
    try:
        return _score(prompt, label, response)
    except Exception:  # noqa: BLE001
        return _failed("scoring")


def _failed(where: str) -> dict:
    global _errors
    with _errors_lock:
        _errors += 1
    logger.warning("holdem reward: exception while %s was scored; gave the minimum", where, exc_info=True)
    return _result(cfg.MIN_SCORE, error=1.0)


def _result(score: float, **components: Any) -> dict:
    out: dict[str, Any] = {
        "score": score,
        "action": "",
        "made_action": 0.0,
        "exact": 0.0,
        "quality": 0.0,
        "kind_similarity": 0.0,
        "sizing": 0.0,
        "legal": 0.0,
        "protocol_errors": 0.0,
        "protocol_penalty": 0.0,
        "efficiency_penalty": 0.0,
        "turns": 0.0,
        "tool_calls": 0.0,
        "est_tokens": 0.0,
        "error": 0.0,
    }
    out.update(components)
    return out


def _score(prompt: str, label: str, response: str) -> dict:
    target = _target(label)
    if not isinstance(response, str):
        raise TypeError(f"response: expected a string, got {type(response).__name__}")
    bodies, unterminated = call_bodies(response)
    turns = response.count(_ASSISTANT) + 1
    est_tokens = _model_chars(response) / cfg.CHARS_PER_TOKEN

    # The episode ends at the first well-formed make_action; malformed ones got an error
    # message and a retry, so they cost a protocol error but are not the answer. Calls after
    # it cost one each (it must come last), unknown tools one more.
    errors = 1 if unterminated else 0
    tool_calls = 0
    action: Action | None = None
    for body in bodies:
        kind, candidate = _judge(body)
        if kind == _MALFORMED:
            errors += 1
            continue
        tool_calls += 1
        if kind == _ACTION:
            if action is None:
                action = candidate
            else:
                errors += 1  # exactly one make_action
        elif kind != _TOOL:  # an unknown tool or a malformed make_action
            errors += 1
            if kind == _UNKNOWN_TOOL and action is not None:
                errors += 1
        elif action is not None:
            errors += 1
    if action is None:
        return {
            "score": cfg.MIN_SCORE, "action": "", "made_action": 0.0, "exact": 0.0, "quality": 0.0,
            "kind_similarity": 0.0, "sizing": 0.0, "legal": 0.0, "protocol_errors": float(errors),
            "protocol_penalty": 0.0, "efficiency_penalty": 0.0, "turns": float(turns),
            "tool_calls": float(tool_calls), "est_tokens": est_tokens, "error": 0.0,
        }  # fmt: skip
    protocol_penalty = min(cfg.PROTOCOL_PENALTY_CAP, errors * cfg.PROTOCOL_ERROR_PENALTY)

    exact = _same_action(action, target)
    if exact and action.kind != "allin":  # the exact label needs no state
        kind, quality, kind_similarity, sizing, legal = action.kind, 1.0, 1.0, 1.0, True
    else:
        kind, quality, kind_similarity, sizing, legal = _judge_action(prompt, action, target, exact)

    extra_turns = turns - cfg.FREE_TURNS
    extra_tokens = est_tokens - cfg.FREE_TOKENS
    efficiency_penalty = 0.0
    if extra_turns > 0 or extra_tokens > 0:
        efficiency_penalty = min(
            cfg.EFFICIENCY_PENALTY_CAP,
            max(0, extra_turns) * cfg.TURN_PENALTY + max(0.0, extra_tokens) / 100.0 * cfg.TOKEN_PENALTY_PER_100,
        )
    penalty = protocol_penalty + efficiency_penalty + (0.0 if legal else cfg.ILLEGAL_PENALTY)
    score = cfg.ACTION_FLOOR + (1.0 - cfg.ACTION_FLOOR) * quality - penalty
    score = min(cfg.MAX_SCORE, max(cfg.MIN_SCORE, score))
    return {
        "score": score, "action": kind, "made_action": 1.0, "exact": 1.0 if exact else 0.0, "quality": quality,
        "kind_similarity": kind_similarity, "sizing": sizing, "legal": 1.0 if legal else 0.0,
        "protocol_errors": float(errors), "protocol_penalty": protocol_penalty,
        "efficiency_penalty": efficiency_penalty, "turns": float(turns), "tool_calls": float(tool_calls),
        "est_tokens": est_tokens, "error": 0.0,
    }  # fmt: skip


def _judge_action(prompt: str, action: Action, target: Action, exact: bool) -> tuple[str, float, float, float, bool]:
    """(resolved kind, quality, kind similarity, sizing, legal) of a final action that is
    not simply the exact label."""
    spot = _spot(prompt) if isinstance(prompt, str) else None  # (non-strings never parse)
    if spot is not None:
        resolved, resolved_target = resolve_allin(spot.table, action), resolve_allin(spot.table, target)
        legal = exact or check_action(spot.table, action) is None
    else:  # the prompt does not parse: legality and stack-based all-in equality are skipped
        resolved, resolved_target = _allin_as_raise(action), _allin_as_raise(target)
        legal = True
    kind_similarity = 1.0 - cfg.KIND_DISTANCE[resolved.kind][resolved_target.kind]
    if _both_sized(resolved, resolved_target):
        sizing = 1.0 if exact else _sizing(resolved, resolved_target, spot)
        quality = kind_similarity * (cfg.SIZE_FLOOR + (1.0 - cfg.SIZE_FLOOR) * sizing)
    else:
        sizing, quality = 1.0, kind_similarity
    return resolved.kind, quality, kind_similarity, sizing, legal


def _model_chars(response: str) -> int:
    """Characters the model wrote: the response without the tool-response turns
    (`<|im_start|>user` and its newline up to and including the next `<|im_end|>` and its newline, or the
    end). One left-to-right pass, linear however the turns are (un)closed."""
    find = response.find
    start = find(_USER_TURN)
    if start < 0:
        return len(response)
    removed = 0
    while start >= 0:
        end = find(_TURN_END, start + len(_USER_TURN))
        if end < 0:
            removed += len(response) - start
            break
        end += len(_TURN_END)
        if response.startswith("\n", end):
            end += 1
        removed += end - start
        start = find(_USER_TURN, end)
    return len(response) - removed


def _judge(body: str) -> tuple[int, Action | None]:
    return _judge_cached(body) if len(body) <= _CACHED_BODY_CHARS else _judge_uncached(body)


def _judge_uncached(body: str) -> tuple[int, Action | None]:
    call = parse_call_body(body)
    if not isinstance(call, ToolCall):
        return _MALFORMED, None
    if call.name == "make_action":
        try:
            return _ACTION, action_from_arguments(call.arguments)
        except ValueError:
            return _BAD_ACTION, None
    return (_TOOL if call.name in TOOL_NAMES else _UNKNOWN_TOOL), None


# A policy writes the same few calls over and over (`get_game_state`, `make_action fold`):
# judge each text once. Actions are immutable, so sharing them is safe.
_judge_cached = lru_cache(maxsize=8192)(_judge_uncached)


@lru_cache(maxsize=4096)
def _target(label: str) -> Action:
    return parse_label(label)


@dataclass(frozen=True)
class _Spot:
    """What the reward needs from a prompt: its table and the hero's all-in total."""

    table: TableInfo
    all_in: float


# The n samples of a GRPO group share their prompt: parse it once.
@lru_cache(maxsize=16384)
def _spot(prompt: str) -> _Spot | None:
    """The parsed prompt, or None when it does not parse: then legality and stack-based
    all-in equality are skipped (a data problem, not the model's)."""
    try:
        state = parse_instruction(prompt)
    except ValueError:
        return None
    return _Spot(state.table, state.hero_committed + state.hero_stack)


def _same_action(action: Action, target: Action) -> bool:
    if action.kind != target.kind:
        return False
    if action.amount is None or target.amount is None:
        return action.amount is None and target.amount is None
    return abs(action.amount - target.amount) < 1e-9


def _allin_as_raise(action: Action) -> Action:
    return Action("raise", math.inf) if action.kind == "allin" else action


def _both_sized(a: Action, b: Action) -> bool:
    return a.kind in _SIZED and b.kind in _SIZED


def _sizing(action: Action, target: Action, spot: _Spot | None) -> float:
    """Similarity of two raise-to totals in [0, 1]; all-ins within ALLIN_TOLERANCE are equal."""
    if not _both_sized(action, target):
        return 1.0
    a, b = float(action.amount or 0.0), float(target.amount or 0.0)
    if spot is not None:
        all_in = spot.all_in
        if a >= all_in - cfg.ALLIN_TOLERANCE and b >= all_in - cfg.ALLIN_TOLERANCE:
            return 1.0
    if a == b:
        return 1.0
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
        return 0.0
    return max(0.0, 1.0 - abs(math.log(a / b)) / cfg.SIZE_LOG_SPAN)

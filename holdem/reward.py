"""The layered reward: protocol, action, sizing, efficiency. Never raises.

`score_response(prompt, label, response)` is the pure scorer (the offline evaluation reuses it);
`reward_func(args, sample, **kw)` is slime's `--custom-rm-path` hook around it. Weights and the
action distance matrix live in holdem/reward_config.py.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from typing import Any

from holdem import reward_config as cfg
from holdem.pokerbench import GameState, parse_instruction, parse_label
from holdem.table import Action, check_action, resolve_allin
from holdem.toolcall import action_from_arguments, parse_tool_calls
from holdem.tools import TOOL_NAMES

logger = logging.getLogger(__name__)

_TOOL_TURN_RE = re.compile(r"<\|im_start\|>user\n.*?(?:<\|im_end\|>\n?|\Z)", re.S)
_SIZED = ("bet", "raise")
_errors = 0
_errors_lock = threading.Lock()


def reward_error_count() -> int:
    """How many scorings have failed with an exception (each got MIN_SCORE) in this process."""
    return _errors


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
            prompt = next(m.get("content", "") for m in reversed(prompt) if m.get("role") == "user")
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
    target = parse_label(label)
    parsed = parse_tool_calls(response)
    calls = parsed.calls
    turns = response.count("<|im_start|>assistant") + 1
    model_chars = len(_TOOL_TURN_RE.sub("", response)) if "<|im_start|>user" in response else len(response)
    est_tokens = model_chars / cfg.CHARS_PER_TOKEN
    shape = {"turns": float(turns), "tool_calls": float(len(calls)), "est_tokens": est_tokens}

    # The episode ends at the first well-formed make_action; malformed ones got an error
    # message and a retry, so they cost a protocol error but are not the answer.
    errors = len(parsed.errors)
    action, final = None, -1
    for index, call in enumerate(calls):
        if call.name == "make_action":
            try:
                candidate = action_from_arguments(call.arguments)
            except ValueError:
                errors += 1
                continue
            if action is None:
                action, final = candidate, index
            else:
                errors += 1  # exactly one make_action
        elif call.name not in TOOL_NAMES:
            errors += 1
    if action is None:
        return _result(cfg.MIN_SCORE, protocol_errors=float(errors), **shape)
    errors += sum(1 for call in calls[final + 1 :] if call.name != "make_action")  # it must come last
    protocol_penalty = min(cfg.PROTOCOL_PENALTY_CAP, errors * cfg.PROTOCOL_ERROR_PENALTY)

    exact = _same_action(action, target)
    # The exact label needs no state unless it is an all-in (to resolve its size).
    state = None if exact and action.kind != "allin" else _state_or_none(prompt)
    if state is not None:
        resolved, resolved_target = resolve_allin(state.table, action), resolve_allin(state.table, target)
    else:
        resolved, resolved_target = _allin_as_raise(action), _allin_as_raise(target)
    legal = exact or state is None or check_action(state.table, action) is None
    kind_similarity = 1.0 - cfg.KIND_DISTANCE[resolved.kind][resolved_target.kind]
    sizing = 1.0 if exact else _sizing(resolved, resolved_target, state)
    quality = kind_similarity * (cfg.SIZE_FLOOR + (1.0 - cfg.SIZE_FLOOR) * sizing) if _both_sized(resolved, resolved_target) else kind_similarity

    extra_turns = max(0, turns - cfg.FREE_TURNS)
    extra_tokens = max(0.0, est_tokens - cfg.FREE_TOKENS)
    efficiency_penalty = min(
        cfg.EFFICIENCY_PENALTY_CAP,
        extra_turns * cfg.TURN_PENALTY + extra_tokens / 100.0 * cfg.TOKEN_PENALTY_PER_100,
    )
    penalty = protocol_penalty + efficiency_penalty + (0.0 if legal else cfg.ILLEGAL_PENALTY)
    score = cfg.ACTION_FLOOR + (1.0 - cfg.ACTION_FLOOR) * quality - penalty
    score = min(cfg.MAX_SCORE, max(cfg.MIN_SCORE, score))
    return _result(
        score,
        action=resolved.kind,
        made_action=1.0,
        exact=1.0 if exact else 0.0,
        quality=quality,
        kind_similarity=kind_similarity,
        sizing=sizing,
        legal=1.0 if legal else 0.0,
        protocol_errors=float(errors),
        protocol_penalty=protocol_penalty,
        efficiency_penalty=efficiency_penalty,
        **shape,
    )


def _state_or_none(prompt: str) -> GameState | None:
    """The parsed prompt, or None when it does not parse: then legality and stack-based
    all-in equality are skipped (a data problem, not the model's)."""
    try:
        return parse_instruction(prompt)
    except ValueError:
        return None


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


def _sizing(action: Action, target: Action, state: GameState | None) -> float:
    """Similarity of two raise-to totals in [0, 1]; all-ins within ALLIN_TOLERANCE are equal."""
    if not _both_sized(action, target):
        return 1.0
    a, b = float(action.amount or 0.0), float(target.amount or 0.0)
    if state is not None:
        all_in = state.hero_committed + state.hero_stack
        if a >= all_in - cfg.ALLIN_TOLERANCE and b >= all_in - cfg.ALLIN_TOLERANCE:
            return 1.0
    if a == b:
        return 1.0
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
        return 0.0
    return max(0.0, 1.0 - abs(math.log(a / b)) / cfg.SIZE_LOG_SPAN)

"""STAND-IN for Qwen3's sampling: the demo's scripted policy for the SGLang stand-in (no GPU here).

It plays the holdem tool protocol the way a tuned model would: first turn `get_game_state`, then
a `make_action` chosen by a simple hand-strength heuristic from the tool's JSON (legal actions,
amount to call, pot). Deterministic per prompt. About one spot in twelve (by a hash of the
prompt) opens with a malformed tool call on purpose, so the demo report shows the rollout's
protocol-error path; the policy then reads the error and recovers.
"""
from __future__ import annotations

import hashlib
import json
import re

from demo.sglang_standin import MALFORMED_TOOL_CALL, Completion, Request

_TOOL_RESPONSE = re.compile(r"<tool_response>\n(.*?)\n</tool_response>", re.S)
_USER_TURN = "<|im_start|>user\n"
_RANKS = "23456789TJQKA"
MALFORMED_EVERY = 12


def tool_call(name: str, arguments: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def demo_script(request: Request) -> Completion:
    """The next assistant turn for `request` (a decoded conversation)."""
    last = _last_tool_response(request.text)
    if last is None:
        if is_malformed_spot(_instruction(request.text)):
            return Completion(MALFORMED_TOOL_CALL)
        return Completion(tool_call("get_game_state", {}))
    if "legal_actions" not in last:
        return Completion(tool_call("get_game_state", {}))  # recover from an error answer
    return Completion(tool_call("make_action", decide(last)))


def is_malformed_spot(instruction: str) -> bool:
    """Whether the policy opens this spot with a malformed tool call (about 1 in MALFORMED_EVERY)."""
    digest = hashlib.sha256(instruction.strip().encode()).digest()
    return int.from_bytes(digest[:4], "big") % MALFORMED_EVERY == 0


def _instruction(text: str) -> str:
    """The first user turn of a decoded conversation (the PokerBench instruction)."""
    return text.split(_USER_TURN, 1)[-1].split("<|im_end|>", 1)[0]


def _last_tool_response(text: str) -> dict | None:
    found = _TOOL_RESPONSE.findall(text)
    if not found:
        return None
    try:
        value = json.loads(found[-1])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def strength(state: dict) -> int:
    """0 weak, 1 medium, 2 strong: pocket pairs, two broadway cards and paired boards score."""
    hole = [c[0] for c in state.get("hole_cards", [])]
    board = [c[0] for c in state.get("board", [])]
    if len(hole) != 2:
        return 0
    ranks = sorted((_RANKS.index(r) for r in hole if r in _RANKS), reverse=True)
    if len(ranks) != 2:
        return 0
    if hole[0] == hole[1] or any(r in board for r in hole):
        return 2
    if ranks[1] >= _RANKS.index("T"):
        return 2 if not board else 1
    if ranks[0] >= _RANKS.index("Q") or ranks[0] - ranks[1] == 1:
        return 1
    return 0


def decide(state: dict) -> dict:
    """make_action arguments from get_game_state's JSON."""
    legal = {a.get("action"): a for a in state.get("legal_actions", [])}
    to_call, pot = float(state.get("to_call") or 0), float(state.get("pot") or 0)
    level = strength(state)
    if level == 2:
        for kind in ("raise", "bet"):
            if kind in legal:
                low, high = float(legal[kind]["min"]), float(legal[kind]["max"])
                amount = min(high, max(low, round(pot * 0.75 + to_call * 2)))
                return {"action": kind, "amount": amount}
    if "check" in legal:
        return {"action": "check"}
    if "call" in legal and (level >= 1 or to_call <= pot / 4):
        return {"action": "call"}
    return {"action": "fold"}


def passive_script(request: Request) -> Completion:
    """The eval stand-in's starting model: reads the state, then checks when it can, else calls
    (never folds, never raises): a weak baseline for the trained policy to beat."""
    last = _last_tool_response(request.text)
    if last is None or "legal_actions" not in last:
        return Completion(tool_call("get_game_state", {}))
    legal = {a.get("action") for a in last.get("legal_actions", [])}
    return Completion(tool_call("make_action", {"action": "check" if "check" in legal else "call" if "call" in legal else "fold"}))

"""The tools the policy may call, as JSON schemas, and their execution. Never raises.

get_game_state  - the parsed table state of the prompt (legal actions included), compact JSON
hand_strength   - made-hand category now and Monte Carlo equity against one random hand
make_action     - the decision {"action", "amount"}; a well-formed call ends the episode

Tool errors come back to the model as `{"error": "..."}` so it can correct itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache

from holdem.equity import hand_strength
from holdem.pokerbench import GameState, format_amount, parse_instruction
from holdem.table import Action, check_action
from holdem.toolcall import ToolCall, action_from_arguments, quote_text

_NO_ARGS = {"type": "object", "properties": {}, "required": []}
TOOLS: tuple[dict, ...] = (
    {
        "type": "function",
        "function": {
            "name": "get_game_state",
            "description": "Get the current table state: your position and cards, the board, the pot, the action so "
            "far, the chips you must call, your stack and the legal actions with their amounts (big blinds).",
            "parameters": _NO_ARGS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "hand_strength",
            "description": "Evaluate your hand: its made-hand category now and its equity (share of the pot won, "
            "ties split) against one random opponent hand, by Monte Carlo simulation of the remaining board.",
            "parameters": _NO_ARGS,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "make_action",
            "description": "Make your decision; this ends the hand for you. Amounts are in big blinds and are the "
            "raise-to total for this street (as in 'raise 12'), required for bet and raise.",
            "parameters": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["fold", "check", "call", "bet", "raise"]},
                    "amount": {"type": "number", "description": "raise-to total in big blinds (bet/raise only)"},
                },
                "required": ["action"],
            },
        },
    },
)
TOOL_NAMES = tuple(tool["function"]["name"] for tool in TOOLS)
EQUITY_SAMPLES = 400  # Monte Carlo run-outs: about ±2.5 % equity, ~5-15 ms on one core
SLOW_TOOLS = frozenset({"hand_strength"})  # the rollout runs these in a thread


@dataclass(frozen=True)
class ToolContext:
    """What the tools know about one sample: its parsed prompt (or why it did not parse)
    and the seed for Monte Carlo tools."""

    state: GameState | None
    parse_error: str
    seed: int


@dataclass(frozen=True)
class ToolResult:
    text: str  # what goes back to the model inside <tool_response>
    ends_episode: bool = False
    action: Action | None = None


def make_context(prompt: str) -> ToolContext:
    """Parse the prompt once per sample. The seed is derived from the prompt, so every sample
    of a GRPO group sees the same (cached) equity for the same spot."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode("utf-8", "replace")).digest()[:8], "big")
    try:
        return ToolContext(parse_instruction(prompt), "", seed)
    except ValueError as exc:
        return ToolContext(None, str(exc), seed)


def execute_tool(call: ToolCall, ctx: ToolContext) -> ToolResult:
    """Run one tool call. Never raises: any failure is a message to the model."""
    try:
        if call.name == "get_game_state":
            return ToolResult(render_game_state(ctx.state) if ctx.state else _error(ctx.parse_error))
        if call.name == "hand_strength":
            return ToolResult(_hand_strength(ctx))
        if call.name == "make_action":
            return _make_action(call, ctx)
        # The name is the model's text: quoted and cut short like the tool-call parser's messages.
        return ToolResult(_error(f"unknown tool {quote_text(call.name)}; available: {', '.join(TOOL_NAMES)}"))
    except Exception as exc:  # noqa: BLE001 - a tool failure must not end the rollout
        name = call.name if isinstance(call.name, str) and call.name in TOOL_NAMES else quote_text(call.name)
        return ToolResult(_error(f"{name} failed: {type(exc).__name__}: {exc}"))


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def _make_action(call: ToolCall, ctx: ToolContext) -> ToolResult:
    try:
        action = action_from_arguments(call.arguments)
    except ValueError as exc:
        return ToolResult(_error(str(exc)))  # malformed: the model may try again
    note = check_action(ctx.state.table, action) if ctx.state else None
    text = json.dumps({"accepted": _describe(action), **({"warning": note} if note else {})})
    return ToolResult(text, ends_episode=True, action=action)


def _describe(action: Action) -> str:
    if action.amount is None:
        return "all in" if action.kind == "allin" else action.kind
    return f"{action.kind} {action.amount:g}"


def _hand_strength(ctx: ToolContext) -> str:
    if ctx.state is None:
        return _error(ctx.parse_error)
    return _cached_strength(ctx.state.hole_cards, ctx.state.board, ctx.seed)


@lru_cache(maxsize=4096)
def _cached_strength(hole: tuple[str, str], board: tuple[str, ...], seed: int) -> str:
    strength = hand_strength(hole, board, seed=seed, samples=EQUITY_SAMPLES)
    return json.dumps(
        {"made_hand": strength.made_hand, "equity_vs_random_hand": round(strength.equity, 3), "samples": strength.samples}
    )


def render_game_state(state: GameState) -> str:
    """The state as compact JSON for the model (amounts in big blinds)."""
    history = {}
    for index, name in enumerate(("preflop", "flop", "turn", "river")[: len(state.history)]):
        history[name] = [_entry_text(e.position, e.action, name) for e in state.history[index]]
    legal = []
    for la in state.legal_actions:
        if la.kind in ("bet", "raise"):
            legal.append({"action": la.kind, "min": _num(la.min_amount), "max": _num(la.max_amount)})
        elif la.kind == "call":
            legal.append({"action": "call", "amount": _num(la.min_amount)})
        else:
            legal.append({"action": la.kind})
    return json.dumps(
        {
            "street": state.street,
            "position": state.hero_position,
            "hole_cards": list(state.hole_cards),
            "board": list(state.board),
            "pot": _num(state.pot),
            "to_call": _num(state.to_call),
            "committed_this_street": _num(state.hero_committed),
            "stack": _num(state.hero_stack),
            "history": history,
            "legal_actions": legal,
        },
        separators=(",", ":"),
    )


def _entry_text(position: str, action: Action, street: str) -> str:
    if action.kind == "allin":
        return f"{position} all in"
    if action.amount is None:
        return f"{position} {action.kind}"
    return f"{position} {action.kind} {format_amount(action.amount, street)}"


def _num(value: float) -> float | int:
    """Round away float artefacts (7.899999999999999 -> 7.9) and print whole numbers as ints."""
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value

"""Qwen3 tool-call text: find and parse `<tool_call>{json}</tool_call>` blocks.

Shared by the rollout (one model turn at a time) and the reward (a whole response). Pure.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from holdem.table import Action

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
# Tool results and the model's own reasoning never count as calls.
_IGNORED_RE = re.compile(r"<tool_response>.*?</tool_response>|<think>.*?</think>", re.S)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedCalls:
    """The well-formed calls in order, and one message per malformed one."""

    calls: tuple[ToolCall, ...]
    errors: tuple[str, ...]


def parse_tool_calls(text: str) -> ParsedCalls:
    """Parse every tool call in `text` (tool responses and <think> blocks are skipped)."""
    if "<t" in text:
        text = _IGNORED_RE.sub("", text)
    calls: list[ToolCall] = []
    errors: list[str] = []
    end = 0
    for m in _CALL_RE.finditer(text):
        end = m.end()
        call = _parse_one(m.group(1))
        if isinstance(call, ToolCall):
            calls.append(call)
        else:
            errors.append(call)
    if TOOL_CALL_OPEN in text[end:]:
        errors.append("unterminated <tool_call> (no </tool_call>)")
    return ParsedCalls(tuple(calls), tuple(errors))


def _parse_one(body: str) -> ToolCall | str:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        return f"tool call is not valid JSON ({exc.msg} at position {exc.pos})"
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return 'tool call must be a JSON object with a string "name"'
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode the arguments
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return f'tool call {obj["name"]}: "arguments" is a string that is not JSON'
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return f'tool call {obj["name"]}: "arguments" must be a JSON object'
    return ToolCall(obj["name"], arguments)


def render_tool_call(name: str, arguments: dict) -> str:
    """The text Qwen3's chat template writes for one call."""
    return f'{TOOL_CALL_OPEN}\n{{"name": "{name}", "arguments": {json.dumps(arguments, ensure_ascii=False)}}}\n{TOOL_CALL_CLOSE}'


_ALLIN_WORDS = ("allin", "all in", "all-in", "all_in", "shove", "jam")


def action_from_arguments(arguments: dict) -> Action:
    """The Action a `make_action` call asks for. Raises ValueError with a message for the model."""
    kind = arguments.get("action")
    if not isinstance(kind, str):
        raise ValueError('make_action needs "action": one of fold, check, call, bet, raise')
    kind = kind.strip().lower()
    if kind in _ALLIN_WORDS:
        return Action("allin")
    if kind not in ("fold", "check", "call", "bet", "raise"):
        raise ValueError(f'make_action: unknown action {kind!r}; use fold, check, call, bet or raise')
    if kind not in ("bet", "raise"):
        return Action(kind)
    amount = arguments.get("amount")
    if isinstance(amount, str):
        try:
            amount = float(amount)
        except ValueError:
            raise ValueError(f"make_action: amount {amount!r} is not a number") from None
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f'make_action: {kind} needs a numeric "amount" (raise-to total in big blinds)')
    if not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"make_action: amount must be a positive number, got {amount!r}")
    return Action(kind, float(amount))

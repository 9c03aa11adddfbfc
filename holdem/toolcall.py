"""Qwen3 tool-call text: find and parse `<tool_call>{json}</tool_call>` blocks.

Shared by the rollout (one model turn at a time) and the reward (a whole response). Pure.

Model output is hostile input: everything here takes time linear in the text (plain
`str.find` scans, no regex backtracking over unclosed tags), JSON nesting is bounded before
`json.loads` sees it, and nothing raises on any string.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from holdem.table import Action

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
# Tool results and the model's own reasoning never count as calls: each block runs from its
# opener to the first closer after it (an opener without a closer hides nothing).
_RESPONSE_OPEN, _RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
UNTERMINATED = "unterminated <tool_call> (no </tool_call>)"
# At most this many '{' + '[' characters in one call body (and in a double-encoded
# "arguments" string), counted over the raw text, strings included: a C-speed count that
# bounds the JSON nesting, so json.loads never recurses deeply. A real call has two.
MAX_JSON_BRACKETS = 64
_QUOTE_CHARS = 40  # model-written text quoted back in an error message is cut to this


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
    """Parse every tool call in `text` (tool responses and <think> blocks are skipped).
    Never raises; linear in len(text)."""
    bodies, unterminated = call_bodies(text)
    calls: list[ToolCall] = []
    errors: list[str] = []
    for body in bodies:
        call = parse_call_body(body)
        if isinstance(call, ToolCall):
            calls.append(call)
        else:
            errors.append(call)
    if unterminated:
        errors.append(UNTERMINATED)
    return ParsedCalls(tuple(calls), tuple(errors))


def call_bodies(text: str) -> tuple[list[str], bool]:
    """The text between each `<tool_call>` and the first `</tool_call>` after it, in order,
    outside tool responses and <think> blocks; and whether an opener is left unclosed.
    (The same blocks as the regex `<tool_call>(.*?)</tool_call>`, found in linear time.)"""
    if not isinstance(text, str):
        return [], False
    stripped = strip_ignored(text)
    if stripped is text and TOOL_CALL_OPEN not in text:
        return [], False
    text = stripped
    bodies: list[str] = []
    find = text.find
    start = find(TOOL_CALL_OPEN)
    while start >= 0:
        begin = start + len(TOOL_CALL_OPEN)
        end = find(TOOL_CALL_CLOSE, begin)
        if end < 0:
            return bodies, True  # no closer after this opener, so none after any later one
        bodies.append(text[begin:end])
        start = find(TOOL_CALL_OPEN, end + len(TOOL_CALL_CLOSE))
    return bodies, False


def strip_ignored(text: str) -> str:
    """`text` without its <tool_response>…</tool_response> and <think>…</think> blocks: the
    leftmost block first, each ending at the first closer after its opener, as the regex
    `<tool_response>.*?</tool_response>|<think>.*?</think>` removes them. Linear: once an
    opener has no closer after it, no later opener of that kind can close either."""
    if "<t" not in text:
        return text
    find = text.find
    response, think = find(_RESPONSE_OPEN), find(_THINK_OPEN)
    if response < 0 and think < 0:
        return text
    pieces: list[str] = []
    kept = 0  # text[kept:] is not yet copied
    while response >= 0 or think >= 0:
        if response >= 0 and (think < 0 or response < think):
            end = find(_RESPONSE_CLOSE, response + len(_RESPONSE_OPEN))
            if end < 0:
                response = -1  # never closes again
                continue
            pieces.append(text[kept:response])
            kept = end + len(_RESPONSE_CLOSE)
        else:
            end = find(_THINK_CLOSE, think + len(_THINK_OPEN))
            if end < 0:
                think = -1
                continue
            pieces.append(text[kept:think])
            kept = end + len(_THINK_CLOSE)
        if 0 <= response < kept:
            response = find(_RESPONSE_OPEN, kept)
        if 0 <= think < kept:
            think = find(_THINK_OPEN, kept)
    if not pieces:
        return text
    pieces.append(text[kept:])
    return "".join(pieces)


def parse_call_body(body: str) -> ToolCall | str:
    """One call body as a ToolCall, or the message for the model saying what is wrong."""
    obj = _loads(body)
    if isinstance(obj, _Bad):
        return f"tool call is not valid JSON ({obj.message})"
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return 'tool call must be a JSON object with a string "name"'
    name = obj["name"]
    arguments = obj.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode the arguments
        arguments = _loads(arguments)
        if isinstance(arguments, _Bad):
            return f'tool call {quote_text(name)}: "arguments" is a string that is not JSON ({arguments.message})'
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return f'tool call {quote_text(name)}: "arguments" must be a JSON object'
    return ToolCall(name, arguments)


@dataclass(frozen=True)
class _Bad:
    message: str


def _loads(text: str) -> object:
    """json.loads with the nesting bounded first; a _Bad (never an exception) when it fails."""
    brackets = text.count("{") + text.count("[")
    if brackets > MAX_JSON_BRACKETS:
        return _Bad(f"{brackets} '{{' and '[' found, at most {MAX_JSON_BRACKETS} allowed: nesting is bounded")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return _Bad(f"{exc.msg} at position {exc.pos}")
    except (ValueError, RecursionError, OverflowError) as exc:  # e.g. an integer of > 4300 digits
        return _Bad(str(exc)[:80])


def quote_text(value: object) -> str:
    """repr of model-written text, cut short: error messages must not echo megabytes. The repr
    escapes newlines and control characters, so the quote is one line of printable text."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return f"<{type(value).__name__}>"
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 3] + "..."


def render_tool_call(name: str, arguments: dict) -> str:
    """The text Qwen3's chat template writes for one call."""
    return f'{TOOL_CALL_OPEN}\n{{"name": "{name}", "arguments": {json.dumps(arguments, ensure_ascii=False)}}}\n{TOOL_CALL_CLOSE}'


_ALLIN_WORDS = frozenset(("allin", "all in", "all-in", "all_in", "shove", "jam"))
_KINDS = frozenset(("fold", "check", "call", "bet", "raise"))


def action_from_arguments(arguments: dict) -> Action:
    """The Action a `make_action` call asks for. Raises ValueError (only) with a message for the model."""
    kind = arguments.get("action")
    if not isinstance(kind, str):
        raise ValueError('make_action needs "action": one of fold, check, call, bet, raise')
    kind = kind.strip().lower()
    if kind in _ALLIN_WORDS:
        return Action("allin")
    if kind not in _KINDS:
        raise ValueError(f"make_action: unknown action {quote_text(kind)}; use fold, check, call, bet or raise")
    if kind != "bet" and kind != "raise":
        return Action(kind)
    amount = arguments.get("amount")
    if isinstance(amount, str):
        try:
            amount = float(amount)
        except ValueError:
            raise ValueError(f"make_action: amount {quote_text(amount)} is not a number") from None
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise ValueError(f'make_action: {kind} needs a numeric "amount" (raise-to total in big blinds)')
    try:
        value = float(amount)
    except OverflowError:  # an integer beyond the float range
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"make_action: amount must be a positive number, got {quote_text(amount)}")
    return Action(kind, value)

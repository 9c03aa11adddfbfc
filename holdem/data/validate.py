"""Per-row validation for the data stage: two string fields, the label grammar, a parsable
instruction. Pure; the label grammar and the instruction parser are the domain's own
(`holdem.pokerbench.match_label`, `parse_instruction`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from holdem.data.source import REQUIRED_FIELDS, InvalidJson
from holdem.pokerbench import LABEL_GRAMMAR, match_label

_STREET_MARKERS = (("river", "\nThe river comes "), ("turn", "\nThe turn comes "), ("flop", "\nThe flop comes "))


@dataclass(frozen=True)
class GoodRow:
    instruction: str
    output: str
    street: str
    kind: str


@dataclass(frozen=True)
class BadRow:
    """`reason` is a short stable key for the stats; `detail` says what was seen."""

    reason: str
    detail: str


InstructionParser = Callable[[str], object]


def label_kind(label: str) -> str | None:
    """The action kind of a label written exactly in the grammar (`fold`, `bet`, `all in`, ...), else
    None. Kinds are spelled as in labels (`all in`): they key the stats."""
    action = match_label(label)
    if action is None:
        return None
    return "all in" if action.kind == "allin" else action.kind


def street_of(instruction: str) -> str:
    """The street of a PokerBench instruction, read from its board lines."""
    for street, marker in _STREET_MARKERS:
        if marker in instruction:
            return street
    return "preflop"


def check_row(obj: object, parse_instruction: InstructionParser | None) -> GoodRow | BadRow:
    """Validate one decoded row. `parse_instruction` raises ValueError for a bad instruction."""
    if isinstance(obj, InvalidJson):
        return BadRow("invalid_json", f"not valid JSON ({obj.message})")
    if not isinstance(obj, dict):
        return BadRow("not_an_object", f"row is a JSON {type(obj).__name__}, not an object")
    for field in REQUIRED_FIELDS:
        if field not in obj:
            return BadRow("missing_field", f"no '{field}' field (fields: {', '.join(map(str, obj)) or 'none'})")
        if not isinstance(obj[field], str):
            return BadRow("not_a_string", f"'{field}' is {type(obj[field]).__name__}, not a string")
    instruction, output = obj["instruction"], obj["output"]
    kind = label_kind(output)
    if kind is None:
        return BadRow("label_grammar", f"label {_short(output)} is outside {LABEL_GRAMMAR}")
    street = street_of(instruction)
    if parse_instruction is not None:
        try:
            state = parse_instruction(instruction)
        except ValueError as exc:
            return BadRow("instruction_unparsed", f"instruction does not parse ({_short(str(exc), 120)})")
        street = str(getattr(state, "street", street)).lower().split(".")[-1]
    return GoodRow(instruction, output, street, kind)


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")

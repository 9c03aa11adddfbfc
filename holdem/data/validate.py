"""Per-row validation for the data stage: two string fields, the label grammar, a parsable
instruction. Pure; the label grammar and the instruction parser are the domain's own
(`holdem.pokerbench.match_label`, `parse_instruction`). No input makes `check_row` raise: every
problem is a `BadRow` with a stable reason key and a detail saying what was seen."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from holdem.data.source import REQUIRED_FIELDS, InvalidRow
from holdem.pokerbench import LABEL_GRAMMAR, match_label
from holdem.table import STREETS

_STREET_MARKERS = (("river", "\nThe river comes "), ("turn", "\nThe turn comes "), ("flop", "\nThe flop comes "))
MAX_LABEL_CHARS = 64  # the longest grammatical label is ~20 characters


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
    if len(label) > MAX_LABEL_CHARS:
        return None
    return _label_kind(label)


# A data set has a few thousand distinct labels (`fold`, `bet 17`, ...): each is matched once.
@lru_cache(maxsize=4096)
def _label_kind(label: str) -> str | None:
    try:
        action = match_label(label)
    except (ValueError, OverflowError, ArithmeticError):
        return None
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
    checked = check_fields(obj, parse_instruction)
    return checked if isinstance(checked, BadRow) else GoodRow(*checked)


def check_fields(obj: object, parse_instruction: InstructionParser | None) -> tuple[str, str, str, str] | BadRow:
    """`check_row` with a good row as the tuple (instruction, output, street, kind): the data
    stage's per-row form (holdem.data.work), without a GoodRow per row."""
    instruction = output = None
    if type(obj) is dict:  # the usual row: a plain dict with two plain strings passes _check_object
        instruction, output = obj.get("instruction"), obj.get("output")
    if type(instruction) is not str or type(output) is not str:
        problem = _check_object(obj)
        if problem is not None:
            return problem
        instruction, output = obj["instruction"], obj["output"]  # type: ignore[index]
    kind = label_kind(output)
    if kind is None:
        return BadRow("label_grammar", f"label {_short(output)} is outside {LABEL_GRAMMAR}")
    if parse_instruction is None:
        return instruction, output, street_of(instruction), kind
    try:
        state = parse_instruction(instruction)
    except ValueError as exc:
        return BadRow("instruction_unparsed", f"instruction does not parse ({_short(str(exc), 120)})")
    except Exception as exc:  # the parser must not take the run down on a hostile row; name what it raised
        return BadRow("instruction_unparsed",
                      f"instruction does not parse ({type(exc).__name__}: {_short(str(exc), 120)})")
    # The parser's street when it has one (street_of, pure, is only needed when it has not).
    street = getattr(state, "street", _NO_STREET)
    if street is _NO_STREET:
        street = street_of(instruction)
    key = _STREET_KEYS.get(street) if type(street) is str else None  # "flop" is its own key
    if key is None:
        key = str(street).lower().split(".")[-1]
    return instruction, output, key, kind


_NO_STREET = object()
_STREET_KEYS = {street: street for street in STREETS}


def _check_object(obj: object) -> BadRow | None:
    """The row-shape checks: an object with both fields, each a string (None when it passes)."""
    if isinstance(obj, InvalidRow):
        return BadRow(obj.reason, obj.message)
    if not isinstance(obj, dict):
        return BadRow("not_an_object", f"row is a JSON {_json_type(obj)}, not an object")
    for name in REQUIRED_FIELDS:
        if name not in obj:
            fields = ", ".join(_short(str(k), 30)[1:-1] for k in list(obj)[:10]) or "none"
            return BadRow("missing_field", f"no '{name}' field (fields: {fields})")
        if not isinstance(obj[name], str):
            return BadRow("not_a_string", f"'{name}' is {_json_type(obj[name])}, not a string")
    return None


def _json_type(value: object) -> str:
    """Python type names as the existing messages spell them (`int`, `list`, `NoneType`)."""
    return type(value).__name__


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")

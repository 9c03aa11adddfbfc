"""PokerBench rows as game states: `parse_instruction`, the label grammar (`LABEL_RE`,
`parse_label`, `match_label`) and their inverses (`render_instruction`, `render_label`).

Pure and stdlib only. The template is described in ../shared/POKERBENCH.md; rendering a parsed
real row gives back the identical text (tests/unit/holdem/test_pokerbench.py checks it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from holdem.table import (
    STREETS,
    Action,
    LegalAction,
    PlayerAction,
    TableInfo,
    table_fields,
)

RANK_WORDS = {
    "Two": "2", "Three": "3", "Four": "4", "Five": "5", "Six": "6", "Seven": "7", "Eight": "8",
    "Nine": "9", "Ten": "T", "Jack": "J", "Queen": "Q", "King": "K", "Ace": "A",
}  # fmt: skip
SUIT_WORDS = {"Heart": "h", "Spade": "s", "Club": "c", "Diamond": "d"}
_RANK_NAMES = {v: k for k, v in RANK_WORDS.items()}
_SUIT_NAMES = {v: k for k, v in SUIT_WORDS.items()}
# Every spelling the card regex (`_CARD`) lets through -> its code: `parse_card` on those texts.
_CARD_CODES = {f"{rank} {of} {suit}": r + s for rank, r in RANK_WORDS.items() for of in ("of", "Of")
               for suit, s in SUIT_WORDS.items()}
NO_ACTION = "there has been no action yet"

HEADER = (
    "\n\nYou are a specialist in playing 6-handed No Limit Texas Holdem. The following will be a"
    " game scenario and you need to make the optimal decision.\n\nHere is a game summary:\n\n"
    "The small blind is 0.5 chips and the big blind is 1 chips. Everyone started with 100 chips.\n"
    "The player positions involved in this game are UTG, HJ, CO, BTN, SB, BB.\n"
)
FOOTER = (
    "\n\nDecide on an action based on the strength of your hand on this board, your position, and"
    " actions before you. Do not explain your answer.\nYour optimal action is:"
)

_CARD = r"(?:Two|Three|Four|Five|Six|Seven|Eight|Nine|Ten|Jack|Queen|King|Ace) [oO]f (?:Heart|Spade|Club|Diamond)"
_POS = r"(?:UTG|HJ|CO|BTN|SB|BB)"
_NUM = r"\d+(?:\.\d+)?"
_HERO_RE = re.compile(rf"In this hand, your position is ({_POS}), and your holding is \[({_CARD}) and ({_CARD})\]\.\n")
_PREFLOP_RE = re.compile(r"Before the flop, (.*?)\. Assume that all other players that is not mentioned folded\.\n")
# `([^\n]*)\.\n`: what `(.*?)\.\n` matches (`.` stops at a newline, so both end at the line's end
# and need a "." before it) without the lazy repeat's per-character retries.
_FLOP_RE = re.compile(rf"The flop comes ({_CARD}), ({_CARD}), and ({_CARD}), then ([^\n]*)\.\n")
_TURN_RE = re.compile(rf"The turn comes ({_CARD}), then ([^\n]*)\.\n")
_RIVER_RE = re.compile(rf"The river comes ({_CARD}), then ([^\n]*)\.\n")
_POT_RE = re.compile(rf"\nNow it is your turn to make a move\.\nTo remind you, the current pot size is ({_NUM}) chips, and your holding is \[({_CARD}) and ({_CARD})\]\.")
_ENTRY_RE = re.compile(rf"({_POS}) (fold|check|call|all in|(?:bet|raise) ({_NUM})(?: chips)?)")
# PokerBench's label grammar (POKERBENCH.md), `all in` included (it occurs in train rows). The one
# definition: the data stage validates labels with it, the reward and evaluation parse with it.
LABEL_RE = re.compile(rf"(fold|check|call|all in|(bet|raise) ({_NUM}))")
LABEL_GRAMMAR = "fold|call|check|all in|bet N|raise N"


@dataclass(frozen=True)
class GameState:
    """One PokerBench spot. Cards are strings like "Kh"; `history` holds one tuple of actions
    per street reached (the last one is the current street); `pot` is as stated (it often
    leaves out dead blinds). Stacks and legal actions are derived (everyone starts at 100)."""

    street: str
    hero_position: str
    hole_cards: tuple[str, str]
    board: tuple[str, ...]
    pot: float
    history: tuple[tuple[PlayerAction, ...], ...]
    to_call: float
    hero_committed: float
    hero_stack: float
    current_bet: float
    legal_actions: tuple[LegalAction, ...]

    @property
    def table(self) -> TableInfo:
        return TableInfo(self.current_bet, self.hero_committed, self.hero_stack, self.to_call, self.legal_actions)


def make_state(
    hero: str,
    hole_cards: tuple[str, str],
    board: tuple[str, ...],
    pot: float,
    history: tuple[tuple[PlayerAction, ...], ...],
) -> GameState:
    """Build a state from its stated parts, deriving the table (used by the parser and rowgen)."""
    current_bet, hero_committed, hero_stack, to_call, legal_actions = table_fields(hero, history)
    return GameState(
        street=STREETS[len(history) - 1],
        hero_position=hero,
        hole_cards=hole_cards,
        board=board,
        pot=pot,
        history=history,
        to_call=to_call,
        hero_committed=hero_committed,
        hero_stack=hero_stack,
        current_bet=current_bet,
        legal_actions=legal_actions,
    )


def parse_instruction(text: str) -> GameState:
    """Parse a PokerBench instruction. Raises ValueError naming the part that did not parse."""
    if not isinstance(text, str):
        raise ValueError(f"instruction: expected a string, got {type(text).__name__}")
    return _parse_instruction(text)


def parse_instruction_once(text: str) -> GameState:
    """`parse_instruction` without its cache of whole prompts, for callers that see each prompt
    about once (the data stage): there the cache would only cost (hashing each 1 KB text, evicting)
    and hold 16,384 prompts per process. The same checks, errors and states."""
    if not isinstance(text, str):
        raise ValueError(f"instruction: expected a string, got {type(text).__name__}")
    return _parse(text)


def _parse(text: str) -> GameState:
    hero_m = _HERO_RE.search(text)
    if hero_m is None:
        raise ValueError("instruction: could not find the hero line 'In this hand, your position is …'")
    pre_m = _PREFLOP_RE.search(text)
    if pre_m is None:
        raise ValueError("instruction: could not find the preflop line 'Before the flop, … folded.'")
    pot_m = _POT_RE.search(text)
    if pot_m is None:
        raise ValueError("instruction: could not find the pot line 'To remind you, the current pot size is N chips …'")
    hero, card1, card2 = hero_m.group(1, 2, 3)
    # The regexes only let through the 104 card spellings, so a dict lookup is `parse_card`.
    hole = (_CARD_CODES[card1], _CARD_CODES[card2])
    # The street lines are matched in place (pos/endpos) rather than on copies of the tail; their
    # action texts are parsed afterwards, in street order, before the check of the text after them:
    # the first error raised is the one the straightforward order raises.
    texts = [pre_m.group(1)]
    board: list[str] = []
    pos, end = pre_m.end(), pot_m.start()
    if end < pos:
        end = pos  # the pot line comes first: nothing between them (as the empty slice)
    m = _FLOP_RE.match(text, pos, end)
    if m is not None:
        flop1, flop2, flop3, actions = m.group(1, 2, 3, 4)
        board += (_CARD_CODES[flop1], _CARD_CODES[flop2], _CARD_CODES[flop3])
        texts.append(actions)
        pos = m.end()
        for regex in (_TURN_RE, _RIVER_RE):  # each only after the one before it
            m = regex.match(text, pos, end)
            if m is None:
                break
            card, actions = m.group(1, 2)
            board.append(_CARD_CODES[card])
            texts.append(actions)
            pos = m.end()
    history, table = _replay(hero, tuple(texts))
    if pos != end and (end - pos != 1 or text[pos] != "\n"):
        raise ValueError(f"instruction: unexpected text after the street lines: {text[pos:min(end, pos + 80)]!r}")
    current_bet, hero_committed, hero_stack, to_call, legal_actions = table
    # GameState(...) without the frozen dataclass's eleven object.__setattr__ calls: the instance
    # gets its fields as one dict; equal, hashable, printable and picklable alike (test_parse_fast.py).
    state = _new_object(GameState)
    _set_attribute(state, "__dict__", {
        "street": STREETS[len(history) - 1], "hero_position": hero, "hole_cards": hole, "board": tuple(board),
        "pot": float(pot_m.group(1)), "history": history, "to_call": to_call, "hero_committed": hero_committed,
        "hero_stack": hero_stack, "current_bet": current_bet, "legal_actions": legal_actions,
    })
    return state


_new_object, _set_attribute = object.__new__, object.__setattr__

# Prompts repeat across the n samples of a GRPO group: cache parsed states by text.
_parse_instruction = lru_cache(maxsize=16384)(_parse)


# Betting lines recur across rows far more than whole prompts do (about half of the rows of a
# generated PokerBench-sized set find theirs here): cache the history and the derived table by the
# hero and the action texts. Only lines that parse are cached; the results are immutable.
@lru_cache(maxsize=16384)
def _replay(
    hero: str, texts: tuple[str, ...]
) -> tuple[tuple[tuple[PlayerAction, ...], ...], tuple[float, float, float, float, tuple[LegalAction, ...]]]:
    """The history of the action texts (one per street, in order) and `table_fields` for it."""
    history = tuple(map(_parse_actions, texts, STREETS))
    return history, table_fields(hero, history)


def parse_card(words: str) -> str:
    """'King of Heart' / 'Ten Of Club' -> 'Kh' / 'Tc'."""
    try:
        rank, _, suit = words.split(" ")
        return RANK_WORDS[rank] + SUIT_WORDS[suit]
    except (ValueError, KeyError):
        raise ValueError(f"card: could not parse {words!r}") from None


# Action lines recur across rows (the same preflop line in thousands of spots): cache them by text.
# Only parsed lines are cached (a ValueError is raised again each time), and the tuples of shared
# immutable entries are immutable too.
@lru_cache(maxsize=16384)
def _parse_actions(text: str, street: str) -> tuple[PlayerAction, ...]:
    if text == NO_ACTION:
        return ()
    parts = text.split(", ")
    if len(parts) > 1:
        if not parts[-1].startswith("and "):
            raise ValueError(f"{street} actions: expected 'and' before the last action in {text!r}")
        parts[-1] = parts[-1][4:]
    entries = []
    for part in parts:
        entry = _parse_entry(part)
        if entry is None:
            raise ValueError(f"{street} actions: could not parse {part!r} in {text!r}")
        entries.append(entry)
    return tuple(entries)


# The same few hundred entries ("BB check", "HJ raise 2.0 chips") recur in every data set;
# entries are immutable, so one shared object per text is safe and saves the reward time.
@lru_cache(maxsize=8192)
def _parse_entry(part: str) -> PlayerAction | None:
    m = _ENTRY_RE.fullmatch(part)
    return None if m is None else PlayerAction(m.group(1), _action_from(m.group(2), m.group(3)))


def _action_from(verb: str, amount: str | None) -> Action:
    if verb == "all in":
        return Action("allin")
    if amount is not None:
        return Action(verb.split(" ", 1)[0], float(amount))
    return Action(verb)


def match_label(text: str) -> Action | None:
    """The Action of `text` written exactly in the label grammar, else None. No normalisation:
    each caller decides what it forgives (case, spaces, spellings) before calling."""
    m = LABEL_RE.fullmatch(text)
    if m is None:
        return None
    return _action_from(m.group(1) if m.group(2) is None else m.group(2), m.group(3))


def parse_label(text: str) -> Action:
    """Parse a PokerBench label (`fold`, `check`, `call`, `bet N`, `raise N`, `all in`), forgiving
    case, surrounding spaces and the tool spelling `allin`."""
    if not isinstance(text, str):
        raise ValueError(f"label: expected a string, got {type(text).__name__}")
    norm = text.strip().lower()
    action = match_label("all in" if norm == "allin" else norm)
    if action is None:
        raise ValueError(f"label: could not parse {text!r} (expected {LABEL_GRAMMAR})")
    return action


# ---- rendering (the inverse; used by holdem.rowgen) ----


def render_card(card: str, board: bool) -> str:
    return f"{_RANK_NAMES[card[0]]} {'Of' if board else 'of'} {_SUIT_NAMES[card[1]]}"


def format_amount(amount: float, street: str) -> str:
    """Preflop amounts keep their float form (`2.0`, `24.1`); postflop ones are integers."""
    if street != "preflop" and float(amount).is_integer():
        return str(int(amount))
    return str(float(amount))


def _render_entry(entry: PlayerAction, street: str, chips: bool) -> str:
    action = entry.action
    if action.kind == "allin":
        verb = "all in"
    elif action.amount is not None:
        verb = f"{action.kind} {format_amount(action.amount, street)}" + (" chips" if chips else "")
    else:
        verb = action.kind
    return f"{entry.position} {verb}"


def _render_actions(entries: tuple[PlayerAction, ...], street: str, chips: bool) -> str:
    parts = [_render_entry(entry, street, chips) for entry in entries]
    if not parts:
        return NO_ACTION
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def render_instruction(state: GameState) -> str:
    """The PokerBench instruction text for `state` (byte-compatible with the real rows)."""
    holding = f"[{render_card(state.hole_cards[0], False)} and {render_card(state.hole_cards[1], False)}]"
    postflop = len(state.history) > 1
    lines = [
        HEADER,
        f"In this hand, your position is {state.hero_position}, and your holding is {holding}.\n",
        f"Before the flop, {_render_actions(state.history[0], 'preflop', postflop)}."
        " Assume that all other players that is not mentioned folded.\n",
    ]
    streets = []
    board = [render_card(card, True) for card in state.board]
    for index, entries in enumerate(state.history[1:], start=1):
        name = STREETS[index]
        actions = _render_actions(entries, name, True)
        if index == 1:
            streets.append(f"The flop comes {board[0]}, {board[1]}, and {board[2]}, then {actions}.")
        else:
            streets.append(f"The {name} comes {board[index + 1]}, then {actions}.")
    if streets:
        lines.append("\n".join(streets) + "\n\n")
    lines.append(
        f"\nNow it is your turn to make a move.\nTo remind you, the current pot size is {state.pot!r}"
        f" chips, and your holding is {holding}."
    )
    lines.append(FOOTER)
    return "".join(lines)


def render_label(action: Action, street: str) -> str:
    if action.kind == "allin":
        return "all in"
    if action.amount is None:
        return action.kind
    return f"{action.kind} {format_amount(action.amount, street)}"

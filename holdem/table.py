"""The poker domain's action type (`Action`, used by the reward, the tools, the data stage and
evaluation alike) and the table arithmetic of a PokerBench spot: stacks, the amount to call and
the legal actions.

Pure and stdlib only. Everyone starts with 100 chips, blinds are 0.5/1, amounts are chips
(= big blinds) and bet/raise amounts are raise-to totals for the current street, as in
PokerBench labels.
"""

from __future__ import annotations

from dataclasses import dataclass

STARTING_STACK = 100.0
SMALL_BLIND = 0.5
BIG_BLIND = 1.0
PREFLOP_ORDER = ("UTG", "HJ", "CO", "BTN", "SB", "BB")
POSTFLOP_ORDER = ("SB", "BB", "UTG", "HJ", "CO", "BTN")
STREETS = ("preflop", "flop", "turn", "river")
# Amounts within this many chips of an all-in count as the all-in: PokerBench truncates
# fractional all-ins (`raise 74` for an all-in of 74.7).
ALLIN_TOLERANCE = 1.0
_EPS = 1e-6


@dataclass(frozen=True)
class Action:
    """One decision. `amount` is the raise-to total for bet/raise, None otherwise (and for
    `allin`, whose size follows from the stack)."""

    kind: str
    amount: float | None = None


@dataclass(frozen=True)
class PlayerAction:
    """One entry of the stated history: who did what."""

    position: str
    action: Action


@dataclass(frozen=True)
class LegalAction:
    """A legal kind with its amount range: raise-to totals for bet/raise, the chips to add
    for call, 0 for fold/check."""

    kind: str
    min_amount: float
    max_amount: float


@dataclass(frozen=True)
class TableInfo:
    """What the hero faces, derived from the history (not stated in the prompt)."""

    current_bet: float  # highest raise-to total on this street
    hero_committed: float  # hero's chips already in on this street
    hero_stack: float  # hero's chips behind, before acting
    to_call: float  # chips hero must add to call (capped at the stack)
    legal_actions: tuple[LegalAction, ...]


@dataclass
class _Street:
    """Mutable bookkeeping while replaying one street."""

    committed: dict[str, float]
    current_bet: float
    last_raise: float


def derive_table(
    hero: str, history: tuple[tuple[PlayerAction, ...], ...]
) -> TableInfo:
    """Replay `history` (one tuple of actions per street reached, the last is the current
    street) and derive what `hero` faces. Lenient: the stated history is trusted as is."""
    spent = {pos: 0.0 for pos in PREFLOP_ORDER}  # chips put in on earlier streets
    folded: set[str] = set()
    street = _Street({}, 0.0, BIG_BLIND)
    for index, actions in enumerate(history):
        street = _open_street(index)
        for entry in actions:
            _apply(street, spent, folded, entry)
        if index < len(history) - 1:
            for pos, chips in street.committed.items():
                spent[pos] += chips
    committed = street.committed.get(hero, 0.0)
    stack = max(0.0, STARTING_STACK - spent[hero] - committed)
    to_call = min(max(0.0, street.current_bet - committed), stack)
    opponents_can_act = _opponents_with_chips(hero, history, spent, street, folded)
    legal = _legal_actions(street, committed, stack, to_call, opponents_can_act)
    return TableInfo(street.current_bet, committed, stack, to_call, legal)


def _open_street(index: int) -> _Street:
    if index == 0:
        return _Street({"SB": SMALL_BLIND, "BB": BIG_BLIND}, BIG_BLIND, BIG_BLIND)
    return _Street({}, 0.0, BIG_BLIND)


def _apply(street: _Street, spent: dict[str, float], folded: set[str], entry: PlayerAction) -> None:
    pos, action = entry.position, entry.action
    all_in_total = STARTING_STACK - spent[pos]
    if action.kind == "fold":
        folded.add(pos)
        return
    if action.kind == "check":
        return
    if action.kind == "call":
        street.committed[pos] = min(street.current_bet, all_in_total)
        return
    total = all_in_total if action.kind == "allin" else min(float(action.amount or 0.0), all_in_total)
    street.committed[pos] = max(total, street.committed.get(pos, 0.0))
    increment = total - street.current_bet
    if increment >= street.last_raise - _EPS:
        street.last_raise = increment
    street.current_bet = max(street.current_bet, total)


def _opponents_with_chips(
    hero: str,
    history: tuple[tuple[PlayerAction, ...], ...],
    spent: dict[str, float],
    street: _Street,
    folded: set[str],
) -> bool:
    """Whether some opponent still in the hand has chips behind (else raising is pointless
    and not allowed: hero may only call or fold)."""
    in_hand = {entry.position for actions in history for entry in actions} - folded
    acted = {entry.position for entry in history[0]}
    if len(history) == 1 and hero not in acted:
        # First preflop orbit: players after the hero who have not acted yet are still in (the
        # blinds included); everyone else who is not mentioned folded.
        after = PREFLOP_ORDER[PREFLOP_ORDER.index(hero) + 1 :]
        in_hand |= {pos for pos in after if pos not in acted}
    in_hand.discard(hero)
    return any(
        STARTING_STACK - spent[pos] - street.committed.get(pos, 0.0) > _EPS for pos in in_hand
    )


def _legal_actions(
    street: _Street, committed: float, stack: float, to_call: float, opponents_can_act: bool
) -> tuple[LegalAction, ...]:
    legal: list[LegalAction] = []
    if to_call > _EPS:
        legal.append(LegalAction("fold", 0.0, 0.0))
        legal.append(LegalAction("call", to_call, to_call))
    else:
        legal.append(LegalAction("check", 0.0, 0.0))
    all_in = committed + stack
    if stack > to_call + _EPS and opponents_can_act:
        if street.current_bet > _EPS:
            min_to = min(street.current_bet + street.last_raise, all_in)
            legal.append(LegalAction("raise", min_to, all_in))
        else:
            legal.append(LegalAction("bet", min(BIG_BLIND, all_in), all_in))
    return tuple(legal)


def resolve_allin(table: TableInfo, action: Action) -> Action:
    """Turn `allin` into the concrete bet/raise (or call) it means in this spot."""
    if action.kind != "allin":
        return action
    for legal in table.legal_actions:
        if legal.kind in ("bet", "raise"):
            return Action(legal.kind, legal.max_amount)
    return Action("call")


def check_action(table: TableInfo, action: Action) -> str | None:
    """None when `action` is legal here, else the reason. Bet and raise to the same total
    are treated as one (PokerBench writes `raise N` where no bet is open), and an amount
    within ALLIN_TOLERANCE below the all-in counts as the all-in."""
    action = resolve_allin(table, action)
    kinds = {legal.kind: legal for legal in table.legal_actions}
    if action.kind in ("bet", "raise"):
        legal = kinds.get("bet") or kinds.get("raise")
        if legal is None:
            return f"{action.kind} is not possible here (legal: {_names(table)})"
        if action.amount is None:
            return f"{action.kind} needs an amount"
        amount = float(action.amount)
        if amount > legal.max_amount + _EPS:
            return f"{action.kind} {amount:g} exceeds the stack (all-in is {legal.max_amount:g})"
        if amount < legal.min_amount - _EPS and amount < legal.max_amount - ALLIN_TOLERANCE:
            return f"{action.kind} {amount:g} is below the minimum {legal.min_amount:g}"
        return None
    if action.kind not in kinds:
        return f"{action.kind} is not legal here (legal: {_names(table)})"
    return None


def _names(table: TableInfo) -> str:
    return ", ".join(legal.kind for legal in table.legal_actions)

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


_FOLD = LegalAction("fold", 0.0, 0.0)  # immutable: every table shares these two
_CHECK = LegalAction("check", 0.0, 0.0)


def derive_table(
    hero: str, history: tuple[tuple[PlayerAction, ...], ...]
) -> TableInfo:
    """Replay `history` (one tuple of actions per street reached, the last is the current
    street) and derive what `hero` faces. Lenient: the stated history is trusted as is."""
    return TableInfo(*table_fields(hero, history))


def table_fields(
    hero: str, history: tuple[tuple[PlayerAction, ...], ...]
) -> tuple[float, float, float, float, tuple[LegalAction, ...]]:
    """`derive_table`'s fields in TableInfo's order, without building the TableInfo (the parser
    copies them into its GameState).

    One pass with local variables (this runs once per data-set row). The rules, street by street:
    the blinds open preflop (SB 0.5, BB 1 in, bet 1); a call brings the caller to the current bet
    (capped at the chips left); a bet/raise/all-in commits its raise-to total (capped at the chips
    left, never below what the player already has in) and, when it raises by at least the last
    full raise, sets the new minimum raise; chips committed on a street count as spent when the
    next street opens. tests/unit/holdem/test_parse_fast.py checks it against that rule set
    written out step by step."""
    # min(a, b) and max(a, b) are written `b if b < a else a` / `b if b > a else a`: the same
    # value (the builtins keep the first argument on ties and NaN) without a call.
    spent = {"UTG": 0.0, "HJ": 0.0, "CO": 0.0, "BTN": 0.0, "SB": 0.0, "BB": 0.0}  # earlier streets
    folded: set[str] = set()
    mentioned: set[str] = set()  # positions with an action on some street
    committed: dict[str, float] = {}  # on the current street
    current_bet, last_raise = 0.0, BIG_BLIND
    last = len(history) - 1
    for index, actions in enumerate(history):
        if index == 0:
            committed, current_bet = {"SB": SMALL_BLIND, "BB": BIG_BLIND}, BIG_BLIND
        else:
            committed, current_bet = {}, 0.0
        last_raise = BIG_BLIND
        for entry in actions:
            pos, action = entry.position, entry.action
            kind = action.kind
            mentioned.add(pos)
            all_in_total = STARTING_STACK - spent[pos]
            if kind == "fold":
                folded.add(pos)
            elif kind == "call":
                committed[pos] = all_in_total if all_in_total < current_bet else current_bet
            elif kind != "check":
                if kind == "allin":
                    total = all_in_total
                else:
                    total = float(action.amount or 0.0)
                    if all_in_total < total:
                        total = all_in_total
                before = committed.get(pos, 0.0)
                committed[pos] = before if before > total else total
                increment = total - current_bet
                if increment >= last_raise - _EPS:
                    last_raise = increment
                if total > current_bet:
                    current_bet = total
        if index < last:
            for pos, chips in committed.items():
                spent[pos] += chips
    hero_committed = committed.get(hero, 0.0)
    stack = STARTING_STACK - spent[hero] - hero_committed
    if not stack > 0.0:
        stack = 0.0
    to_call = current_bet - hero_committed
    if not to_call > 0.0:
        to_call = 0.0
    if stack < to_call:
        to_call = stack
    all_in = hero_committed + stack
    if to_call > _EPS:
        legal: tuple[LegalAction, ...] = (_FOLD, LegalAction("call", to_call, to_call))
    else:
        legal = (_CHECK,)
    # Raising needs chips beyond the call and an opponent still in the hand with chips behind
    # (else hero may only call or fold); the second test runs only when the first passes.
    if stack > to_call + _EPS:
        # Opponents in the hand: everyone mentioned who did not fold; in the first preflop orbit
        # (hero not mentioned yet) also the players after the hero who have not acted yet (the
        # blinds included): everyone else who is not mentioned folded.
        in_hand = mentioned
        if len(history) == 1 and hero not in mentioned:
            in_hand = mentioned.union(PREFLOP_ORDER[PREFLOP_ORDER.index(hero) + 1 :])
        elif not history:
            history[0]  # an empty history raises IndexError here, as it always has
        for pos in in_hand:
            if pos != hero and pos not in folded and STARTING_STACK - spent[pos] - committed.get(pos, 0.0) > _EPS:
                if current_bet > _EPS:
                    min_to = current_bet + last_raise
                    legal += (LegalAction("raise", all_in if all_in < min_to else min_to, all_in),)
                else:
                    legal += (LegalAction("bet", all_in if all_in < BIG_BLIND else BIG_BLIND, all_in),)
                break
    return current_bet, hero_committed, stack, to_call, legal


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

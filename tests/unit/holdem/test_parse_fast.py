"""The fast paths of the PokerBench parser and the table arithmetic, against a straightforward
reference: the parser and `derive_table` as first written (regexes on copies of the text, one
`parse_card` per card, the replay through a mutable street object, GameState(...) built by the
dataclass). Same states, same errors (type and message), on real, generated and hostile texts and
on arbitrary histories."""

from __future__ import annotations

import dataclasses
import json
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdem import pokerbench
from holdem.pokerbench import (
    _CARD,
    _CARD_CODES,
    _HERO_RE,
    _POT_RE,
    _PREFLOP_RE,
    NO_ACTION,
    RANK_WORDS,
    SUIT_WORDS,
    GameState,
    parse_card,
    parse_instruction,
    parse_instruction_once,
)
from holdem.rowgen import generate_rows
from holdem.table import (
    BIG_BLIND,
    PREFLOP_ORDER,
    SMALL_BLIND,
    STARTING_STACK,
    STREETS,
    Action,
    LegalAction,
    PlayerAction,
    TableInfo,
    derive_table,
    table_fields,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "pokerbench" / "examples.jsonl"

# ---- the reference: the parser as first written ----

# unchanged in the product: _HERO_RE, _PREFLOP_RE, _POT_RE, _ENTRY_RE (imported); the street lines
# as first written, with the lazy `(.*?)`:
_FLOP_RE = re.compile(rf"The flop comes ({_CARD}), ({_CARD}), and ({_CARD}), then (.*?)\.\n")
_TURN_RE = re.compile(rf"The turn comes ({_CARD}), then (.*?)\.\n")
_RIVER_RE = re.compile(rf"The river comes ({_CARD}), then (.*?)\.\n")


def reference_parse(text: str) -> GameState:
    if not isinstance(text, str):
        raise ValueError(f"instruction: expected a string, got {type(text).__name__}")
    hero_m = _search(_HERO_RE, text, "the hero line 'In this hand, your position is …'")
    pre_m = _search(_PREFLOP_RE, text, "the preflop line 'Before the flop, … folded.'")
    pot_m = _search(_POT_RE, text, "the pot line 'To remind you, the current pot size is N chips …'")
    hole = (parse_card(hero_m.group(2)), parse_card(hero_m.group(3)))
    history = [_actions(pre_m.group(1), "preflop")]
    board: list[str] = []
    tail = text[pre_m.end() : pot_m.start()]
    for name, regex, n_cards in (("flop", _FLOP_RE, 3), ("turn", _TURN_RE, 1), ("river", _RIVER_RE, 1)):
        m = regex.match(tail)
        if m is None:
            break
        board.extend(parse_card(m.group(i + 1)) for i in range(n_cards))
        history.append(_actions(m.group(n_cards + 1), name))
        tail = tail[m.end() :]
    if tail not in ("", "\n"):
        raise ValueError(f"instruction: unexpected text after the street lines: {tail[:80]!r}")
    hero, history_t = hero_m.group(1), tuple(history)
    table = reference_derive_table(hero, history_t)
    return GameState(STREETS[len(history_t) - 1], hero, hole, tuple(board), float(pot_m.group(1)), history_t,
                     table.to_call, table.hero_committed, table.hero_stack, table.current_bet, table.legal_actions)


def _search(regex, text, what):
    m = regex.search(text)
    if m is None:
        raise ValueError(f"instruction: could not find {what}")
    return m


# The action lines: the product's parser without its cache (only the cache is new there).
_actions = pokerbench._parse_actions.__wrapped__


# ---- the reference: derive_table as first written ----


@dataclass
class _Street:
    committed: dict
    current_bet: float
    last_raise: float


def reference_derive_table(hero, history) -> TableInfo:
    spent = {pos: 0.0 for pos in PREFLOP_ORDER}
    folded: set[str] = set()
    street = _Street({}, 0.0, BIG_BLIND)
    for index, actions in enumerate(history):
        street = _Street({"SB": SMALL_BLIND, "BB": BIG_BLIND}, BIG_BLIND, BIG_BLIND) if index == 0 else _Street({}, 0.0, BIG_BLIND)
        for entry in actions:
            _apply(street, spent, folded, entry)
        if index < len(history) - 1:
            for pos, chips in street.committed.items():
                spent[pos] += chips
    committed = street.committed.get(hero, 0.0)
    stack = max(0.0, STARTING_STACK - spent[hero] - committed)
    to_call = min(max(0.0, street.current_bet - committed), stack)
    opponents_can_act = _opponents_with_chips(hero, history, spent, street, folded)
    legal: list[LegalAction] = []
    if to_call > 1e-6:
        legal += [LegalAction("fold", 0.0, 0.0), LegalAction("call", to_call, to_call)]
    else:
        legal.append(LegalAction("check", 0.0, 0.0))
    all_in = committed + stack
    if stack > to_call + 1e-6 and opponents_can_act:
        if street.current_bet > 1e-6:
            legal.append(LegalAction("raise", min(street.current_bet + street.last_raise, all_in), all_in))
        else:
            legal.append(LegalAction("bet", min(BIG_BLIND, all_in), all_in))
    return TableInfo(street.current_bet, committed, stack, to_call, tuple(legal))


def _apply(street, spent, folded, entry) -> None:
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
    if increment >= street.last_raise - 1e-6:
        street.last_raise = increment
    street.current_bet = max(street.current_bet, total)


def _opponents_with_chips(hero, history, spent, street, folded) -> bool:
    in_hand = {entry.position for actions in history for entry in actions} - folded
    acted = {entry.position for entry in history[0]}
    if len(history) == 1 and hero not in acted:
        after = PREFLOP_ORDER[PREFLOP_ORDER.index(hero) + 1 :]
        in_hand |= {pos for pos in after if pos not in acted}
    in_hand.discard(hero)
    return any(STARTING_STACK - spent[pos] - street.committed.get(pos, 0.0) > 1e-6 for pos in in_hand)


# ---- comparing ----


def outcome(fn, *args) -> str:
    """What a call gives: the repr of its value (repr tells 1 from 1.0 and -0.0 from 0.0, and
    nan equals itself), or its exception's type and message."""
    try:
        return repr(fn(*args))
    except Exception as exc:  # noqa: BLE001 - the outcome under test
        return f"{type(exc).__name__}: {exc}"


def assert_same_parse(text: object) -> None:
    expected = outcome(reference_parse, text)
    assert outcome(parse_instruction, text) == expected
    assert outcome(parse_instruction_once, text) == expected


REAL = [json.loads(line)["instruction"] for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]
BASES = REAL + [row["instruction"] for row in generate_rows(400, seed=21)]
PIECES = [
    "UTG", "HJ", "CO", "BTN", "SB", "BB", "XX", "fold", "check", "call", "bet", "raise", "all in", "chips", "and",
    ",", ".", "\n", " ", "", ".\n", "2.0", "0", "9" * 40, "1e5", "-3", "Ace", "Ten", "of", "Of", "Heart", "Eleven",
    NO_ACTION, "\r", "\x00", "é", "\ud800",
    "The flop comes Two Of Club, Three Of Club, and Four Of Club, then BB check.\n",
    "The turn comes Two Of Club, then BB check, and SB bet 3 chips.\n",
    "The river comes Ace Of Heart, then SB bet 3 chips.\n",
    "Before the flop, UTG call. Assume that all other players that is not mentioned folded.\n",
    "In this hand, your position is BB, and your holding is [Ace of Club and Ace of Heart].\n",
    "\nNow it is your turn to make a move.\nTo remind you, the current pot size is 3.0 chips, and your holding is"
    " [Ace of Club and Ace of Heart].",
]


def mutate(rng: random.Random, text: str) -> str:
    """One to three edits of the kinds that break (or nearly break) a prompt."""
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randint(0, 12))
        if op == 0:
            words = text.split(" ")
            words[rng.randrange(len(words))] = rng.choice(PIECES)
            text = " ".join(words)
        elif op == 1:
            text = text[:i] + text[j:]
        elif op == 2:
            lines = text.split("\n")
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            how = rng.randrange(3)
            if how == 0:
                lines[a], lines[b] = lines[b], lines[a]
            elif how == 1:
                lines.insert(a, lines[b])
            else:
                del lines[a]
            text = "\n".join(lines)
        elif op == 3:
            text = text[:i] + rng.choice(PIECES) + text[i:]
        elif op == 4:
            text = text[:i]
        elif op == 5:  # the pot line moved (even before the preflop line)
            k = text.find("\nNow it is")
            if k >= 0:
                pot = text[k : text.find("]", k) + 2]
                text = text.replace(pot, "")
                text = text[:i] + pot + text[i:]
        elif op == 6:
            text = text.replace(" chips", "", 1) if rng.random() < 0.5 else text.replace(", and ", ", ", 1)
        else:
            text = text.replace("\n\n\nNow", "\n\nNow") if rng.random() < 0.5 else text.replace(".\n\nNow", ".\n\n\n\nNow")
    return text


def test_real_and_generated_rows_parse_as_the_reference_does():
    for text in BASES:
        assert_same_parse(text)
        assert parse_instruction(text) == reference_parse(text)


def test_hostile_texts_parse_or_fail_as_the_reference_does():
    rng = random.Random(7)
    accepted = 0
    for _ in range(6000):
        text = mutate(rng, rng.choice(BASES))
        assert_same_parse(text)
        accepted += not outcome(reference_parse, text).startswith("ValueError")
    assert 500 < accepted < 5500  # both sides of the line are exercised


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASES), st.integers(0, 2**32), st.text(max_size=30))
def test_any_edit_parses_or_fails_as_the_reference_does(base, seed, junk):
    text = mutate(random.Random(seed), base)
    assert_same_parse(text)
    cut = seed % (len(text) + 1)
    assert_same_parse(text[:cut] + junk + text[cut:])


@pytest.mark.parametrize("value", [None, 5, b"bytes", ["list"]])
def test_non_strings_are_refused_alike(value):
    assert_same_parse(value)


@pytest.mark.parametrize(
    "line",
    ["then BB check.\n", "then A.B.\n", "then A\n.\n", "then BB check.\r\n", "then .\n", "then ..\n", "then BB check.",
     "then BB check.\n.\n", "then BB check\n", "then \n.\n"],
)
def test_street_regexes_match_what_the_lazy_ones_match(line):
    card = "Two Of Club"
    for lazy, fast, head in ((_FLOP_RE, pokerbench._FLOP_RE, f"The flop comes {card}, {card}, and {card}, "),
                             (_TURN_RE, pokerbench._TURN_RE, f"The turn comes {card}, "),
                             (_RIVER_RE, pokerbench._RIVER_RE, f"The river comes {card}, ")):
        text = "x" + head + line + "tail"
        for end in range(len(text) - 4, len(text) + 1):
            want, got = lazy.match(text, 1, end), fast.match(text, 1, end)
            assert (want and (want.span(), want.groups())) == (got and (got.span(), got.groups()))


def test_card_table_is_parse_card_on_every_spelling_the_card_regex_allows():
    spellings = [f"{r} {of} {s}" for r in RANK_WORDS for of in ("of", "Of") for s in SUIT_WORDS]
    assert sorted(_CARD_CODES) == sorted(spellings)
    card_re = re.compile(_CARD)
    for words in spellings:
        assert card_re.fullmatch(words) and _CARD_CODES[words] == parse_card(words)
    for near in ("two of Heart", "Two OF Heart", "Two of Hearts", "Two  of Heart", "Two of heart"):
        assert card_re.fullmatch(near) is None


def test_parsed_states_are_ordinary_game_states():
    """The parser builds GameState without its __init__: the result is indistinguishable."""
    for text in BASES[:50]:
        state = parse_instruction_once(text)
        names = [f.name for f in dataclasses.fields(GameState)]
        assert list(vars(state)) == names  # a new field must be added to the parser too
        twin = GameState(**{name: getattr(state, name) for name in names})
        assert type(state) is GameState and state == twin and hash(state) == hash(twin) and repr(state) == repr(twin)
        assert pickle.loads(pickle.dumps(state)) == twin
        assert dataclasses.replace(state, pot=1.0).pot == 1.0 and dataclasses.asdict(state) == dataclasses.asdict(twin)
        with pytest.raises(dataclasses.FrozenInstanceError):
            state.pot = 2.0  # type: ignore[misc]
        assert state.table == reference_derive_table(state.hero_position, state.history)


def test_a_failed_street_is_not_cached_and_cached_lines_give_equal_states():
    good = BASES[3]  # a turn row
    bad = good.replace("BB raise 10 chips", "BB raises 10 chips")
    for _ in range(2):
        assert outcome(parse_instruction_once, bad) == outcome(reference_parse, bad)
        assert parse_instruction_once(good) == reference_parse(good)


# ---- derive_table / table_fields on arbitrary histories ----

KINDS = ("fold", "check", "call", "bet", "raise", "allin", "limp")
AMOUNTS = (None, 0, 0.0, -0.0, 1, 2.5, 3.0, 7, 99.5, 100.0, 150.0, 1e-9, -5.0, float("inf"), float("nan"))
POSITIONS = PREFLOP_ORDER + ("XX",)


def random_history(rng: random.Random) -> tuple[tuple[PlayerAction, ...], ...]:
    streets = rng.randint(0 if rng.random() < 0.03 else 1, 4)
    return tuple(
        tuple(
            PlayerAction(rng.choice(POSITIONS) if rng.random() < 0.03 else rng.choice(PREFLOP_ORDER),
                         Action(rng.choice(KINDS), rng.choice(AMOUNTS)))
            for _ in range(rng.randint(0, 7))
        )
        for _ in range(streets)
    )


def test_derive_table_matches_the_reference_on_arbitrary_histories():
    rng = random.Random(3)
    for _ in range(20000):
        hero = rng.choice(POSITIONS) if rng.random() < 0.03 else rng.choice(PREFLOP_ORDER)
        history = random_history(rng)
        expected = outcome(reference_derive_table, hero, history)
        assert outcome(derive_table, hero, history) == expected
        if not expected.startswith(("KeyError", "IndexError", "ValueError")):
            table = derive_table(hero, history)
            assert repr(table_fields(hero, history)) == repr(tuple(getattr(table, f.name) for f in dataclasses.fields(table)))


def test_derive_table_on_list_histories_and_the_empty_history():
    history = [[PlayerAction("UTG", Action("raise", 3))], [PlayerAction("BB", Action("bet", 5))]]
    assert outcome(derive_table, "BB", history) == outcome(reference_derive_table, "BB", history)
    for hero in ("BB", "XX"):
        for empty in ((), []):
            assert outcome(derive_table, hero, empty) == outcome(reference_derive_table, hero, empty)

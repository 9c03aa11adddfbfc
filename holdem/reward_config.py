"""Every weight of the layered reward (holdem/reward.py), with the reason for each.

score = clamp(ACTION_FLOOR + (1 - ACTION_FLOOR) * quality - penalties, MIN_SCORE, MAX_SCORE)
quality = (1 - KIND_DISTANCE[kind][label kind]) * sizing   (sizing only when both are sized)
"""

from __future__ import annotations

# The score range slime sees (--reward-key score). GRPO normalises per group, so only the
# order matters; the range is fixed so logged means are comparable across runs.
MIN_SCORE = -1.0
MAX_SCORE = 1.0

# A well-formed, legal but totally wrong action. Above MIN_SCORE so that "followed the
# protocol" is always better than "did not", below 0 so a wrong action is never neutral.
ACTION_FLOOR = -0.5

# Distance between action kinds (0 = same, 1 = opposite), symmetric. `allin` is resolved to
# the bet/raise (or call) it means in the spot before lookup. Rows are the model's action.
KIND_DISTANCE: dict[str, dict[str, float]] = {
    # fold is the opposite of every continuing action; folding where a check was the answer
    # is the costliest passive mistake (it gives up a free card).
    "fold": {"fold": 0.0, "check": 1.0, "call": 0.8, "bet": 1.0, "raise": 1.0},
    # check vs call: both passive, but they are never legal in the same spot, so a mismatch
    # means the model misread the state.
    "check": {"fold": 1.0, "check": 0.0, "call": 0.6, "bet": 0.8, "raise": 0.8},
    # call vs raise: both continue; calling where a raise was right keeps some value.
    "call": {"fold": 0.8, "check": 0.6, "call": 0.0, "bet": 0.7, "raise": 0.6},
    # bet vs raise to the same total are the same chips in the pot: PokerBench itself writes
    # `raise N` where no bet is open, so the two are nearly equivalent.
    "bet": {"fold": 1.0, "check": 0.8, "call": 0.7, "bet": 0.0, "raise": 0.05},
    "raise": {"fold": 1.0, "check": 0.8, "call": 0.6, "bet": 0.05, "raise": 0.0},
}

# Sizing: similarity = max(0, 1 - |ln(amount / label amount)| / SIZE_LOG_SPAN). A factor of
# 3 off (ln 3) earns nothing; 10 % off keeps ~91 %. Continuous in the ratio, so GRPO sees a
# gradient towards the right size rather than a cliff.
SIZE_LOG_SPAN = 1.0986122886681098  # ln(3)
# Even a badly sized bet of the right kind keeps this share of the kind credit: choosing to
# be aggressive at all was the bigger decision.
SIZE_FLOOR = 0.4
# All-ins (and any two amounts near the stack) within this many chips are equal: PokerBench
# truncates fractional all-ins (`raise 74` for 74.7).
ALLIN_TOLERANCE = 1.0

# Protocol layer.
ILLEGAL_PENALTY = 0.3  # the final action is not legal in the parsed state (and is not the label)
PROTOCOL_ERROR_PENALTY = 0.1  # per malformed call, unknown tool, extra make_action, late call
PROTOCOL_PENALTY_CAP = 0.3  # so a messy but correct episode still beats a clean wrong one

# Efficiency layer: analysis is welcome, dithering is not.
FREE_TURNS = 3  # e.g. get_game_state, hand_strength, make_action
TURN_PENALTY = 0.05  # per assistant turn beyond FREE_TURNS
FREE_TOKENS = 512  # model tokens (estimated, see CHARS_PER_TOKEN) before a penalty starts
TOKEN_PENALTY_PER_100 = 0.02  # per 100 estimated tokens beyond FREE_TOKENS
EFFICIENCY_PENALTY_CAP = 0.2
# The reward sees only the response text, not token ids: tokens are estimated from the
# model-written characters (Qwen3 averages about 4 characters per token on this text).
CHARS_PER_TOKEN = 4.0

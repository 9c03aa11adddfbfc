"""The module the profile hands to slime: one import path for all three plug-ins.

    --custom-generate-function-path holdem.generate_with_holdem.generate
    --custom-rm-path holdem.generate_with_holdem.reward_func
    --custom-rollout-log-function-path holdem.generate_with_holdem.log_rollout_data
"""

from __future__ import annotations

from holdem.metrics import log_rollout_data
from holdem.reward import reward_func
from holdem.rollout import generate

__all__ = ["generate", "log_rollout_data", "reward_func"]

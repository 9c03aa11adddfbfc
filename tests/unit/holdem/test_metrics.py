"""Rollout metrics and the plug-in entry module."""

from __future__ import annotations

import inspect
import logging
import types

import pytest

import holdem.generate_with_holdem as entry
from holdem.metrics import compute_rollout_metrics, log_rollout_data
from holdem.reward import reward_func, score_response
from holdem.rollout import generate
from holdem.toolcall import render_tool_call
from demo.sample_standin import Sample


def _sample(real_row: dict, response: str, turns: int, tools: dict, end: str) -> Sample:
    sample = Sample(prompt=real_row["instruction"], label=real_row["output"], response=response)
    sample.reward = score_response(sample.prompt, sample.label, response)
    sample.metadata = {"holdem": {"turns": turns, "tools": tools, "end": end}}
    return sample


@pytest.fixture
def samples(real_rows):
    fold = render_tool_call("make_action", {"action": "fold"}) + "<|im_end|>"
    bet = render_tool_call("make_action", {"action": "bet", "amount": 2}) + "<|im_end|>"
    return [
        _sample(real_rows[3], fold, 2, {"get_game_state": 1, "make_action": 1}, "action"),
        _sample(real_rows[2], bet, 1, {"make_action": 1}, "action"),
        _sample(real_rows[2], "bet 2", 1, {}, "no_tool_call"),
        _sample(real_rows[0], fold, 3, {"get_game_state": 2, "make_action": 1}, "action"),
    ]


def test_metrics_summarise_actions_protocol_turns_tools_and_reward(samples):
    metrics = compute_rollout_metrics([samples[:2], samples[2:]])  # nested groups are flattened
    assert metrics["holdem/samples"] == 4
    assert metrics["holdem/action_frac/fold"] == 0.5
    assert metrics["holdem/action_frac/bet"] == 0.25
    assert metrics["holdem/action_frac/none"] == 0.25
    assert metrics["holdem/protocol_error_rate"] == 0.25
    assert metrics["holdem/turns_mean"] == pytest.approx(7 / 4)
    assert metrics["holdem/tool_calls_per_sample/get_game_state"] == 0.75
    assert metrics["holdem/tool_calls_per_sample/make_action"] == 0.75
    assert metrics["holdem/end_frac/no_tool_call"] == 0.25
    scores = [s.reward["score"] for s in samples]
    assert metrics["holdem/reward/score"] == pytest.approx(sum(scores) / 4)
    assert metrics["holdem/reward/exact"] == 0.5
    assert "holdem/reward/action" not in metrics  # strings are counted in the mix, not averaged


def test_log_rollout_data_returns_false_and_logs(samples, caplog):
    caplog.set_level(logging.INFO, logger="holdem.metrics")
    args = types.SimpleNamespace(use_wandb=False)
    assert log_rollout_data(3, args, samples, {}, 12.5) is False
    assert "holdem rollout 3" in caplog.text and "holdem/action_frac/fold" in caplog.text


def test_log_rollout_data_survives_garbage(caplog):
    assert log_rollout_data(0, None, [object(), types.SimpleNamespace(reward={"action": 3})], None, 0.0) is False
    assert compute_rollout_metrics([]) ["holdem/samples"] == 0


def test_entry_module_reexports_the_plugins_with_slime_signatures():
    assert entry.generate is generate and entry.reward_func is reward_func and entry.log_rollout_data is log_rollout_data
    assert list(inspect.signature(entry.generate).parameters)[:3] == ["args", "sample", "sampling_params"]
    assert "evaluation" in inspect.signature(entry.generate).parameters
    assert inspect.iscoroutinefunction(entry.generate) and inspect.iscoroutinefunction(entry.reward_func)
    assert list(inspect.signature(entry.log_rollout_data).parameters) == [
        "rollout_id", "args", "samples", "rollout_extra_metrics", "rollout_time"]

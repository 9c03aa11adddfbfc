"""STAND-IN for slime's `Sample` (slime/utils/types.py at the pinned commit 624b824).

slime cannot be installed here (it needs Megatron-LM, SGLang and torch). This mirrors the
dataclass fields and the `Sample.Status` names and values exactly, without the torch-based
helpers; the demo driver and the tests pass it where slime would pass its own Sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from holdem.eval.tools import EvalSample


@dataclass
class Sample:
    """The sample generated (fields as in slime 624b824)."""

    group_index: int | None = None
    index: int | None = None
    rollout_id: int | None = None
    prompt: str | list[dict[str, str]] = ""
    tokens: list[int] = field(default_factory=list)
    multimodal_inputs: dict[str, Any] | None = None
    multimodal_train_inputs: dict[str, Any] | None = None
    multimodal_train_input_id: str | None = None
    apply_chat_template_kwargs: dict = field(default_factory=dict)
    response: str = ""
    response_length: int = 0
    label: str | None = None
    reward: float | dict[str, Any] | None = None
    loss_mask: list[int] | None = None
    weight_versions: list[str] = field(default_factory=list)
    rollout_log_probs: list[float] | None = None
    rollout_top_p_token_ids: list[int] | None = None
    rollout_top_p_token_offsets: list[int] | None = None
    rollout_routed_experts: list[list[int]] | None = None
    remove_sample: bool = False
    teacher_log_probs: list[float] | None = None

    Status = EvalSample.Status  # slime's Sample.Status, defined once (holdem/eval/tools.py)

    status: Status = Status.PENDING
    metadata: dict = field(default_factory=dict)
    generate_function_path: str | None = None
    custom_rm_path: str | None = None
    train_metadata: dict | None = None
    session_id: str | None = None
    non_generation_time: float = 0.0

    def get_reward_value(self, args: Any) -> Any:
        return self.reward if not args.reward_key else self.reward[args.reward_key]

    @property
    def effective_response_length(self) -> int:
        return sum(self.loss_mask) if self.loss_mask is not None else self.response_length

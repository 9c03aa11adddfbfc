"""Token-level chat format for the rollout, taken from the tokenizer's own chat template.

The rollout is append-only: prompt ids, then per turn the ids the model sampled, then the ids
of the tool-response turn (and the next assistant header) that the template would write. Both
the prompt and that tool-turn text come from `tokenizer.apply_chat_template`, so the token ids
equal what the tokenizer gives for the text the template renders for the same conversation.
Special token ids are read from the tokenizer, never hard-coded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from holdem.tools import TOOLS

SYSTEM_PROMPT = (
    "You are a professional 6-handed No Limit Texas Hold'em player. The user describes a spot; decide the best "
    "action for it. You may call get_game_state and hand_strength to study the spot, then call make_action exactly "
    "once with your decision. Amounts are in big blinds and are raise-to totals for the current street."
)
TURN_END = "<|im_end|>"
EOS = "<|endoftext|>"
ASSISTANT_HEADER = "<|im_start|>assistant"
# Placeholders that cannot occur in real text: the template is rendered once with them and
# the pieces between them are reused for every tool turn.
_MARK = "\x00{}\x00"

_tokenizers: dict[str, Any] = {}
_tokenizers_lock = threading.Lock()


def load_tokenizer(path: str) -> Any:
    """The tokenizer of `path` (args.hf_checkpoint), loaded once per path per process."""
    with _tokenizers_lock:
        tokenizer = _tokenizers.get(path)
        if tokenizer is None:
            from transformers import AutoTokenizer  # lazy: heavy import, only the rollout needs it

            tokenizer = _tokenizers[path] = AutoTokenizer.from_pretrained(path)
    return tokenizer


@dataclass
class ChatFormat:
    """Encodes prompts and tool turns for one tokenizer and one thinking setting."""

    tokenizer: Any
    enable_thinking: bool
    system_prompt: str = SYSTEM_PROMPT
    turn_end_id: int = field(init=False)
    eos_id: int = field(init=False)
    _backend: Any = field(init=False, repr=False)
    _wrappers: dict[int, list[str]] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.turn_end_id = self._token_id(TURN_END)
        self.eos_id = self._token_id(EOS)
        # The Rust tokenizer directly: same ids as tokenizer.encode, without the Python layers.
        self._backend = getattr(self.tokenizer, "backend_tokenizer", None)

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if not isinstance(token_id, int) or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {token!r} token: a Qwen3 tokenizer is required")
        return token_id

    @property
    def stop_token_ids(self) -> list[int]:
        return [self.turn_end_id, self.eos_id]

    def encode(self, text: str) -> list[int]:
        if self._backend is not None:
            return self._backend.encode(text, add_special_tokens=False).ids
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        if self._backend is not None:
            return self._backend.decode(ids, skip_special_tokens=False)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def messages(self, instruction: str) -> list[dict]:
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": instruction}]

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages,
            tools=list(TOOLS),
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            enable_thinking=self.enable_thinking,
        )

    def prompt_ids(self, instruction: str) -> list[int]:
        """System prompt + tools + the instruction + the assistant generation prompt."""
        return list(_cached_prompt_ids(self, instruction))

    def tool_turn(self, results: list[str]) -> tuple[list[int], str]:
        """Ids and text appended after the model's `<|im_end|>`: the rest of that line, the
        user turn with one <tool_response> block per result, and the next assistant header."""
        parts = self._wrapper(len(results))
        text = parts[0] + "".join(result + part for result, part in zip(results, parts[1:]))
        return self.encode(text), text

    def _wrapper(self, count: int) -> list[str]:
        parts = self._wrappers.get(count)
        if parts is None:
            marker = _MARK.format("assistant")
            conversation = [{"role": "user", "content": "u"}, {"role": "assistant", "content": marker}]
            conversation += [{"role": "tool", "content": _MARK.format(i)} for i in range(count)]
            rendered = self.render(conversation, add_generation_prompt=True)
            # The model's own turn ends at <|im_end|>; everything after it is ours to append.
            after = rendered.split(marker + TURN_END, 1)[1]
            parts = []
            for i in range(count):
                before, after = after.split(_MARK.format(i), 1)
                parts.append(before)
            parts.append(after)
            self._wrappers[count] = parts
        return parts

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


@lru_cache(maxsize=4096)
def _cached_prompt_ids(chat: ChatFormat, instruction: str) -> tuple[int, ...]:
    # The n samples of a GRPO group share their prompt: render and encode it once.
    return tuple(chat.encode(chat.render(chat.messages(instruction), add_generation_prompt=True)))


_formats: dict[tuple[int, bool], ChatFormat] = {}


def chat_format(tokenizer: Any, enable_thinking: bool) -> ChatFormat:
    key = (id(tokenizer), enable_thinking)
    fmt = _formats.get(key)
    if fmt is None:
        fmt = _formats[key] = ChatFormat(tokenizer, enable_thinking)
    return fmt

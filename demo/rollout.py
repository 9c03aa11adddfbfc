"""What one Ray task of the demo driver does: play a batch of samples with the real holdem plug-ins.

`play_batch` runs the real `holdem.rollout.generate` (against the SGLang stand-in's /generate),
then `holdem.reward.reward_func`, on stand-in Samples (demo/sample_standin.py), and
returns them with where and how long it ran. The driver wraps it in `ray.remote`.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from argparse import Namespace
from dataclasses import dataclass
from typing import Any

from demo.sample_standin import Sample


@dataclass(frozen=True)
class Prompt:
    index: int  # sample index within the rollout
    group_index: int  # the prompt's group (GRPO: n samples per prompt)
    prompt: str
    label: str


def warm_up(hf_checkpoint: str) -> str:
    """Import the rollout path and load the tokenizer in this worker process (Ray reuses it for
    the rollout tasks), so worker start-up is not counted in the rollout's tokens/s."""
    import holdem.reward  # noqa: F401
    from holdem.chat import load_tokenizer

    load_tokenizer(hf_checkpoint)
    return socket.gethostname()


def play_batch(config: dict[str, Any], prompts: list[Prompt], rollout_id: int) -> dict[str, Any]:
    """Generate + score `prompts`; returns {"samples", "host", "pid", "seconds"}."""
    from holdem.reward import reward_func
    from holdem.rollout import close_sessions, generate

    args = Namespace(**config["args"])
    params = dict(config["sampling_params"])
    samples = [Sample(group_index=p.group_index, index=p.index, rollout_id=rollout_id, prompt=p.prompt,
                      label=p.label) for p in prompts]

    async def run() -> None:
        try:
            await asyncio.gather(*(generate(args, s, dict(params)) for s in samples))
            for sample in samples:
                sample.reward = await reward_func(args, sample)
        finally:
            await close_sessions()

    t0 = time.monotonic()
    asyncio.run(run())
    return {"samples": samples, "host": socket.gethostname(), "pid": os.getpid(),
            "seconds": time.monotonic() - t0}

"""Shared fixtures for the holdem unit tests: the six real PokerBench rows and the Qwen3 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TOKENIZER_DIR = Path(__file__).resolve().parents[3] / "demo" / "qwen3_tokenizer"  # shipped with the demo
EXAMPLES = FIXTURES / "pokerbench" / "examples.jsonl"


def load_examples() -> list[dict]:
    with EXAMPLES.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="session")
def real_rows() -> list[dict]:
    return load_examples()


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer  # declared dependency: a missing install fails, never skips

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))

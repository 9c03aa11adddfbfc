from __future__ import annotations

import pytest

from .helpers import real_rows


@pytest.fixture
def examples() -> list[dict]:
    """The six real PokerBench rows (2 preflop, flop, turn, 2 river)."""
    return real_rows()

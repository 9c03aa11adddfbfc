from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def write_profile(tmp_path):
    """Write a YAML profile into tmp_path and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return path

    return write

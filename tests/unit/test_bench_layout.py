"""The benches' side of the layout (../shared/DESIGN.md, "Folders and who owns what"): a bench may
use the product and other files under bench/, never a test module; what a bench and a test both
need lives under bench/ (e.g. bench/_requeue_setup.py) and the test imports it from there."""
from __future__ import annotations

from pathlib import Path

from tests.unit.test_layout import imports_of

ROOT = Path(__file__).resolve().parents[2]


def test_no_bench_imports_tests():
    bad = sorted(f"bench/{p.name} imports {m}" for p in (ROOT / "bench").glob("*.py") for m in imports_of(p)
                 if m == "tests" or m.startswith("tests."))
    assert bad == []

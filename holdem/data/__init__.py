"""The PokerBench data stage (`python -m holdem.data`): rows from the hub or local files, validated
and filtered, written as the JSONL slime reads plus its `.stats.json`.

Modules: `cli` (command line), `stage` (the run), `source` (streaming readers), `validate` (one
row), `filters` (duplicates, conflicts, test overlap), `stats` (counts and summary), `output`
(atomic JSONL + stats), `progress` (progress lines). Importing the package stays cheap.
"""
from holdem.data.cli import main
from holdem.data.output import output_is_complete, stats_path_for
from holdem.data.stage import DataSpec, prepare

__all__ = ["DataSpec", "main", "output_is_complete", "prepare", "stats_path_for"]

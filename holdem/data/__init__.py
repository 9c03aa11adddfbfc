"""The PokerBench data stage (`python -m holdem.data`): rows from the hub or local files, validated
and filtered, written as the JSONL slime reads plus its `.stats.json`.

Modules: `cli` (command line, exit codes, signals), `stage` (the run), `source` (streaming
readers, in batches), `work` (per-row work on one worker process per core), `validate` (one row),
`filters` (duplicates, conflicts, test overlap), `stats` (counts and summary), `output` (atomic
JSONL + stats), `progress` (progress bar/lines). Importing the package stays cheap.
"""
from holdem.data.cli import main
from holdem.data.output import output_is_complete, stats_path_for
from holdem.data.stage import DataSpec, prepare

__all__ = ["DataSpec", "main", "output_is_complete", "prepare", "stats_path_for"]

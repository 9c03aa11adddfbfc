"""Counts gathered by the data stage (`RunCounts`, the stats file's tallies) and the summary table
printed from them (`render_summary`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from holdem.table import STREETS

KINDS = ("fold", "check", "call", "bet", "raise", "all in")
MAX_BAD_EXAMPLES = 10


@dataclass
class RunCounts:
    """Mutable tallies for one run (a plain accumulator, not a spec)."""

    rows_in: int = 0
    kept: Counter = field(default_factory=Counter)  # (street, kind) -> rows written
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    bad_rows: Counter = field(default_factory=Counter)  # bad-row reason -> rows
    bad_examples: list[str] = field(default_factory=list)

    def add_bad(self, where: str, reason: str, detail: str) -> None:
        self.bad_rows[reason] += 1
        self.dropped["bad_row"] += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            self.bad_examples.append(f"{where}: {detail}")

    def to_json(self) -> dict:
        by_street = Counter()
        by_action = Counter()
        table: dict[str, dict[str, int]] = {}
        for (street, kind), n in self.kept.items():
            by_street[street] += n
            by_action[kind] += n
            table.setdefault(street, {})[kind] = n
        return {
            "rows_in": self.rows_in,
            "rows_kept": sum(self.kept.values()),
            "by_street": dict(by_street),
            "by_action": dict(by_action),
            "by_street_action": table,
            "dropped": dict(self.dropped),
            "bad_rows_by_reason": dict(self.bad_rows),
            "bad_row_examples": list(self.bad_examples),
        }


def render_summary(stats: dict) -> str:
    """The human table: rows in/out, street x action, drops by reason, what was found."""
    table = stats.get("by_street_action", {})
    streets = [s for s in STREETS if s in table] + sorted(set(table) - set(STREETS))
    kinds = [k for k in KINDS if any(k in table[s] for s in streets)]
    lines = [f"rows in {stats['rows_in']:,}  rows out {stats['rows_out']:,}  ({stats.get('seconds', 0):.1f} s)"]
    if streets:
        head = f"{'street':<8}" + "".join(f"{k:>9}" for k in kinds) + f"{'total':>10}"
        lines += ["", head, "-" * len(head)]
        for s in streets:
            row = table[s]
            lines.append(f"{s:<8}" + "".join(f"{row.get(k, 0):>9,}" for k in kinds) + f"{sum(row.values()):>10,}")
        totals = [sum(table[s].get(k, 0) for s in streets) for k in kinds]
        lines.append(f"{'total':<8}" + "".join(f"{t:>9,}" for t in totals) + f"{sum(totals):>10,}")
    dropped = stats.get("dropped", {})
    lines += ["", "dropped: " + (", ".join(f"{r} {n:,}" for r, n in sorted(dropped.items())) or "none")]
    bad = stats.get("bad_rows_by_reason", {})
    if bad:
        lines.append("bad rows: " + ", ".join(f"{r} {n:,}" for r, n in sorted(bad.items())))
    found = stats.get("found", {})
    if found:
        lines.append("found: " + ", ".join(f"{r} {n:,}" for r, n in sorted(found.items())))
    return "\n".join(lines)

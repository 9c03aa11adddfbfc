"""The row generator: PokerBench-format rows from random legal states, checked like real rows."""

from __future__ import annotations

import collections
import json
import random
import re
import subprocess
import sys

from holdem.pokerbench import HEADER, match_label, parse_instruction, parse_label, render_instruction
from holdem.rowgen import generate_rows, main, random_spot
from holdem.table import check_action


def test_real_rows_regenerate_byte_identical(real_rows):
    for row in real_rows:
        assert render_instruction(parse_instruction(row["instruction"])) == row["instruction"]


def test_generated_rows_parse_round_trip_and_labels_are_legal():
    kinds = collections.Counter()
    streets = collections.Counter()
    for row in generate_rows(5000, seed=11):
        text, label = row["instruction"], row["output"]
        assert text.startswith(HEADER) and text.endswith("Your optimal action is:")
        assert match_label(label) is not None, label  # exactly the label grammar, as the data stage checks
        state = parse_instruction(text)
        assert render_instruction(state) == text
        assert check_action(state.table, parse_label(label)) is None, (label, state.legal_actions)
        assert 780 <= len(text) <= 1200
        kinds[label.split(" ")[0]] += 1
        streets[state.street] += 1
    assert set(streets) == {"preflop", "flop", "turn", "river"}
    assert {"fold", "call", "check", "bet", "raise", "all"} <= set(kinds)


def test_generated_rows_cover_the_real_quirks():
    rows = list(generate_rows(5000, seed=3))
    texts = [r["instruction"] for r in rows]
    assert any(re.search(r"pot size is \d+\.\d{5,} chips", t) for t in texts), "no float artefact pot"
    assert any(t.count(" all in") >= 2 for t in texts), "no multiway all-in preflop"
    assert any("then there has been no action yet." in t for t in texts)
    raise_no_bet = 0
    for row in rows:
        state = parse_instruction(row["instruction"])
        if row["output"].startswith("raise") and state.street != "preflop" and state.current_bet == 0:
            raise_no_bet += 1
    assert raise_no_bet > 0, "no `raise N` where no bet is open"


def test_same_seed_same_rows_and_different_seed_different_rows():
    assert list(generate_rows(50, seed=5)) == list(generate_rows(50, seed=5))
    assert list(generate_rows(50, seed=5)) != list(generate_rows(50, seed=6))


def test_random_spot_returns_a_state_and_a_legal_label():
    state, label = random_spot(random.Random(0))
    assert check_action(state.table, label) is None


def test_cli_writes_jsonl(tmp_path):
    out = tmp_path / "rows.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "holdem.rowgen", "--n", "20", "--seed", "4", "--out", str(out)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == list(generate_rows(20, seed=4))


def test_cli_bad_output_directory_is_one_error_line(tmp_path, capsys):
    assert main(["--n", "3", "--out", str(tmp_path / "missing" / "rows.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and err.count("\n") == 1 and "Traceback" not in err


def test_cli_negative_count_is_rejected(tmp_path, capsys):
    assert main(["--n", "-1", "--out", str(tmp_path / "rows.jsonl")]) == 2
    assert capsys.readouterr().err.startswith("error: --n must be >= 0")
    assert not (tmp_path / "rows.jsonl").exists()


def test_cli_usage_error_is_one_error_line(capsys):
    try:
        main(["--seed", "1"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("missing --n must exit")
    err = capsys.readouterr().err
    assert err.startswith("error: the following arguments are required: --n, --out") and err.count("\n") == 1

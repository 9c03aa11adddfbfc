"""The regeneration script's output is what slime_flags.py reads (round trip on real argparse
parsers shaped like slime's phases; slime itself cannot be installed here)."""
from __future__ import annotations

import argparse

from cluster.regen_slime_flags import HEADER, capture_parsers, render_rows
from cluster.profile.slime_flags import load_flag_table


def fake_slime_parse_args():
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--debug-rollout-only", action="store_true")
    pre.parse_known_args(["--debug-rollout-only"])
    main = argparse.ArgumentParser()
    main.add_argument("--rollout-batch-size", type=int)
    main.add_argument("--kl-loss-type", type=str, choices=["k1", "low_var_kl"], default="k1")
    main.add_argument("--eval-prompt-data", nargs="+")
    main.add_argument("--save-interval", "--persistent-save-interval", type=int)
    main.parse_known_args([])
    raise SystemExit("validation needs GPUs")  # as slime's does on a CPU machine


def test_round_trip(tmp_path):
    parsers = capture_parsers(fake_slime_parse_args)
    assert [phase for phase, _ in parsers] == ["pre", "sgl-tp"]
    path = tmp_path / "flags.txt"
    path.write_text("# Flags accepted by slime train.py at THUDM/slime test.\n# phase...\n" + "\t".join(HEADER) + "\n"
                    + "\n".join(render_rows(parsers)) + "\n")
    table = load_flag_table(str(path))
    assert "test" in table.source
    assert table.get("debug-rollout-only").kind == "flag"
    assert table.get("rollout-batch-size").type == "int" and table.get("rollout-batch-size").kind == "value"
    assert table.get("kl-loss-type").choices == ("k1", "low_var_kl")
    assert table.get("eval-prompt-data").is_list
    assert table.get("persistent-save-interval").name == "save-interval"
    assert table.get("help") is None

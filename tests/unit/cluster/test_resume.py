"""Where a restarted train job loads from, on checkpoint trees with Megatron's real file names
(../shared/SLIME.md: a torch_dist save writes `common.pt` first, then the `.distcp` shards, then
`.metadata`, and `metadata.json` LAST; the tracker moves only after a complete save)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster.launcher.resume import describe_save_dir, resolve_resume
from cluster.outputs import TRACKER, checkpoint_dir_complete, megatron_checkpoint, newest_complete_checkpoint

METADATA = {"sharded_backend": "torch_dist", "sharded_backend_version": 1,
            "common_backend": "torch", "common_backend_version": 1}
# How far a torch_dist save got when it was killed: each stage adds its file, in Megatron's order.
STAGES = ("common.pt", "__0_0.distcp", "__0_1.distcp", ".metadata", "metadata.json")


def write_dist(d: Path, upto: str = "metadata.json") -> Path:
    """A torch_dist checkpoint dir with the files of a save that got as far as `upto`."""
    d.mkdir(parents=True, exist_ok=True)
    for name in STAGES[: STAGES.index(upto) + 1]:
        (d / name).write_text(json.dumps(METADATA) if name == "metadata.json" else "x")
    return d


def save(root: Path, it: int, complete: bool = True, tracker: bool = True) -> Path:
    d = write_dist(root / f"iter_{it:07d}", "metadata.json" if complete else ".metadata")
    if tracker:
        (root / TRACKER).write_text(str(it))
    return d


def test_the_converters_real_tree_is_complete(tmp_path):
    """The exact tree of a real convert (release/, tracker 'release' without a newline)."""
    write_dist(tmp_path / "release")
    (tmp_path / TRACKER).write_text("release")
    found, why = megatron_checkpoint(tmp_path)
    assert found == tmp_path / "release" and "metadata.json" in why


@pytest.mark.parametrize("upto", STAGES[:-1])
def test_a_save_killed_before_metadata_json_is_not_complete(tmp_path, upto):
    d = write_dist(tmp_path / "iter_0000020", upto)
    ok, why = checkpoint_dir_complete(d)
    assert not ok and "no metadata.json" in why and "did not finish" in why


def test_load_ckpt_wins(tmp_path):
    save(tmp_path, 20)
    info = resolve_resume("/explicit", str(tmp_path), "/ref")
    assert info.flags == {"load": "/explicit"} and info.source == "load_ckpt"


def test_complete_checkpoint_in_save_dir(tmp_path):
    save(tmp_path, 20)
    save(tmp_path, 40)
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {"load": str(tmp_path)} and info.checkpoint.endswith("iter_0000040")
    assert "names iter_0000040/" in info.reason


def test_tracker_naming_a_missing_dir_falls_back_to_newest_complete(tmp_path):
    save(tmp_path, 20)
    (tmp_path / TRACKER).write_text("40")  # iter_0000040 never written
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {"load": str(tmp_path), "ckpt-step": 20}


def test_tracker_naming_a_partial_dir_falls_back_past_every_partial_one(tmp_path):
    save(tmp_path, 20)
    save(tmp_path, 30, complete=False, tracker=False)  # common.pt, shards and .metadata: no proof
    save(tmp_path, 40, complete=False)  # the tracker names a partial dir
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {"load": str(tmp_path), "ckpt-step": 20}
    assert "not complete" in info.reason and "newest complete is iter_0000020/" in info.reason


def test_dir_without_tracker_update_is_ignored(tmp_path):
    save(tmp_path, 20)
    save(tmp_path, 40, complete=False, tracker=False)  # died while writing iter 40
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {"load": str(tmp_path)} and info.checkpoint.endswith("iter_0000020")


def test_preempted_during_the_first_save_starts_fresh(tmp_path):
    """Issue 13: the first save was killed after common.pt (and .metadata): no tracker, no
    metadata.json. Resuming with --ckpt-step on it would fail on every restart."""
    write_dist(tmp_path / "iter_0000020", ".metadata")
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {} and info.source == "ref_load" and "/ref" in info.reason
    (tmp_path / TRACKER).write_text("20")  # even with a tracker naming it
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {} and info.source == "ref_load" and "no complete iter_* dir" in info.reason


def test_partial_only_starts_fresh(tmp_path):
    (tmp_path / "iter_0000020").mkdir()
    (tmp_path / TRACKER).write_text("20")  # tracker names an empty dir
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {} and info.source == "ref_load" and "/ref" in info.reason


def test_empty_save_dir_starts_fresh(tmp_path):
    info = resolve_resume(None, str(tmp_path / "none"), "/ref")
    assert info.flags == {} and "no latest_checkpointed_iteration.txt" in info.reason


def test_legacy_saves_need_model_optim_rng_in_every_rank(tmp_path):
    d = tmp_path / "iter_0000010"
    for rank in ("mp_rank_00", "mp_rank_01"):
        (d / rank).mkdir(parents=True)
    (d / "mp_rank_00" / "model_optim_rng.pt").write_bytes(b"x")
    (tmp_path / TRACKER).write_text("10")
    ok, why = checkpoint_dir_complete(d)
    assert not ok and "mp_rank_01/model_optim_rng.pt is missing" in why
    assert resolve_resume(None, str(tmp_path), "/ref").source == "ref_load"
    (d / "mp_rank_01" / "model_optim_rng.pt").write_bytes(b"x")
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {"load": str(tmp_path)} and info.checkpoint == str(d)


@pytest.mark.parametrize("content, why", [
    ("", "is unreadable"),
    ("{", "is unreadable"),
    ("[1, 2]", "no 'sharded_backend'"),
    ('{"other": 1}', "no 'sharded_backend'"),
    ("[" * 100_000, "is unreadable"),
], ids=["empty", "truncated", "a-list", "no-backend", "nested-deep"])
def test_a_damaged_metadata_json_is_not_complete(tmp_path, content, why):
    d = write_dist(tmp_path / "release", ".metadata")
    (d / "metadata.json").write_text(content)
    ok, reason = checkpoint_dir_complete(d)
    assert not ok and why in reason


@pytest.mark.parametrize("tracker, why", [
    ("garbage", "neither an iteration"),
    ("", "neither an iteration"),
    ("²", "not text"),
    ("-20", "neither an iteration"),
    ("20.0", "neither an iteration"),
])
def test_bad_trackers_are_reasons_not_exceptions(tmp_path, tracker, why):
    save(tmp_path, 20)
    (tmp_path / TRACKER).write_text(tracker, encoding="utf-8")
    found, reason = megatron_checkpoint(tmp_path)
    assert found is None and why in reason
    # the fallback still finds the complete save
    assert newest_complete_checkpoint(tmp_path)[0] == tmp_path / "iter_0000020"


def test_tracker_that_is_a_directory_or_binary(tmp_path):
    (tmp_path / TRACKER).mkdir()
    assert megatron_checkpoint(tmp_path)[0] is None
    other = tmp_path / "b"
    other.mkdir()
    (other / TRACKER).write_bytes(b"\xff\xfe\x00garbage")
    found, reason = megatron_checkpoint(other)
    assert found is None and "not text" in reason


def test_iterations_past_seven_digits(tmp_path):
    save(tmp_path, 12_345_678)
    assert megatron_checkpoint(tmp_path)[0].name == "iter_12345678"
    (tmp_path / TRACKER).write_text("99999999")
    assert newest_complete_checkpoint(tmp_path)[0].name == "iter_12345678"


def test_describe_save_dir(tmp_path):
    assert describe_save_dir(None) == "no checkpoint yet"
    assert describe_save_dir(str(tmp_path)) == "no checkpoint yet"
    save(tmp_path, 20)
    assert describe_save_dir(str(tmp_path)) == "iter_0000020"
    save(tmp_path, 40, complete=False)
    assert describe_save_dir(str(tmp_path)) == "iter_0000020"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tracker=st.binary(max_size=64), files=st.sets(st.sampled_from(STAGES)))
def test_any_tracker_and_any_subset_of_files(tmp_path_factory, tracker, files):
    """Never raises; a dir is taken only when metadata.json is in it."""
    root = tmp_path_factory.mktemp("save")
    d = root / "iter_0000007"
    d.mkdir()
    for name in files:
        (d / name).write_text(json.dumps(METADATA) if name == "metadata.json" else "x")
    (root / TRACKER).write_bytes(tracker)
    found, reason = newest_complete_checkpoint(root)
    assert isinstance(reason, str)
    assert (found == d) == ("metadata.json" in files)
    info = resolve_resume(None, str(root), "/ref")
    assert (info.source == "save_dir") == ("metadata.json" in files)

from __future__ import annotations

from pathlib import Path

from cluster.launcher.resume import resolve_resume


def save(root: Path, it: int, complete: bool = True, tracker: bool = True) -> None:
    d = root / f"iter_{it:07d}"
    d.mkdir(parents=True)
    (d / "__0_0.distcp").write_bytes(b"shard")
    if complete:
        (d / ".metadata").write_bytes(b"meta")
    if tracker:
        (root / "latest_checkpointed_iteration.txt").write_text(str(it))


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
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("40")  # iter_0000040 never written
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {"load": str(tmp_path), "ckpt-step": 20}


def test_dir_without_tracker_update_is_ignored(tmp_path):
    save(tmp_path, 20)
    save(tmp_path, 40, complete=False, tracker=False)  # died while writing iter 40
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {"load": str(tmp_path)} and info.checkpoint.endswith("iter_0000020")


def test_partial_only_starts_fresh(tmp_path):
    save(tmp_path, 20, complete=False)
    (tmp_path / "iter_0000020" / "__0_0.distcp").unlink()  # tracker names an empty dir
    info = resolve_resume(None, str(tmp_path), "/ref")
    assert info.flags == {} and info.source == "ref_load" and "/ref" in info.reason


def test_empty_save_dir_starts_fresh(tmp_path):
    info = resolve_resume(None, str(tmp_path / "none"), "/ref")
    assert info.flags == {} and "no latest_checkpointed_iteration.txt" in info.reason

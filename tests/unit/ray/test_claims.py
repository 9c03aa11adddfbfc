"""Owner records of port bands and Ray temp dirs (cluster/launcher/claims.py), with real processes:
a live launcher's band is skipped even with no listener on it, a SIGKILLed one's band is taken
again and its temp dir removed, and a reused pid, another user's record or an unusable directory
never block a launch."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.launcher import claims

ROOT = Path(__file__).resolve().parents[3]
NO_LISTENERS = lambda k: []  # noqa: E731
BANDS_256 = [(20000, 20255), (20256, 20511), (20512, 20767)]

HOLDER = """
import sys
from cluster.launcher import claims
root, temp = sys.argv[1], sys.argv[2]
choice = claims.claim_band(root, "n1", "41-0-0", [(20000, 20511)], lambda k: [])
choice.claim.note_temp_dir(temp)
print("claimed", flush=True)
sys.stdin.read()  # hold until the test closes stdin (or kills us)
choice.claim.release()
"""


@pytest.fixture
def holder(tmp_path: Path):
    """A real process holding a 512-port band (20000-20511) and the temp dir <root>/ray-41-0-0."""
    temp = tmp_path / "ray-41-0-0"
    temp.mkdir()
    (temp / "session.log").write_text("x")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), str(temp)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "claimed"  # blocks until the record exists
    yield proc, temp
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_live_launchers_band_is_skipped_though_nothing_listens_on_it(tmp_path: Path, holder) -> None:
    # 256-port bands on the same node: the first two overlap the holder's 512-port band
    choice = claims.claim_band(str(tmp_path), "n1", "42-0-0", BANDS_256, NO_LISTENERS)
    assert choice.index == 2 and choice.note is None, choice
    assert len(choice.skipped) == 2 and all("held by 41-0-0" in s for s in choice.skipped)
    # another host's bands are its own (in the local cluster, nodes share /tmp but not ports)
    assert claims.claim_band(str(tmp_path), "n2", "43-0-0", BANDS_256, NO_LISTENERS).index == 0
    choice.claim.release()


def test_a_sigkilled_launchers_band_is_free_again_and_its_temp_dir_removed(tmp_path: Path, holder) -> None:
    proc, temp = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    choice = claims.claim_band(str(tmp_path), "n1", "42-0-0", BANDS_256, NO_LISTENERS)
    assert choice.index == 0 and not choice.skipped, choice
    assert not temp.exists()
    assert any(f"temp dir {temp} of 41-0-0" in s for s in choice.swept), choice.swept
    records = claims.read_records(tmp_path / claims.CLAIMS_DIR, "n1")
    assert [r.tag for r in records] == ["42-0-0"]


def test_a_released_claim_leaves_no_record_and_keeps_nothing_claimed(tmp_path: Path, holder) -> None:
    proc, temp = holder
    proc.stdin.close()  # the holder releases and exits
    assert proc.wait() == 0
    assert claims.read_records(tmp_path / claims.CLAIMS_DIR, "n1") == []
    assert temp.exists()  # releasing never removes a temp dir: its owner does that (or keeps it)
    assert claims.claim_band(str(tmp_path), "n1", "42-0-0", BANDS_256, NO_LISTENERS).index == 0


def test_listeners_still_count_and_every_band_taken_gives_none(tmp_path: Path) -> None:
    choice = claims.claim_band(str(tmp_path), "n1", "42-0-0", BANDS_256, lambda k: [20000 + 256 * k] if k < 2 else [])
    assert choice.index == 2 and "has listeners on [20000]" in choice.skipped[0]
    none = claims.claim_band(str(tmp_path), "n1", "43-0-0", BANDS_256, lambda k: [1])
    assert none.index is None and none.claim is None and len(none.skipped) == 3


def write_record(directory: Path, **fields) -> Path:
    directory.mkdir(exist_ok=True)
    data = {"host": "n1", "tag": "9-0-0", "pid": os.getpid(), "pid_start": claims.process_start(os.getpid()),
            "uid": os.getuid(), "lo": 20000, "hi": 20255, "temp_dir": None, **fields}
    path = directory / f"n1.{data['tag']}.{data['pid']}.json"
    path.write_text(json.dumps(data))
    return path


def test_a_reused_pid_is_not_the_owner(tmp_path: Path) -> None:
    # our own pid, but another start time: the record's launcher is gone and the pid was reused
    path = write_record(tmp_path / claims.CLAIMS_DIR, pid_start=claims.process_start(os.getpid()) - 1)
    choice = claims.claim_band(str(tmp_path), "n1", "42-0-0", BANDS_256, NO_LISTENERS)
    assert choice.index == 0 and not path.exists()


def test_another_users_dead_record_is_ignored_not_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    other = tmp_path / "ray-9-0-0"
    other.mkdir()
    path = write_record(tmp_path / claims.CLAIMS_DIR, pid=int(dead), pid_start=1, uid=os.getuid() + 4242,
                        temp_dir=str(other))
    choice = claims.claim_band(str(tmp_path), "n1", "42-0-0", BANDS_256, NO_LISTENERS)
    assert choice.index == 0 and path.exists() and other.exists()  # not ours to remove


@pytest.mark.parametrize("where", ["outside the root", "not a ray- dir", "a symlink"])
def test_only_a_ray_temp_dir_of_ours_under_the_root_is_removed(tmp_path: Path, where: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    victim = {"outside the root": tmp_path / "ray-1-0-0", "not a ray- dir": root / "data",
              "a symlink": root / "ray-1-0-0"}[where]
    if where == "a symlink":
        (tmp_path / "precious").mkdir()
        victim.symlink_to(tmp_path / "precious")
    else:
        victim.mkdir()
    write_record(root / claims.CLAIMS_DIR, pid_start=1, temp_dir=str(victim))
    claims.claim_band(str(root), "n1", "42-0-0", BANDS_256, NO_LISTENERS)
    assert victim.exists() or victim.is_symlink()
    assert where != "a symlink" or (tmp_path / "precious").is_dir()


def test_an_unusable_directory_turns_records_off_with_a_note(tmp_path: Path) -> None:
    root = tmp_path / "a-file"
    root.write_text("")
    choice = claims.claim_band(str(root), "n1", "42-0-0", BANDS_256, lambda k: [1] if k == 0 else [])
    assert choice.index == 1 and choice.claim is None
    assert choice.note.startswith(f"port claims off: cannot use {root}/{claims.CLAIMS_DIR}")


def test_a_lock_held_too_long_turns_records_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claims, "LOCK_TIMEOUT_S", 0.2)
    directory = tmp_path / claims.CLAIMS_DIR
    directory.mkdir()
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: claim_band's flock waits
        choice = claims.claim_band(str(tmp_path), "n1", "42-0-0", BANDS_256, NO_LISTENERS)
    finally:
        os.close(fd)
    assert choice.index == 0 and choice.claim is None and "was held for" in choice.note


def test_the_directory_is_shared_by_every_user(tmp_path: Path) -> None:
    claims.claim_band(str(tmp_path), "n1", "42-0-0", BANDS_256, NO_LISTENERS)
    mode = (tmp_path / claims.CLAIMS_DIR).stat().st_mode
    assert mode & 0o1777 == 0o1777

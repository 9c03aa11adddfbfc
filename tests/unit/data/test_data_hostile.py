"""`python -m holdem.data` against every bad input we could think of (issue 13, items 3 and 7).

The promise for each: exit 2 (bad input/usage) or 1 (the output could not be written, a worker
died), exactly one `error:` line naming what, where and the fix, no traceback, nothing written
(neither the JSONL nor its stats, no temp file left). A full disk and a file size limit remove the
temp file and say so; a signal says what was interrupted; a previous complete output survives."""
from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from holdem.data import output_is_complete, stats_path_for
from holdem.data import source as data_source
from holdem.data.cli import main as data_main

from .helpers import EXAMPLES, ROOT, generated_rows, real_rows, write_jsonl

ROWS = real_rows()
GOOD = "".join(json.dumps(r) + "\n" for r in ROWS)


def run_in_process(capsys, *args: str) -> tuple[int, list[str]]:
    code = data_main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("data ", "\r"))]


def assert_refused(code: int, lines: list[str], out: Path, *needles: str, exit_code: int = 2) -> None:
    assert code == exit_code, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() and not stats_path_for(out).exists()
    if out.parent.is_dir():
        assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


def surrogate_row() -> str:
    # An escaped lone surrogate decodes fine but cannot be written as UTF-8.
    return json.dumps({**ROWS[0], "instruction": ROWS[0]["instruction"] + "\ud800"})


# name -> (file name, content as bytes, expected needles). Every input holds the good rows too.
BAD_FILES: dict[str, tuple[str, bytes, tuple[str, ...]]] = {
    "invalid JSON line": ("in.jsonl", (GOOD + "{oops\n").encode(), ("in.jsonl:7", "not valid JSON")),
    "JSON nested 100k deep": ("in.jsonl", (GOOD + "[" * 100_000 + "\n").encode(), ("in.jsonl:7", "nested too deeply")),
    "object nested 100k deep": ("in.jsonl", (GOOD + '{"a":' * 100_000 + "\n").encode(), ("nested too deeply",)),
    "latin-1 line": ("in.jsonl", GOOD.encode() + '{"instruction": "é", "output": "call"}\n'.encode("latin-1"),
                     ("in.jsonl:7", "not UTF-8")),
    "UTF-16 file with BOM": ("in.jsonl", GOOD.encode("utf-16"), ("UTF-16", "Re-encode")),
    "UTF-16 file without BOM": ("in.jsonl", GOOD.encode("utf-16-le"), ("NUL bytes", "Re-encode")),
    "UTF-32 file": ("in.jsonl", GOOD.encode("utf-32"), ("UTF-32", "Re-encode")),
    "gzip file named .jsonl": ("in.jsonl", gzip.compress(GOOD.encode()), ("in.jsonl",)),
    "random bytes": ("in.jsonl", bytes(range(1, 256)) * 40, ("in.jsonl",)),
    "line of 2 MiB": ("in.jsonl", (GOOD + "x" * (2 << 20) + "\n" + GOOD).encode(), ("in.jsonl:7", "longer than any")),
    "last line of 2 MiB, no newline": ("in.jsonl", (GOOD + '"' + "x" * (2 << 20)).encode(), ("in.jsonl:7", "longer")),
    "row that is a number": ("in.jsonl", (GOOD + "42\n").encode(), ("row is a JSON int",)),
    "row that is null": ("in.jsonl", (GOOD + "null\n").encode(), ("row is a JSON NoneType",)),
    "row that is a string": ("in.jsonl", (GOOD + '"call"\n').encode(), ("row is a JSON str",)),
    "empty object": ("in.jsonl", (GOOD + "{}\n").encode(), ("no 'instruction' field (fields: none)",)),
    "null fields": ("in.jsonl", (GOOD + '{"instruction": null, "output": null}\n').encode(),
                    ("'instruction' is NoneType",)),
    "NaN field": ("in.jsonl", (GOOD + '{"instruction": NaN, "output": "call"}\n').encode(), ("'instruction' is float",)),
    "5000-digit number": ("in.jsonl", (GOOD + '{"instruction": ' + "9" * 5000 + "}\n").encode(), ("not valid JSON",)),
    "400-digit amount": ("in.jsonl", (GOOD + json.dumps({**ROWS[0], "output": "raise " + "9" * 400}) + "\n").encode(),
                         ("is outside",)),
    "label with a newline": ("in.jsonl", (GOOD + json.dumps({**ROWS[0], "output": "call\n"}) + "\n").encode(),
                             ("is outside",)),
    "lone surrogate": ("in.jsonl", (GOOD + surrogate_row() + "\n").encode(), ("in.jsonl:7", "lone surrogate")),
    "instruction of 500 KB": ("in.jsonl", (GOOD + json.dumps({"instruction": "x" * 500_000, "output": "call"}) + "\n")
                              .encode(), ("does not parse",)),
    "JSON array nested 100k deep": ("in.json", b"[" + b"[" * 100_000, ("nested too deeply",)),
    "JSON array element over 1 MiB": ("in.json", b'[{"instruction": "' + b"x" * (2 << 20) + b'"}]', ("longer than",)),
    "JSON array with trailing text": ("in.json", json.dumps(ROWS).encode() + b" trailing", ("text after the closing",)),
    "JSON array not closed": ("in.json", json.dumps(ROWS).encode()[:-1], ("not closed",)),
    "JSON array not UTF-8": ("in.json", b'[{"instruction": "\xe9", "output": "call"}]', ("not UTF-8",)),
    "empty file": ("in.jsonl", b"", ("holds no rows",)),
    "only blank lines": ("in.jsonl", b"\n \n\t\n", ("holds no rows",)),
    "only a UTF-8 BOM": ("in.jsonl", b"\xef\xbb\xbf", ("holds no rows",)),
    "CSV file": ("in.csv", b"instruction,output\nx,call\n", ("not valid JSON",)),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("workers", ["1", "2"])
def test_bad_input_file(capsys, tmp_path, case, workers):
    name, content, needles = BAD_FILES[case]
    src = tmp_path / "src" / name
    src.parent.mkdir()
    src.write_bytes(content)
    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    code, lines = run_in_process(capsys, "--source", str(src), "--out", str(out), "--workers", workers)
    assert_refused(code, lines, out, *needles)


def test_bad_rows_are_dropped_and_counted_in_skip_mode(capsys, tmp_path):
    """Every per-row case above, in one file, skipped: the good rows come out, each reason counted."""
    bad_lines = [b"{oops", b"[" * 100_000, '{"i": "é"}'.encode("latin-1"), b"x" * (2 << 20), b"42",
                 b'{"instruction": null, "output": null}', surrogate_row().encode(), b"{}"]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(line + b"\n" + GOOD.encode() for line in bad_lines))
    out = tmp_path / "train.jsonl"
    code, lines = run_in_process(capsys, "--source", str(src), "--out", str(out), "--on-bad-row", "skip")
    assert code == 0, lines
    stats = json.loads(stats_path_for(out).read_text())
    assert stats["rows_out"] == 6 * len(bad_lines)
    assert stats["bad_rows_by_reason"] == {"invalid_json": 2, "not_utf8": 1, "too_long": 1, "not_an_object": 1,
                                           "not_a_string": 1, "not_encodable": 1, "missing_field": 1}
    assert output_is_complete(out, verify_checksum=True)[0]


def write_parquet(path: Path, rows: list[dict], **kw) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, **kw)
    return path


def corrupt_middle(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    path.write_bytes(bytes(data))
    return path


PARQUET_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "garbage": (lambda d: _write(d / "g.parquet", b"PAR1" + b"\0" * 64 + b"PAR1"), ("unreadable Parquet",)),
    "not parquet at all": (lambda d: _write(d / "t.parquet", b"hello"), ("unreadable Parquet",)),
    "truncated": (lambda d: _write(d / "t.parquet", write_parquet(d / "x.parquet", ROWS * 50).read_bytes()[:700]),
                  ("unreadable Parquet",)),
    "corrupt page": (lambda d: corrupt_middle(write_parquet(d / "c.parquet", ROWS * 200, compression="snappy",
                                                            row_group_size=300)), ("unreadable Parquet at row",)),
    "no output column": (lambda d: write_parquet(d / "n.parquet", [{"instruction": r["instruction"]} for r in ROWS]),
                         ("no column 'output'",)),
    "integer columns": (lambda d: write_parquet(d / "i.parquet", [{"instruction": 1, "output": 2}]),
                        ("'instruction' is int",)),
    "struct column": (lambda d: write_parquet(d / "s.parquet", [{"instruction": {"a": 1}, "output": "call"}]),
                      ("'instruction' is dict",)),
    "null values": (lambda d: write_parquet(d / "v.parquet", ROWS + [{"instruction": None, "output": "call"}]),
                    ("#6", "'instruction' is NoneType")),
    "zero rows": (lambda d: pq.write_table(pa.table({"instruction": pa.array([], pa.string()),
                                                      "output": pa.array([], pa.string())}), d / "z.parquet")
                  or d / "z.parquet", ("holds no rows",)),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(PARQUET_CASES))
def test_bad_parquet(capsys, tmp_path, case):
    make, needles = PARQUET_CASES[case]
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = make(src_dir)
    out = tmp_path / "train.jsonl"
    code, lines = run_in_process(capsys, "--source", str(src), "--out", str(out))
    assert_refused(code, lines, out, *needles)


def usage_cases(tmp_path: Path) -> dict[str, tuple[list[str], Path, tuple[str, ...]]]:
    out = tmp_path / "train.jsonl"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    (tmp_path / "looks.jsonl").mkdir()
    (tmp_path / "splits").mkdir()
    write_jsonl(tmp_path / "splits" / "test.jsonl", ROWS)
    (tmp_path / "empty").mkdir()
    return {
        "missing source": (["--source", str(tmp_path / "nope.jsonl")], out, ("no such file",)),
        "directory without data files": (["--source", str(tmp_path / "empty")], out, ("no .json/.jsonl/.parquet",)),
        "directory named like a file": (["--source", str(tmp_path / "looks.jsonl")], out, ("no .json/.jsonl/.parquet",)),
        "directory without the split": (["--source", str(tmp_path / "splits")], out, ("no file for split 'train'",)),
        "/dev/null": (["--source", "/dev/null"], out, ("holds no rows",)),
        "output dir missing": (["--out", str(tmp_path / "no" / "x.jsonl")], tmp_path / "no" / "x.jsonl",
                               ("does not exist",)),
        "output parent is a file": (["--out", str(a_file / "x.jsonl")], a_file / "x.jsonl", ("is not a directory",)),
        "output is a directory": (["--out", str(tmp_path / "looks.jsonl")], tmp_path / "nothing", ("is a directory",)),
        "output on procfs": (["--out", "/proc/holdem-train.jsonl"], Path("/proc/holdem-train.jsonl"), ("--out",)),
        "negative workers": (["--workers", "-1"], out, ("--workers -1",)),
        "progress interval nan": (["--progress-interval", "nan"], out, ("--progress-interval",)),
        "test source missing": (["--test-source", str(tmp_path / "nope.jsonl")], out, ("no such file",)),
        "test source without instructions": (["--test-source", str(a_file)], out, ("no row with an 'instruction'",)),
        "overlap without test source": (["--drop-test-overlap"], out, ("--test-source",)),
        "hub name offline": (["--source", "no-such-owner/no-such-set"], out, ("load_dataset failed",)),
    }


USAGE_NAMES = [
    "missing source", "directory without data files", "directory named like a file", "directory without the split",
    "/dev/null", "output dir missing", "output parent is a file", "output is a directory", "output on procfs",
    "negative workers", "progress interval nan", "test source missing", "test source without instructions",
    "overlap without test source", "hub name offline"]


@pytest.mark.parametrize("case", USAGE_NAMES)
def test_bad_usage(capsys, tmp_path, monkeypatch, case):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    args, out, needles = usage_cases(tmp_path)[case]
    argv = ["--source", str(EXAMPLES), "--out", str(tmp_path / "train.jsonl")]
    for i in range(0, len(args), 2):
        if i + 1 < len(args) and args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i:i + 2]
    code, lines = run_in_process(capsys, *argv)
    assert_refused(code, lines, out, *needles)


def subprocess_data(*args: str, preexec=None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "holdem.data", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (root only): a real ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_full_disk_removes_the_temp_file_and_keeps_the_previous_output(tiny_disk, tmp_path, workers):
    out = tiny_disk / "train.jsonl"
    first = subprocess_data("--source", str(EXAMPLES), "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    big = write_jsonl(tmp_path / "big.jsonl", generated_rows(1500, seed=5))  # ~1.8 MB > 256 KiB
    result = subprocess_data("--source", str(big), "--out", str(out), "--workers", workers)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "No space left on device" in line and "removed the temp file" in line and "nothing committed" in line
    assert "Free space on" in line
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["train.jsonl", "train.stats.json"]
    assert out.read_bytes() == before and output_is_complete(out, verify_checksum=True)[0]


def test_file_size_limit_removes_the_temp_file(tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", generated_rows(400, seed=6))
    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    limit = 64 * 1024

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess_data("--source", str(big), "--out", str(out), preexec=small_files)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "File too large" in line and "ulimit -f" in line and "removed the temp file" in line
    assert list(out.parent.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unreadable_source_and_unwritable_output_as_another_user(tmp_path):
    tmp_path.chmod(0o755)
    src = tmp_path / "secret.jsonl"
    src.write_text(GOOD)
    src.chmod(0o000)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    ok_out = tmp_path / "open"
    ok_out.mkdir(mode=0o777)

    def as_nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    try:
        result = subprocess_data("--source", str(src), "--out", str(ok_out / "t.jsonl"), preexec=as_nobody)
    except PermissionError:
        pytest.skip("the interpreter is not usable by nobody here")
    if "Traceback" in result.stderr and "holdem" not in result.stderr:
        pytest.skip("the project is not readable by nobody here")
    assert result.returncode == 2, result.stderr
    assert "cannot open (Permission denied)" in one_error_line(result)
    result = subprocess_data("--source", str(EXAMPLES), "--out", str(locked / "t.jsonl"), preexec=as_nobody)
    assert result.returncode == 2, result.stderr
    assert "is not writable" in one_error_line(result)


def test_json_array_reader_bounds_an_endless_element(tmp_path, monkeypatch):
    monkeypatch.setattr(data_source, "MAX_ROW_BYTES", 1000)
    monkeypatch.setattr(data_source, "_JSON_CHUNK", 100)
    path = tmp_path / "a.json"
    path.write_text('[{"instruction": "' + "x" * 5000 + '"}]')
    with pytest.raises(data_source.DataInputError, match="element 0 is longer than 1,000"):
        list(data_source.iter_rows(data_source.resolve_source(str(path), "train")))


# ---- signals and dead workers: a real process fed through a FIFO, so it is provably mid-run -----

def start_fifo_run(tmp_path: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "holdem.data", "--source", str(fifo), "--out", str(out), *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, fifo


def wait_until(condition: Callable[[], bool], what: str, proc: subprocess.Popen | None,
               deadline_s: float = 60.0) -> None:
    import time

    end = time.monotonic() + deadline_s
    while not condition():
        assert proc is None or proc.poll() is None, f"the run ended while waiting for {what}: {proc.communicate()}"
        assert time.monotonic() < end, f"no {what} within {deadline_s} s"
        time.sleep(0.02)


def temps(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*.tmp"))


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_signal_says_what_was_interrupted(tmp_path, sig, code, workers):
    out = tmp_path / "train.jsonl"
    proc, fifo = start_fifo_run(tmp_path, out, "--workers", workers)
    rows = generated_rows(2000, seed=7)
    with open(fifo, "wb") as pipe:
        pipe.write("".join(json.dumps(r) + "\n" for r in rows).encode())
        pipe.flush()
        wait_until(lambda: bool(temps(out)) and temps(out)[0].stat().st_size > 0, "rows in the temp file", proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1, err
    name = signal.Signals(sig).name
    assert f"interrupted by {name} while writing" in line[0] and "rows read" in line[0], line[0]
    assert "which was removed; nothing committed" in line[0]
    assert not out.exists() and temps(out) == []


def test_a_signal_while_reading_the_test_rows(tmp_path):
    out = tmp_path / "train.jsonl"
    fifo = tmp_path / "test.jsonl"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "holdem.data", "--source", str(EXAMPLES), "--out", str(out),
                             "--test-source", str(fifo)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with open(fifo, "wb"):  # opened: the run is now blocked reading it
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert "interrupted by SIGTERM while reading the test rows" in err and not out.exists()


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(t) for t in text]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or not sys.platform.startswith("linux"), reason="Linux /proc")
def test_a_killed_worker_is_a_clean_error(tmp_path):
    out = tmp_path / "train.jsonl"
    proc, fifo = start_fifo_run(tmp_path, out, "--workers", "2")
    rows = "".join(json.dumps(r) + "\n" for r in generated_rows(400, seed=8)).encode()
    with open(fifo, "wb") as pipe:
        pipe.write(rows)
        pipe.flush()
        wait_until(lambda: bool(temps(out)) and temps(out)[0].stat().st_size > 0, "rows in the temp file", proc)
        workers = children_of(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        try:
            pipe.write(rows * 20)  # the run must notice the dead worker on its next batches
        except BrokenPipeError:
            pass
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert "ended without finishing its batch (killed by SIGKILL" in err and not out.exists() and temps(out) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_workers_die_with_a_killed_run(tmp_path):
    out = tmp_path / "train.jsonl"
    proc, fifo = start_fifo_run(tmp_path, out, "--workers", "2")
    with open(fifo, "wb") as pipe:
        pipe.write(GOOD.encode())
        pipe.flush()
        wait_until(lambda: bool(temps(out)) and temps(out)[0].stat().st_size > 0, "rows in the temp file", proc)
        workers = children_of(proc.pid)
        proc.kill()
        proc.wait(timeout=60)
    wait_until(lambda: not any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers),
               "the workers to end", None)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (OSError, IndexError):
        return "Z"

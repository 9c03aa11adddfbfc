"""`holdem.eval` against a server that misbehaves in every way we could think of (issue 13, item 6).

The promise: a server failure is the server's fault, never scored as the model's. Every case ends
with exit 3 and one `error:` line (no traceback), the rows finished before it are written with
`"complete": false` in the summary, and `--request-deadline` bounds a hang in both modes. A
transient failure followed by a good reply is retried and succeeds (exit 0)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from holdem.chat import load_tokenizer
from holdem.eval import cli as eval_cli
from holdem.eval import client as eval_client
from holdem.toolcall import render_tool_call

from .helpers import EXAMPLES, ROOT
from .hostile_http import HANG, HostileServer, http, sglang

TOKENIZER = ROOT / "demo" / "qwen3_tokenizer"
NOT_HTTP = b"HELLO THERE\r\n\r\n"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(TOKENIZER))


def run_eval(capsys, url: str, out: Path, *extra: str) -> tuple[int, list[str]]:
    """`python -m holdem.eval` in this process (the tokenizer stays loaded); (exit, stderr lines)."""
    code = eval_cli.main(["--server", url, "--data", str(EXAMPLES), "--out", str(out), "--tokenizer", str(TOKENIZER),
                          "--connect-deadline", "5", "--request-deadline", "1", "--no-reward", *extra])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln and "PyTorch was not found" not in ln]
    assert "Traceback" not in err, err
    return code, lines


def assert_server_failure(code: int, lines: list[str], out: Path, *needles: str) -> None:
    assert code == 3, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() or json.loads(out.with_name(out.stem + ".summary.json").read_text())["complete"] is False


def always(reply: bytes | None):
    return lambda n, body: reply


PLAIN_CASES = {
    "200, body not JSON": (always(http(200, "<html>oops</html>")), ("not JSON", "<html>oops")),
    "200, empty body": (always(http(200, "")), ("not JSON", "(empty body)")),
    "200, JSON list": (always(http(200, "[1, 2]")), ("JSON list, not an object",)),
    "200, JSON string": (always(http(200, '"call"')), ("JSON str, not an object",)),
    "200, JSON null": (always(http(200, "null")), ("JSON NoneType",)),
    "200, nested 100k deep": (always(http(200, "[" * 100_000)), ("not JSON", "RecursionError")),
    "200, no text": (always(http(200, '{"error": "x"}')), ("no 'text' string", "keys: error")),
    "200, text not a string": (always(http(200, '{"text": 5}')), ("no 'text' string",)),
    "200, meta_info a list": (always(http(200, '{"text": "call", "meta_info": [1]}')), ("'meta_info' is a JSON list",)),
    "200, meta_info a string": (always(http(200, '{"text": "call", "meta_info": "x"}')), ("'meta_info' is a JSON str",)),
    "200, finish_reason a list": (always(http(200, '{"text": "call", "meta_info": {"finish_reason": [1]}}')),
                                  ("finish_reason",)),
    "200, finish type a number": (always(http(200, '{"text": "c", "meta_info": {"finish_reason": {"type": 3}}}')),
                                  ("finish_reason",)),
    "200, body not UTF-8": (always(http(200, b"\xff\xfe\x00{")), ("not JSON",)),
    "404": (always(http(404, "Not Found")), ("HTTP 404", "Check --server")),
    "405": (always(http(405, "")), ("HTTP 405", "(empty body)")),
    "400": (always(http(400, '{"error": "bad input_ids"}')), ("HTTP 400", "bad input_ids")),
    "401": (always(http(401, "unauthorized")), ("HTTP 401", "refused")),
    "413": (always(http(413, "too large")), ("HTTP 413",)),
    "422": (always(http(422, "unprocessable")), ("HTTP 422",)),
    "204 no content": (always(http(204, "")), ("HTTP 204",)),
    "501": (always(http(501, "not implemented")), ("HTTP 501",)),
    "status line not HTTP": (always(NOT_HTTP), ("not HTTP",)),
    "500 every time": (always(http(500, "boom")), ("no successful reply within 1 s", "HTTP 500")),
    "503 every time": (always(http(503, "busy")), ("no successful reply within 1 s", "HTTP 503")),
    "429 every time": (always(http(429, "slow down")), ("no successful reply within 1 s", "HTTP 429")),
    "reply cut short": (always(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"), ("no successful reply",)),
    "connection closed, no reply": (always(b""), ("no successful reply", "ServerDisconnected")),
    "hang after the request": (always(HANG), ("no successful reply within 1 s",)),
}


def test_plain_mode_a_reply_larger_than_any_generate_reply(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(eval_client, "_BODY_LIMIT", 1000)
    out = tmp_path / "results.jsonl"
    with HostileServer(always(http(200, "x" * 5000))) as server:
        code, lines = run_eval(capsys, server.url, out)
    assert_server_failure(code, lines, out, "larger than")


@pytest.mark.parametrize("transient", [http(503, "busy"), http(500, ""), b"", NOT_HTTP[:0]])
def test_plain_mode_a_transient_failure_then_success(capsys, tmp_path, transient):
    def script(n: int, body: bytes) -> bytes:
        return transient if n == 0 else sglang("call")

    out = tmp_path / "results.jsonl"
    with HostileServer(script) as server:
        code, lines = run_eval(capsys, server.url, out, "--concurrency", "1", "--request-deadline", "30")
    assert code == 0 and lines == [], lines
    assert len(out.read_text().splitlines()) == 6


def test_plain_mode_keeps_the_rows_finished_before_the_failure(capsys, tmp_path):
    def script(n: int, body: bytes) -> bytes:
        return sglang("fold") if n < 2 else http(404, "gone")

    out = tmp_path / "results.jsonl"
    with HostileServer(script) as server:
        code, lines = run_eval(capsys, server.url, out, "--concurrency", "1")
    assert_server_failure(code, lines, out, "HTTP 404", "wrote the 2 of 6 rows finished")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1] and all(r["response"] == "fold" for r in rows)
    summary = json.loads((tmp_path / "results.summary.json").read_text())
    assert summary["complete"] is False and summary["overall"]["n"] == 2 and "HTTP 404" in summary["stopped"]


def test_a_complete_run_says_so(capsys, tmp_path):
    out = tmp_path / "results.jsonl"
    with HostileServer(always(sglang("call"))) as server:
        code, lines = run_eval(capsys, server.url, out)
    assert code == 0 and lines == []
    assert json.loads((tmp_path / "results.summary.json").read_text())["complete"] is True


def tool_reply(tokenizer, action: dict) -> bytes:
    """A well-formed SGLang reply whose tokens are a make_action call."""
    text = render_tool_call("make_action", action)
    ids = list(tokenizer.encode(text, add_special_tokens=False)) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    meta = {"finish_reason": {"type": "stop"}, "output_token_logprobs": [[-0.5, i, None] for i in ids]}
    return http(200, json.dumps({"text": text, "meta_info": meta}))


TOOLS_CASES = {
    "200, body not JSON": (always(http(200, "<html>oops</html>")), ("not JSON",)),
    "200, empty body": (always(http(200, "")), ("1 s", "SGLang format")),
    "200, JSON list": (always(http(200, "[1, 2]")), ("SGLang format",)),
    "200, meta_info a string": (always(http(200, '{"text": "call", "meta_info": "x"}')), ("SGLang format",)),
    "200, token id out of range": (always(http(200, json.dumps(
        {"text": "x", "meta_info": {"output_token_logprobs": [[0.0, 10**30, None]]}}))), ("SGLang format",)),
    "404": (always(http(404, "Not Found")), ("HTTP 404", "Check --server")),
    "400": (always(http(400, "bad")), ("HTTP 400",)),
    "422": (always(http(422, "unprocessable")), ("HTTP 422",)),
    "204 no content": (always(http(204, "")), ("HTTP 204",)),
    "429 every time": (always(http(429, "slow down")), ("1 s", "Check the server's health")),
    "500 every time": (always(http(500, "boom")), ("1 s", "Check the server's health")),
    "status line not HTTP": (always(NOT_HTTP), ("1 s", "Check the server's health")),
    "connection closed, no reply": (always(b""), ("1 s", "Check the server's health")),
    "hang after the request": (always(HANG), ("no successful reply within 1 s (--request-deadline)",)),
}


SERVER_FAILURES = {**{("plain", c): v for c, v in PLAIN_CASES.items()},
                   **{("tools", c): v for c, v in TOOLS_CASES.items()}}


@pytest.mark.parametrize("mode,case", sorted(SERVER_FAILURES), ids=lambda v: str(v))
def test_server_failures_exit_3(capsys, tmp_path, mode, case):
    """Every mode: a server failure is the server's fault, exit 3 with one line, rows so far kept."""
    script, needles = SERVER_FAILURES[(mode, case)]
    out = tmp_path / "results.jsonl"
    with HostileServer(script) as server:
        code, lines = run_eval(capsys, server.url, out, "--mode", mode, "--concurrency", "1")
    assert_server_failure(code, lines, out, *needles)


def test_tools_mode_hang_mid_episode_and_rows_kept(capsys, tmp_path, tokenizer):
    """Two rows finish; the third request hangs: --request-deadline ends it, both rows are kept."""
    def script(n: int, body: bytes) -> bytes | None:
        return tool_reply(tokenizer, {"action": "fold"}) if n < 2 else HANG

    out = tmp_path / "results.jsonl"
    with HostileServer(script) as server:
        code, lines = run_eval(capsys, server.url, out, "--mode", "tools", "--concurrency", "1")
    assert_server_failure(code, lines, out, "--request-deadline", "wrote the 2 of 6 rows finished")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["predicted"] for r in rows] == ["fold", "fold"]


def test_tools_mode_rollout_settings_are_checked_first(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOLDEM_MAX_TURNS", "zero")
    out = tmp_path / "results.jsonl"
    with HostileServer(always(HANG)) as server:
        code, lines = run_eval(capsys, server.url, out, "--mode", "tools")
        assert server.posts == 0
    assert code == 2 and len(lines) == 1 and "HOLDEM_MAX_TURNS" in lines[0]


@pytest.mark.parametrize("args, needle", [
    (("--server", "http://127.0.0.1:99999"), "expected an http"),
    (("--server", "http://"), "expected an http"),
    (("--request-deadline", "0"), "--request-deadline 0.0"),
    (("--request-deadline", "nan"), "--request-deadline nan"),
    (("--connect-deadline", "-1"), "--connect-deadline -1.0"),
])
def test_bad_deadlines_and_urls_exit_2(capsys, tmp_path, args, needle):
    argv = ["--server", "http://127.0.0.1:1", "--data", str(EXAMPLES), "--out", str(tmp_path / "r.jsonl"),
            "--tokenizer", str(TOKENIZER)]
    for i in range(0, len(args), 2):
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += [args[i], args[i + 1]]
    code = eval_cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_out_that_is_a_directory_exits_2(capsys, tmp_path):
    code = eval_cli.main(["--server", "http://127.0.0.1:1", "--data", str(EXAMPLES), "--out", str(tmp_path),
                          "--tokenizer", str(TOKENIZER)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a directory" in err[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_keeps_the_rows_finished(tmp_path, sig):
    """A real process: two rows answered, the third request hangs, then the signal arrives."""
    def script(n: int, body: bytes) -> bytes | None:
        return sglang("check") if n < 2 else HANG

    out = tmp_path / "results.jsonl"
    with HostileServer(script) as server:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "holdem.eval", "--server", server.url, "--data", str(EXAMPLES), "--out", str(out),
             "--tokenizer", str(TOKENIZER), "--concurrency", "1", "--request-deadline", "600", "--no-reward"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            server.wait_for_posts(3)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    lines = [ln for ln in err.strip().splitlines() if "PyTorch was not found" not in ln]
    assert proc.returncode == 128 + sig, err
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name}" in lines[0], err
    assert "wrote the 2 of 6 rows finished" in lines[0]
    assert len(out.read_text().splitlines()) == 2
    assert json.loads((tmp_path / "results.summary.json").read_text())["complete"] is False

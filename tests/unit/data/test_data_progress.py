"""Progress output: a redrawn bar on a terminal, whole lines in a batch log."""
from __future__ import annotations

import io

from holdem.data.progress import ProgressReporter


def test_terminal_gets_a_bar_redrawn_in_place():
    stream = io.StringIO()
    rep = ProgressReporter("data x", lambda: 0.5, stream=stream, interval_s=0.0, tty=True)
    rep.tick(100)
    rep.tick(200)
    rep.close(300)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[############............]" in text and "50.0%" in text
    assert "100.0%" in text.split("\r")[-1] and "300 rows" in text


def test_batch_log_gets_plain_lines():
    stream = io.StringIO()
    rep = ProgressReporter("data x", lambda: None, stream=stream, interval_s=0.0, tty=False)
    rep.tick(10)
    rep.close(20)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0].startswith("data x: 10 rows") and "%" not in lines[0]
    assert lines[1].startswith("data x: 20 rows 100.0%")


def test_ticks_between_intervals_draw_nothing():
    stream = io.StringIO()
    rep = ProgressReporter("data x", lambda: 0.1, stream=stream, interval_s=3600.0, tty=False)
    for n in range(1000):
        rep.tick(n)
    assert stream.getvalue() == ""


def test_abandon_ends_a_half_drawn_bar():
    stream = io.StringIO()
    rep = ProgressReporter("data x", lambda: 0.2, stream=stream, interval_s=0.0, tty=True)
    rep.tick(5)
    rep.abandon()
    assert stream.getvalue().endswith("\n")

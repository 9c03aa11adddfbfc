"""The one way tests wait: poll a condition until it holds or a deadline passes, and say what was
awaited (plus whatever `tails` adds, e.g. the last log lines) when it does not."""
from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(cond: Callable[[], Any], what: str, timeout_s: float = 30.0,
             tails: Callable[[], str] = lambda: "", poll_s: float = 0.05) -> Any:
    """Return cond()'s first truthy value; AssertionError naming `what` after `timeout_s`."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        result = cond()
        if result:
            return result
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{tails()}")

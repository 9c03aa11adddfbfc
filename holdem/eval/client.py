"""HTTP to an SGLang router (or anything speaking its `/generate` protocol) for `holdem.eval`:
a start-up probe, and POSTs that retry transient failures with backoff under a deadline."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import aiohttp

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class ServerUnreachable(Exception):
    """The server gave no answer within the deadline: the whole evaluation stops (exit 3)."""


class RequestFailed(Exception):
    """The server answered with a non-transient error for one request (recorded, not fatal).
    `status` is the HTTP status when there was one (None for a reply that is not JSON)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_client_error(status: int | None) -> bool:
    """A 4xx reply: the server refused this request, so sending it again cannot help."""
    return status is not None and 400 <= status < 500


@dataclass(frozen=True)
class RetryPolicy:
    deadline_s: float = 120.0
    first_backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    request_timeout_s: float = 300.0


async def probe_server(session: aiohttp.ClientSession, server: str, deadline_s: float) -> None:
    """Wait until the server answers any HTTP request (a 404 counts), or raise ServerUnreachable."""
    end = time.monotonic() + deadline_s
    delay, last = 0.1, "no attempt"
    while True:
        attempt_s = max(0.5, min(5.0, end - time.monotonic()))
        try:
            async with session.get(f"{server}/health", timeout=aiohttp.ClientTimeout(total=attempt_s)) as resp:
                await resp.read()
                return
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if time.monotonic() + delay > end:
            raise ServerUnreachable(
                f"--server {server}: no answer within {deadline_s:g} s (waited for any HTTP reply to "
                f"GET /health; last error {last}). Check that the router or server is up and the URL"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def post_json(session: aiohttp.ClientSession, url: str, payload: dict, policy: RetryPolicy) -> dict:
    """POST and decode JSON; retries connection errors, timeouts and 408/429/5xx until the deadline."""
    end = time.monotonic() + policy.deadline_s
    backoff, last = policy.first_backoff_s, ""
    while True:
        try:
            timeout = aiohttp.ClientTimeout(total=max(1.0, min(policy.request_timeout_s, end - time.monotonic())))
            async with session.post(url, json=payload, timeout=timeout) as resp:
                if resp.status == 200:
                    return await resp.json(content_type=None)
                body = (await resp.text())[:200]
                if resp.status not in TRANSIENT_STATUS:
                    raise RequestFailed(f"HTTP {resp.status} from {url}: {body}", status=resp.status)
                last = f"HTTP {resp.status}: {body}"
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, aiohttp.ClientPayloadError) as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except aiohttp.ContentTypeError as exc:
            raise RequestFailed(f"non-JSON reply from {url}: {exc}") from exc
        if time.monotonic() + backoff > end:
            raise ServerUnreachable(
                f"{url}: no successful reply within {policy.deadline_s:g} s of retries (last: {last}). "
                "Check the server's health and logs"
            )
        # Jitter keeps many concurrent requests from retrying in lockstep.
        await asyncio.sleep(backoff * (0.5 + random.random() / 2))
        backoff = min(backoff * 2, policy.max_backoff_s)

"""HTTP to an SGLang router (or anything speaking its `/generate` protocol) for `holdem.eval`:
a start-up probe, and POSTs that retry transient failures with backoff under a deadline.

Every way the server can fail is a `ServerFailure` (exit 3), never a model error: a wrong URL, a
proxy's error page or a crashed engine must not look like a terrible model. Transient failures
(connection errors, timeouts, 408/429/5xx, a reply cut short) are retried until the deadline, then
`ServerUnreachable`; a reply outside the protocol (any other status, a status line that is not
HTTP, a body that is not a JSON object) is `RequestFailed` at once, since asking again cannot help.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass

import aiohttp

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_BODY_LIMIT = 64 << 20  # a /generate reply is a few KB; anything past this is not one


class ServerFailure(Exception):
    """The server, not the model, failed: the evaluation stops (exit 3), results so far are kept."""


class ServerUnreachable(ServerFailure):
    """The server gave no usable answer within the deadline."""


class RequestFailed(ServerFailure):
    """The server answered outside the /generate protocol (a non-transient HTTP status, a reply
    that is not HTTP, a body that is not a JSON object). `status` is the HTTP status when there
    was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_client_error(status: int | None) -> bool:
    """A 4xx reply: the server refused this request, so sending it again cannot help."""
    return status is not None and 400 <= status < 500


def is_fatal_status(status: int | None) -> bool:
    """A reply status that retrying cannot fix (anything but 200 and the transient ones)."""
    return status is not None and status != 200 and status not in TRANSIENT_STATUS


def refused_hint(status: int) -> str:
    if status in (404, 405):
        return "Check --server: it must be the router's (or server's) base URL, which serves POST /generate"
    if is_client_error(status):
        return "The server refused the request: check that it is an SGLang server for this model and its logs"
    return "Check the server's health and logs"


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
            last = describe_error(exc)
        if time.monotonic() + delay > end:
            raise ServerUnreachable(
                f"--server {server}: no answer within {deadline_s:g} s (waited for any HTTP reply to "
                f"GET /health; last error {last}). Check that the router or server is up and the URL"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


def describe_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def post_json(session: aiohttp.ClientSession, url: str, payload: dict, policy: RetryPolicy) -> dict:
    """POST and decode a JSON object; retries connection errors, timeouts, replies cut short and
    408/429/5xx until the deadline (then ServerUnreachable); anything else is RequestFailed."""
    end = time.monotonic() + policy.deadline_s
    backoff, last = policy.first_backoff_s, ""
    while True:
        try:
            timeout = aiohttp.ClientTimeout(total=max(0.5, min(policy.request_timeout_s, end - time.monotonic())))
            async with session.post(url, json=payload, timeout=timeout) as resp:
                if resp.status == 200:
                    return decode_reply(url, await _read_limited(resp))
                body = (await _read_limited(resp)).decode("utf-8", "replace")
                body = " ".join(body.split())[:200]
                if resp.status not in TRANSIENT_STATUS:
                    raise RequestFailed(f"{url}: HTTP {resp.status}: {body or '(empty body)'}. {refused_hint(resp.status)}",
                                        status=resp.status)
                last = f"HTTP {resp.status}: {body}"
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, aiohttp.ClientPayloadError) as exc:
            last = describe_error(exc)
        except aiohttp.ClientResponseError as exc:  # raised by the parser: not an HTTP reply at all
            raise RequestFailed(f"{url}: the reply is not HTTP ({describe_error(exc)}). "
                                "Check that --server points at an SGLang router or server") from exc
        if time.monotonic() + backoff > end:
            raise ServerUnreachable(
                f"{url}: no successful reply within {policy.deadline_s:g} s of retries (last: {last}). "
                "Check the server's health and logs"
            )
        # Jitter keeps many concurrent requests from retrying in lockstep.
        await asyncio.sleep(backoff * (0.5 + random.random() / 2))
        backoff = min(backoff * 2, policy.max_backoff_s)


async def _read_limited(resp: aiohttp.ClientResponse) -> bytes:
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > _BODY_LIMIT:
            raise RequestFailed(f"{resp.url}: HTTP {resp.status} reply larger than {_BODY_LIMIT >> 20} MiB; "
                                "not a /generate reply", status=resp.status)
        chunks.append(chunk)
    return b"".join(chunks)


def decode_reply(url: str, body: bytes) -> dict:
    """The JSON object of a 200 reply, or RequestFailed saying what came instead."""
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError) as exc:
        shown = " ".join(body[:120].decode("utf-8", "replace").split()) or "(empty body)"
        raise RequestFailed(f"{url}: HTTP 200 but the body is not JSON ({type(exc).__name__}; starts {shown!r}). "
                            "Check that --server points at an SGLang router or server", status=200) from None
    if not isinstance(reply, dict):
        raise RequestFailed(f"{url}: HTTP 200 but the body is a JSON {type(reply).__name__}, not an object: "
                            f"{str(reply)[:120]}. Check that --server points at an SGLang router or server",
                            status=200)
    return reply

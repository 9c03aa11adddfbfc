"""Retries of `holdem.eval`'s HTTP client against a real local HTTP server."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from holdem.eval.client import RequestFailed, RetryPolicy, ServerUnreachable, is_client_error, post_json, probe_server

FAST = RetryPolicy(deadline_s=3.0, first_backoff_s=0.01, max_backoff_s=0.05)


async def with_server(statuses: list[int], body: dict, action):
    """Serve POST /generate answering with `statuses` in turn (the last one repeats)."""
    calls = []

    async def generate(request: web.Request) -> web.Response:
        calls.append(await request.json())
        status = statuses[min(len(calls) - 1, len(statuses) - 1)]
        return web.json_response(body if status == 200 else {"error": "busy"}, status=status)

    app = web.Application()
    app.router.add_post("/generate", generate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            return await action(session, url), calls
    finally:
        await runner.cleanup()


def test_transient_errors_are_retried_until_success():
    async def action(session, url):
        return await post_json(session, f"{url}/generate", {"x": 1}, FAST)

    reply, calls = asyncio.run(with_server([503, 429, 200], {"text": "call"}, action))
    assert reply == {"text": "call"} and len(calls) == 3


def test_client_error_is_not_retried():
    async def action(session, url):
        with pytest.raises(RequestFailed, match="HTTP 400") as failed:
            await post_json(session, f"{url}/generate", {}, FAST)
        return failed.value.status

    status, calls = asyncio.run(with_server([400], {}, action))
    assert len(calls) == 1 and status == 400 and is_client_error(status)


def test_tools_mode_reads_the_status_of_a_rollout_failure():
    """The status is typed (an attribute), never read out of another module's message text."""
    from holdem.eval.tools import rollout_status
    from holdem.rollout import RolloutError

    assert rollout_status(RolloutError("anything", status=422)) == 422 and is_client_error(422)
    assert rollout_status(RequestFailed("x", status=404)) == 404
    assert rollout_status(RolloutError("POST http://h:1/generate: HTTP 404: not found")) is None  # no status given
    assert not is_client_error(rollout_status(RolloutError("POST http://h:1/generate failed 5 times; last error: x")))
    assert not is_client_error(None) and not is_client_error(503)


def test_persistent_5xx_ends_at_the_deadline():
    policy = RetryPolicy(deadline_s=0.5, first_backoff_s=0.01, max_backoff_s=0.05)

    async def action(session, url):
        with pytest.raises(ServerUnreachable, match="no successful reply within 0.5 s"):
            await post_json(session, f"{url}/generate", {}, policy)

    _, calls = asyncio.run(with_server([502], {}, action))
    assert len(calls) > 2


def test_probe_accepts_any_http_answer():
    async def action(session, url):
        await probe_server(session, url, 2.0)  # /health is a 404 here: still an answer
        return True

    assert asyncio.run(with_server([200], {}, action))[0] is True

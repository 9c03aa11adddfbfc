"""STAND-IN for an SGLang server / router (the demo driver's and the tests'): real HTTP on
127.0.0.1, the real `/generate` protocol.

SGLang needs a GPU; this replays scripted completions instead of sampling. Each completion is
tokenized with the real tokenizer, so token ids, text and log-probs are what SGLang would send.

    server = SGLangStandIn(tokenizer, script=lambda req: Completion("<tool_call>…</tool_call>"))
    with server:                      # starts on an ephemeral port in a background thread
        url = server.url              # http://127.0.0.1:PORT (POST {url}/generate)
        ...
    server.requests                   # every request body received, in order

Request: {"input_ids": [...], "sampling_params": {"max_new_tokens": N, ...}, "return_logprob": true}
Reply:   {"text": ..., "meta_info": {"output_token_logprobs": [[logprob, token_id, null], ...],
          "finish_reason": {"type": "stop"|"length"|"abort", ...}, "prompt_tokens": P,
          "completion_tokens": C, "cached_tokens": 0}}

Modes (per Completion): "stop" ends the turn with `<|im_end|>` (as Qwen3 does), "length" cuts
at max_new_tokens, "abort" returns the first `abort_after` tokens with finish_reason abort,
`end_token="<|endoftext|>"` ends with EOS instead; `Completion(MALFORMED_TOOL_CALL)` scripts a
malformed tool call. A completion longer than the request's
max_new_tokens is cut there with finish_reason length, as SGLang does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

READY_TIMEOUT_S = 10.0
# A tool call the model botched (invalid JSON), for the malformed-call mode of a script.
MALFORMED_TOOL_CALL = '<tool_call>\n{"name": "make_action", "arguments": {"action": }\n</tool_call>'


@dataclass(frozen=True)
class Completion:
    """One scripted model turn."""

    text: str
    mode: str = "stop"  # stop | length | abort
    abort_after: int = 0  # abort mode: tokens returned before the abort
    end_token: str = "<|im_end|>"  # stop mode: the token that ends the turn
    token_ids: tuple[int, ...] | None = None  # exact ids to send instead of encoding `text`


@dataclass(frozen=True)
class Request:
    """What the script sees: the request body and the decoded prompt."""

    body: dict
    input_ids: list[int]
    text: str  # decoded input_ids, special tokens kept

    @property
    def assistant_turns(self) -> int:
        """How many assistant turns the prompt already opened (1 on the first call)."""
        return self.text.count("<|im_start|>assistant")


Script = Callable[[Request], Completion]


@dataclass
class SGLangStandIn:
    tokenizer: Any
    script: Script
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[dict] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SGLangStandIn:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="sglang-standin", daemon=True)
        self._thread.start()
        if not ready.wait(READY_TIMEOUT_S):
            raise RuntimeError(f"sglang stand-in: not listening on {self.host} after {READY_TIMEOUT_S} s")
        if self._error is not None:
            raise RuntimeError(f"sglang stand-in: failed to start: {self._error!r}") from self._error
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(READY_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(READY_TIMEOUT_S)
        if self._thread.is_alive():
            raise RuntimeError(f"sglang stand-in: server thread did not stop within {READY_TIMEOUT_S} s")
        self._loop, self._thread = None, None

    def __enter__(self) -> SGLangStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- server thread ----

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported to start() by the ready event
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_post("/generate", self._generate)
        app.router.add_get("/health", self._health)  # what the eval stage waits for, as on SGLang
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _generate(self, http_request: web.Request) -> web.Response:
        body = await http_request.json()
        self.requests.append(body)
        input_ids = body.get("input_ids")
        if not isinstance(input_ids, list) or not body.get("return_logprob"):
            return web.json_response({"error": "stand-in expects input_ids and return_logprob"}, status=400)
        request = Request(body, input_ids, self.tokenizer.decode(input_ids, skip_special_tokens=False))
        return web.json_response(self.reply(request, self.script(request)))

    def reply(self, request: Request, completion: Completion) -> dict:
        """The /generate reply for `completion` (also usable without HTTP)."""
        if completion.token_ids is not None:
            ids = list(completion.token_ids)
        else:
            ids = list(self.tokenizer.encode(completion.text, add_special_tokens=False))
        finish: dict[str, Any] = {"type": completion.mode}
        if completion.mode == "stop":
            end_id = self.tokenizer.convert_tokens_to_ids(completion.end_token)
            ids.append(end_id)
            finish["matched"] = end_id
        elif completion.mode == "abort":
            ids = ids[: completion.abort_after]
            finish["message"] = "Abort request"
        budget = int(request.body.get("sampling_params", {}).get("max_new_tokens", len(ids)))
        if len(ids) > budget and completion.mode != "abort":
            ids, finish = ids[:budget], {"type": "length", "length": budget}
        logprobs = [[script_logprob(i, token), token, None] for i, token in enumerate(ids)]
        return {
            "text": self.tokenizer.decode(ids, skip_special_tokens=True),
            "meta_info": {
                "id": f"standin-{len(self.requests)}",
                "finish_reason": finish,
                "prompt_tokens": len(request.input_ids),
                "completion_tokens": len(ids),
                "cached_tokens": 0,
                "output_token_logprobs": logprobs,
            },
        }


def script_logprob(position: int, token: int) -> float:
    """A deterministic, token-dependent log-prob, so tests can check it was copied through."""
    return -((token * 7 + position * 13) % 1000) / 1000.0 - 0.001


def turns_script(turns: list[Completion]) -> Script:
    """A script that answers the k-th assistant turn of every conversation with turns[k-1]."""

    def script(request: Request) -> Completion:
        index = min(request.assistant_turns, len(turns)) - 1
        return turns[index]

    return script

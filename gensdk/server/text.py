"""`/v1/completions` and `/v1/chat/completions`, OpenAI-compatible, with SSE streaming.

A streamed completion goes through `Engine.stream`: the client gets text only after the output policies have
seen it (see gensdk.streaming). The stream is started, and its first chunk taken, before the response
begins, so a request blocked by `check_request` (or a family error) is an ordinary 451 (or 500) answer. A
block later in the stream is an `error` event (no content) and the stream ends without `[DONE]`. A client
that disconnects, or stops reading for `limits.send_timeout_s`, ends the generation; the audit record of
what it was sent is committed all the same.

A client that stops reading. Every piece taken from the stream counts as released, so a piece is taken only
once the connection accepts data again: after each event an empty write waits (under send_timeout_s) until
the client has drained the connection's buffer. A client that never does is dropped at that wait, when
every piece taken has been handed to the connection, so the record holds exactly that text. No generation
thread waits on a slow client: the wait is on the event loop, between two pieces.

Keep-alive comments go through the same path: written by the stream itself while it waits for a generation
thread between two pieces, and drained before the next piece is taken (`_next_piece`); sse-starlette's own
ping task, which writes whenever its timer fires, is off.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator

from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError

from gensdk.errors import GensdkError, OutputBlocked
from gensdk.server.errors import ApiError, api_error_for, error_body, responses_for, result_fields
from gensdk.server.routing import json_answer, released_or_451, require, service_of
from gensdk.server.schemas import ChatCompletionRequest, ChatCompletionResponse, CompletionRequest, CompletionResponse

if TYPE_CHECKING:
    from fastapi.responses import JSONResponse

    from gensdk.result import Result
    from gensdk.server.keys import Principal
    from gensdk.server.service import ServedModel, Service
    from gensdk.streaming import TextStream

__all__ = ["router", "token_ids"]

log = logging.getLogger("gensdk.server")
router = APIRouter(tags=["text"])
_ERRORS = responses_for(400, 401, 403, 404, 408, 413, 422, 429, 451, 500, 503)
# One SSE event: `data` holds a JSON chunk (or an ErrorBody), the last one is the string [DONE].
_SSE_EVENT = {"type": "object", "required": ["data"],
              "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}}}
_SSE = {200: {"content": {"text/event-stream": {"schema": _SSE_EVENT}},
              "description": "JSON body, or with stream=true an SSE stream of chunks ending in data: [DONE]"}}
_FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


@router.post("/v1/completions", response_model=CompletionResponse, responses={**_ERRORS, **_SSE})
async def completions(body: CompletionRequest, request: Request, principal: Principal = Depends(require("generate"))) -> Any:
    """Complete one or more prompts (`n` completions each)."""
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    return await _complete(request, principal, body, {"prompts": prompts}, chat=False)


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses={**_ERRORS, **_SSE})
async def chat_completions(body: ChatCompletionRequest, request: Request, principal: Principal = Depends(require("generate"))) -> Any:
    """Answer one conversation (`n` answers)."""
    conversation = [m.model_dump() for m in body.messages]
    return await _complete(request, principal, body, {"messages": [conversation]}, chat=True)


async def _complete(request: Request, principal: Principal, body: Any, inputs: dict[str, Any], *, chat: bool) -> Any:
    service = service_of(request)
    served = service.model(body.model, "text")
    generation = _generation_request(service, request, principal, body, inputs)
    generation["params"] = _family_params(served.model, body, generation["params"])
    rid = request.state.request_id
    if body.stream:
        return await _stream(service, served, generation, body.model, chat, rid)

    def work() -> JSONResponse:  # the answer is encoded in the generation thread, off the shared event loop
        result = served.generate(generation)
        released_or_451(result)
        return json_answer(_answer(result, body.model, chat, rid, _prompt_tokens(served.model, inputs, chat)))

    return await service.run(work)


def _generation_request(service: Service, request: Request, principal: Principal, body: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    limits = service.config.limits
    max_tokens = getattr(body, "max_completion_tokens", None) or body.max_tokens
    units = len(inputs.get("prompts") or inputs["messages"])
    for value, limit, what in ((units, limits.max_prompts, "prompt"), (body.n, limits.max_outputs, "n"),
                               (max_tokens, limits.max_tokens, "max_tokens")):
        if value > limit:
            raise ApiError(422, "invalid_request", f"{what}: {value} is over this server's limit of {limit}", param=what)
    if not units:
        raise ApiError(422, "invalid_request", "prompt: give at least one prompt", param="prompt")
    stop = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
    params = {"max_new_tokens": max_tokens, "temperature": body.temperature, "top_p": body.top_p, "stop": stop}
    return {**inputs, "n": body.n, "seed": body.seed, "params": params,
            "request_id": service.request_id(principal, request.state.request_id)}


# Request fields that become family params, and the param each one is.
_PARAM_FIELDS = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens", "temperature": "temperature",
                 "top_p": "top_p", "stop": "stop"}


def _family_params(model: Any, body: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The sampling params the model's family takes. One the client set that the family does not take is a
    422; a default it does not take is left out (a test double, a family without sampling options)."""
    known = set(getattr(model.Params, "model_fields", {}))
    for field in body.model_fields_set & set(_PARAM_FIELDS):
        if _PARAM_FIELDS[field] not in known:
            raise ApiError(422, "invalid_request", f"{field}: model {body.model!r} ({model.id}) has no such option", param=field)
    return {k: v for k, v in params.items() if k in known}


def _answer(result: Result, model: str, chat: bool, rid: str, prompt_tokens: int) -> dict[str, Any]:
    released = [i for i, v in enumerate(result.output_verdicts) if v.releases]
    choices = []
    for index, output in zip(released, result.outputs):
        finish = _FINISH.get(output.metadata.get("finish_reason"), "stop")
        provenance = _manifest(output)
        if chat:
            choices.append({"index": index, "message": {"role": "assistant", "content": output.text},
                            "finish_reason": finish, "provenance": provenance})
        else:
            choices.append({"index": index, "text": output.text, "finish_reason": finish, "logprobs": None,
                            "provenance": provenance})
    completion_tokens = sum(int(o.metadata.get("new_tokens", 0)) for o in result.outputs)
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{result.audit_record_id}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "request_id": rid, **result_fields(result),
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def _prompt_tokens(model: Any, inputs: dict[str, Any], chat: bool) -> int:
    """Tokens of the prompts as the model reads them, each prompt once whatever `n` (OpenAI's count): plain
    prompts with the tokenizer's special tokens, conversations as the LLM family renders them (its chat
    template, else its `role: content` transcript ending in `assistant:`). A fast tokenizer does this in tens
    of microseconds per prompt. 0 for a family without a tokenizer."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return 0
    if not chat:
        return _count(tokenizer, inputs["prompts"], special=True)
    if getattr(tokenizer, "chat_template", None):  # the template writes its own special tokens
        rendered = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in inputs["messages"]]
        return _count(tokenizer, rendered, special=False)
    transcripts = ["".join(f"{m['role']}: {m['content']}\n" for m in c) + "assistant:" for c in inputs["messages"]]
    return _count(tokenizer, transcripts, special=True)


def _count(tokenizer: Any, texts: list[str], *, special: bool) -> int:
    return sum(len(token_ids(tokenizer, t, special=special)) for t in texts)


def token_ids(tokenizer: Any, text: str, *, special: bool) -> list[int]:
    """The ids of one text, without touching the tokenizer's settings. Calling a fast HF tokenizer sets (and
    resets) padding on the Rust tokenizer it shares with every thread, so a call without padding here can
    strip the padding off the LLM family's batched encode in another thread ("Unable to create tensor").
    Its Rust tokenizer encodes one text the same way and changes nothing; a single text is never padded."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer keeps no such state
        return list(tokenizer(text, add_special_tokens=special)["input_ids"])
    return list(backend.encode(text, add_special_tokens=special).ids)


def _manifest(output: Any) -> dict[str, Any] | None:
    manifest = output.metadata.get("provenance")
    return manifest if isinstance(manifest, dict) and "signature" in manifest else None


# -- streaming ----------------------------------------------------------------------------------------------------


class _Pump:
    """A TextStream driven from worker threads, one call at a time; `done` once it has ended either way."""

    def __init__(self, stream: TextStream):
        self.stream = stream
        self.done = False
        self._lock = threading.Lock()

    def next(self) -> str | None:
        with self._lock:
            try:
                return next(self.stream)
            except StopIteration:
                self.done = True
                return None
            except BaseException:
                self.done = True
                raise

    def close(self) -> None:
        """Cancel the generation and commit the record of what was sent (TextStream.close)."""
        with self._lock:
            if not self.done:
                self.done = True
                self.stream.close()


async def _stream(service: Service, served: ServedModel, generation: dict[str, Any], model: str, chat: bool, rid: str) -> Any:
    if generation["n"] != 1 or len(generation.get("prompts") or generation.get("messages")) != 1:
        raise ApiError(422, "invalid_request", "stream=true generates one completion: one prompt (or conversation) and n=1", param="stream")
    lookback = service.config.limits.stream_lookback
    stream = await service.run(lambda: served.engine.stream(served.model, generation, lookback=lookback))
    pump = _Pump(stream)
    try:
        first = await service.run(pump.next)
    except BaseException:
        await _close_shielded(pump)
        raise
    limits = service.config.limits
    frames = _frames(service, pump, first, _Chunker(model, chat, rid), limits.stream_ping_s)
    # ping=0: sse-starlette's own keep-alive task is off; _frames sends them (see _next_piece).
    return _EventStream(frames, send_timeout=limits.send_timeout_s, ping=0)


class _EventStream(EventSourceResponse):
    """An SSE response whose client stopped reading is a logged line, not an 'Exception in ASGI application'
    traceback: the generation is already cancelled and its record committed (see _frames)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            rid = scope.get("state", {}).get("request_id")
            log.warning("request %s: the client took no data for %g s; stream dropped", rid, self.send_timeout)


class _Chunker:
    """The JSON of each SSE event, in OpenAI's chunk format."""

    def __init__(self, model: str, chat: bool, rid: str):
        self.model, self.chat, self.rid = model, chat, rid
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{rid}"
        self.first = True

    def piece(self, text: str, finish: str | None = None) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"content": text} if text else {}
            if self.first:
                delta["role"] = "assistant"
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        self.first = False
        return {"id": self.id, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": int(time.time()), "model": self.model, "choices": [choice]}

    def final(self, result: Result) -> dict[str, Any]:
        body = self.piece("", "stop")
        output = result.outputs[0] if result.outputs else None
        if output is not None:
            body["choices"][0]["provenance"] = _manifest(output)
        return {**body, "request_id": self.rid, **result_fields(result)}


async def _frames(service: Service, pump: _Pump, first: str | None, chunker: _Chunker,
                  ping_s: float) -> AsyncIterator[dict[str, str] | bytes | ServerSentEvent]:
    try:
        piece = first
        while piece is not None:
            if piece:
                yield _event(chunker.piece(piece))
                yield _WRITABLE  # the next piece is taken only once the client drains the connection
            async with aclosing(_next_piece(service, pump, ping_s)) as frames:
                async for frame in frames:
                    if isinstance(frame, _Piece):
                        piece = frame.text
                    else:
                        yield frame
        yield _event(chunker.final(pump.stream.result))  # type: ignore[arg-type]
        yield {"data": "[DONE]"}
    except GensdkError as exc:  # blocked, or the model failed: the record is committed; no content follows
        error = api_error_for(exc)
        extra = error.extra if isinstance(exc, OutputBlocked) else {}
        yield _event(error_body(error.type, error.message, chunker.rid, **extra))
    finally:
        await _close_shielded(pump)


@dataclass
class _Piece:
    text: str | None  # None: the stream has ended


async def _next_piece(service: Service, pump: _Pump, ping_s: float) -> AsyncIterator[Any]:
    """Keep-alive frames while the stream waits for a generation thread, then the next piece (a _Piece).

    The stream writes its keep-alives itself, only between two pieces: each is drained like a piece before
    the next piece is taken, and none is written while a piece is being taken. A ping written by another
    task while a piece was being generated could fill the connection's buffer; the piece, already counted
    as released, would then be in the record and never delivered. (So a model slower than `stream_ping_s`
    a piece sends no keep-alive meanwhile; each piece is a write of its own.)"""
    borrower = object()
    while not await service.hold_thread(borrower, ping_s):
        yield _PING
        yield _WRITABLE
    yield _Piece(await service.run_held(borrower, pump.next))


async def _close_shielded(pump: _Pump) -> None:
    """Even when the request is being cancelled (client gone): the abandoned stream's record must commit."""
    import anyio

    if not pump.done:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(pump.close)


# A comment line (`: ping`): clients and proxies see traffic, EventSource ignores it.
_PING = ServerSentEvent(comment="ping")
# An empty write: uvicorn sends nothing, but first waits (under send_timeout_s) while its buffer for this
# connection is full. uvicorn waits *before* writing, so without it a timed-out piece would be counted as
# released but never written.
_WRITABLE = b""


def _event(body: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(body, default=str, ensure_ascii=False)}

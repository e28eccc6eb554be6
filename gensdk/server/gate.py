"""The gate every HTTP request passes before the application sees it (a plain ASGI middleware).

In order: a request id (a proxy's well-formed `X-Request-ID`, else our own); for /v1/ paths the API key (401)
and the key's rate (429), both before a byte of the body is read, so an unknown caller costs one header
lookup; then the body, read whole under a size limit (413, at once when Content-Length says so) and a time
limit (408: slow uploads cannot hold a worker), and replayed to the application. Later `receive` calls go
to the client, so a streaming endpoint still hears a disconnect. One log line per request: method, path (no
query string), status, time, key *name*, request id. Keys, prompts and bodies are never logged.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import anyio

from gensdk.server.errors import error_body

if TYPE_CHECKING:
    from gensdk.server.config import LimitsConfig
    from gensdk.server.keys import KeyRing

__all__ = ["Gate"]

log = logging.getLogger("gensdk.server.access")

# An incoming X-Request-ID is adopted when it looks like an id (Ray Serve's and most proxies' are UUIDs), so a
# request has one id from the proxy's log to the audit record. It goes into headers, logs and the record's
# `http:<key name>:<id>`: no colons, spaces or control characters, and a bounded length.
_INCOMING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Refused(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers or {}


def _route_path(scope: dict[str, Any]) -> str:
    """The path the routes match, below any root path a proxy or mount sets (as Starlette's router sees it):
    the key check must cover every route the app serves, wherever it is mounted."""
    root, path = scope.get("root_path", ""), scope["path"]
    return path[len(root):] or "/" if root and path.startswith(root) else path


class Gate:
    def __init__(self, app: Any, keys: KeyRing, limits: LimitsConfig):
        self.app, self.keys, self.limits = app, keys, limits
        self._ids = _RequestIds()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        rid = _incoming_id(headers) or self._ids.next()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        started, status = time.perf_counter(), [0]
        send = _tagged(send, rid, status)
        try:
            if _route_path(scope).startswith("/v1/"):
                state["principal"] = self._admit(headers)
            body = await self._read_body(headers, receive)
        except _Refused as refused:
            await _send_error(send, refused, rid)
        else:
            if body is not None:
                await self.app(scope, _replay(body, receive), send)
        finally:
            principal = state.get("principal")
            log.info("%s %s -> %s in %.1f ms (key %s, %s)", scope["method"], scope["path"], status[0] or "-",
                     (time.perf_counter() - started) * 1000, principal.name if principal else "-", rid)

    def _admit(self, headers: dict[str, str]) -> Any:
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _Refused(401, "unauthorized", "an API key is required: send 'Authorization: Bearer <key>'",
                           {"WWW-Authenticate": "Bearer"})
        principal = self.keys.identify(presented.strip())
        if principal is None:
            raise _Refused(401, "unauthorized", "the API key is not valid", {"WWW-Authenticate": "Bearer"})
        wait = self.keys.limits[principal.name].take()
        if wait > 0:
            raise _Refused(429, "rate_limited", f"the rate limit of key {principal.name!r} is used up; retry in {wait:.1f} s",
                           {"Retry-After": str(max(1, math.ceil(wait)))})
        return principal

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes | None:
        """The whole body, or None when the client went away while sending it."""
        limit = self.limits.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Refused(413, "request_too_large", f"the request body is {declared} bytes; the limit is {limit}")
        chunks, size = [], 0
        try:
            with anyio.fail_after(self.limits.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _Refused(413, "request_too_large", f"the request body is over the limit of {limit} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(408, "request_timeout", f"the request body did not arrive within {self.limits.body_timeout_s:g} s") from None


class _RequestIds:
    """`req_` and 32 hex digits, unique per process: a random prefix and a counter. Not uuid4: os.urandom
    lets go of the GIL, and on a busy server the event loop then waits for it back, on every request."""

    def __init__(self) -> None:
        self._pid = -1

    def next(self) -> str:
        if self._pid != os.getpid():  # a forked worker must not repeat its parent's ids
            self._pid, self._prefix, self._count = os.getpid(), secrets.token_hex(8), itertools.count()
        return f"req_{self._prefix}{next(self._count):016x}"


def _incoming_id(headers: dict[str, str]) -> str | None:
    """The client's or proxy's X-Request-ID when it is well-formed; None (we mint one) otherwise."""
    presented = headers.get("x-request-id", "")
    return presented if _INCOMING_ID.fullmatch(presented) else None


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _tagged(send: Send, rid: str, status: list[int]) -> Send:
    """Adds X-Request-ID to every response and remembers its status for the log line."""

    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
            message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
        await send(message)

    return tagged


async def _send_error(send: Send, refused: _Refused, rid: str) -> None:
    body = json.dumps(error_body(refused.type, refused.message, rid)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in refused.headers.items()]
    if refused.status in (408, 413):
        headers.append((b"connection", b"close"))  # the rest of the body is never read
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})

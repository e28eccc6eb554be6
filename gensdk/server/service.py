"""What the HTTP layer serves: one Engine, the configured models (each with its batcher), the API keys, and
a bounded pool of threads that runs everything that blocks.

Start-up is all or nothing: the engine (policies, audit trail) is built and every model is loaded before the
server listens, and anything wrong is one ConfigError naming the model or key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

from gensdk.batching import Batcher
from gensdk.engine import Engine
from gensdk.errors import ConfigError, GensdkError
from gensdk.family import ModelFamily
from gensdk.result import Result
from gensdk.server.config import ModelConfig, ServerConfig
from gensdk.server.errors import ApiError
from gensdk.server.keys import KeyRing, Principal

__all__ = ["Service", "ServedModel"]

log = logging.getLogger("gensdk.server")
T = TypeVar("T")


@dataclass
class ServedModel:
    name: str
    model: ModelFamily
    engine: Engine
    batcher: Batcher | None  # None: every request runs on its own (batching switched off)

    def generate(self, request: dict[str, Any]) -> Result:
        """Blocking: through the batcher when there is one (it runs unbatchable requests alone)."""
        if self.batcher is not None:
            return self.batcher.generate(request)
        return self.engine.generate(self.model, request)


class Service:
    def __init__(self, config: ServerConfig, *, plugins: Iterable[Any] = (), load_entrypoints: bool = True):
        self.config = config
        self.keys = KeyRing(config.keys)
        self.engine = Engine(config.engine, plugins=plugins, load_entrypoints=load_entrypoints)
        try:
            self.models = {name: self._load(name, mc) for name, mc in config.models.items()}
        except BaseException:
            self.close()
            raise
        self._limiter: Any = None
        self._unbounded: Any = None
        self._busy = 0

    def _load(self, name: str, mc: ModelConfig) -> ServedModel:
        try:
            model = self.engine.load_model(mc.path, **mc.load)
        except TypeError as exc:  # an option the family's load() does not take
            raise ConfigError(f"models.{name}.load: {exc}") from None
        except GensdkError as exc:
            raise ConfigError(f"models.{name}: {exc}") from None
        batcher = None
        if mc.batching.enabled and mc.batching.max_batch > 1:
            batcher = Batcher(self.engine, model, max_batch=mc.batching.max_batch, wait_s=mc.batching.wait_ms / 1000)
        served = ServedModel(name, model, self.engine, batcher)
        log.info("model %r: %s from %s%s", name, model.id, mc.path, " (dynamic batching)" if batcher and batcher.kind else "")
        return served

    def model(self, name: str, modality: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            raise ApiError(404, "not_found", f"no model {name!r} on this server (known: {', '.join(sorted(self.models))})", param="model")
        if served.model.modality != modality:
            raise ApiError(422, "invalid_request", f"model {name!r} makes {served.model.modality}s, not {modality}s", param="model")
        return served

    def request_id(self, principal: Principal, rid: str) -> str:
        """The request id the audit record keeps: who asked (the key's name) and the HTTP request id."""
        return f"http:{principal.name}:{rid}"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work in the bounded thread pool; 503 when too many requests already wait for it."""
        import anyio

        listen = self.config.server
        if self._busy >= listen.generation_threads + listen.max_pending:
            raise ApiError(503, "overloaded", "too many requests are waiting; retry shortly", headers={"Retry-After": "1"})
        self._busy += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads())
        finally:
            self._busy -= 1

    async def hold_thread(self, borrower: object, wait_s: float) -> bool:
        """For a request already admitted (the next chunk of a stream): reserve one of the generation threads
        for `borrower`, waiting at most `wait_s`. False when none came free in time (nothing is held then);
        never refused. A stream uses the wait to send a keep-alive between two pieces (see gensdk.server.text)."""
        import anyio

        with anyio.move_on_after(wait_s):
            await self._threads().acquire_on_behalf_of(borrower)
            return True
        return False

    async def run_held(self, borrower: object, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work on the thread `hold_thread` reserved for `borrower`, then give it back."""
        import anyio

        try:
            # The place is already counted against generation_threads: run outside that limiter (in a
            # thread of an unbounded one, so anyio's default of 40 threads caps nothing).
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._unbounded)
        finally:
            self._threads().release_on_behalf_of(borrower)

    def _threads(self) -> Any:
        """The generation threads' limiter, made on first use (inside the event loop, as anyio wants)."""
        import math

        import anyio

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.config.server.generation_threads)
            self._unbounded = anyio.CapacityLimiter(math.inf)
        return self._limiter

    def close(self) -> None:
        for served in getattr(self, "models", {}).values():
            if served.batcher is not None:
                served.batcher.close()
        self.engine.close()

"""Online generation on Ray Serve: each replica holds one Engine with the configured policies.

    from ray import serve
    from gensdk.distributed.serve import engine_app

    serve.run(engine_app("gensdk.toml", {"shakespeare": "models/shakespeare"}, num_replicas=2), route_prefix="/generate")

or, from a shell, through Ray Serve's own CLI and the `app_builder` below:

    serve run gensdk.distributed.serve:app_builder config=gensdk.toml models=shakespeare=models/shakespeare

One POST per generation, JSON in and out:

    {"model": "shakespeare", "prompts": ["ROMEO:"], "n": 2, "seed": 7, "params": {...}, "request_id": "..."}

| status | when | body |
|---|---|---|
| 200 | at least one output released | request_id, verdict, outputs (released only), blocked, findings, policies, audit_record_id, audit_hash, seed |
| 400 | not JSON, not an object, or an invalid request | {"error": {"type": "invalid_request", "message"}} |
| 404 | a model name the deployment does not serve | {"error": {"type": "unknown_model", "message"}} |
| 422 | every output was blocked | {"error": {"type": "output_blocked", ...}, verdict, blocked, findings, audit_record_id}: never the content |
| 500 | the model failed while generating | {"error": {"type": "generation_failed", "message"}} (the failure is in the audit trail) |

A request cannot switch a policy off: `disable_policies` is not accepted here. Every replica appends to the
configured audit trail; with several replicas use PostgreSQL, or SQLite when they all run on one machine.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from gensdk.errors import ConfigError, GensdkError, ModelError, RequestError

__all__ = ["EngineServer", "app_builder", "engine_app"]

DEPLOYMENT_NAME = "gensdk-engine"
_REQUEST_FIELDS = ("n", "seed", "prompts", "messages", "conditions", "params", "request_id")


class EngineServer:
    """The deployment's class: Ray Serve builds one per replica and calls it with each HTTP request."""

    def __init__(
        self,
        config: Any = None,
        models: Mapping[str, str] | None = None,
        *,
        audit: str | None = None,
        plugins: Sequence[str] = (),
        load_entrypoints: bool = True,
    ):
        from gensdk.distributed.job import import_plugins
        from gensdk.engine import Engine

        modules = import_plugins(plugins)
        self.engine = Engine(config, audit=audit, plugins=modules, load_entrypoints=load_entrypoints)
        # Loaded now, so a bad model directory stops the replica at start-up instead of failing requests.
        self.models = {name: self.engine.load_model(path) for name, path in (models or {}).items()}
        self._lock = threading.Lock()  # one generation at a time per replica; scale with num_replicas

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            payload = json.loads(await request.body())
        except ValueError as exc:
            return JSONResponse(_error("invalid_request", f"the body is not JSON: {exc}"), status_code=400)
        status, body = await asyncio.to_thread(self.handle, payload)
        return JSONResponse(body, status_code=status)

    def handle(self, payload: Any) -> tuple[int, dict[str, Any]]:
        """Status code and JSON body for one decoded request (what `__call__` sends back)."""
        if not isinstance(payload, dict):
            return 400, _error("invalid_request", "the body must be a JSON object")
        unknown = sorted(set(payload) - {"model", *_REQUEST_FIELDS})
        if unknown:
            accepted = ", ".join(("model", *_REQUEST_FIELDS))
            return 400, _error("invalid_request", f"unknown field(s) {', '.join(unknown)}; accepted: {accepted}")
        name = payload.get("model")
        if name not in self.models:
            served = ", ".join(sorted(self.models))
            return 404, _error("unknown_model", f"model {name!r} is not served here (served: {served})")
        request = {k: v for k, v in payload.items() if k != "model"}
        try:
            with self._lock:
                result = self.engine.generate(self.models[name], request)
        except RequestError as exc:
            return 400, _error("invalid_request", str(exc))
        except ModelError as exc:
            return 500, _error("generation_failed", str(exc))
        except GensdkError as exc:
            return 500, _error(type(exc).__name__, str(exc))
        return _result_response(result, request.get("request_id"))

    def close(self) -> None:
        self.engine.close()

    def __del__(self) -> None:  # Ray Serve's shutdown hook for a replica: release the audit connection
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


def engine_app(
    config: Any = None,
    models: Mapping[str, str] | None = None,
    *,
    audit: str | None = None,
    plugins: Sequence[str] = (),
    load_entrypoints: bool = True,
    num_replicas: int = 1,
    ray_actor_options: Mapping[str, Any] | None = None,
) -> Any:
    """A bound Ray Serve application of `EngineServer`; pass it to `serve.run`. Give each replica a GPU with
    ray_actor_options={"num_gpus": 1}."""
    try:
        from ray import serve
    except ImportError:
        from gensdk.errors import MissingDependencyError

        raise MissingDependencyError("ray", "ray", "the Ray Serve deployment") from None
    if isinstance(config, (str, Path)):
        from gensdk.config import load_config

        config = load_config(config).model_dump(mode="json")  # replicas may run where the file is not
    deployment = serve.deployment(
        EngineServer, name=DEPLOYMENT_NAME, num_replicas=num_replicas, ray_actor_options=dict(ray_actor_options or {})
    )
    models = {name: str(Path(path).expanduser().absolute()) for name, path in (models or {}).items()}
    return deployment.bind(config, models, audit=audit, plugins=tuple(plugins), load_entrypoints=load_entrypoints)


def app_builder(args: Mapping[str, str]) -> Any:
    """For `serve run gensdk.distributed.serve:app_builder config=gensdk.toml models=NAME=DIR[,NAME=DIR...]
    [audit=TARGET] [num_replicas=N] [plugins=MODULE[,MODULE...]]`."""
    models = dict(item.split("=", 1) for item in args.get("models", "").split(",") if "=" in item)
    if not models:
        raise ConfigError("app_builder needs models=NAME=DIR[,NAME=DIR...]")
    plugins = [name for name in args.get("plugins", "").split(",") if name]
    replicas = args.get("num_replicas", "1")
    if not replicas.isdigit() or int(replicas) < 1:
        raise ConfigError(f"app_builder: num_replicas must be a positive integer, got {replicas!r}")
    return engine_app(args.get("config"), models, audit=args.get("audit"), plugins=plugins, num_replicas=int(replicas))


# --- responses -------------------------------------------------------------------------------------------------


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def _result_response(result: Any, request_id: str | None) -> tuple[int, dict[str, Any]]:
    common = {
        "request_id": request_id,
        "verdict": result.verdict.value,
        "blocked": result.blocked,
        "findings": [f.to_record() for f in result.findings],
        "policies": [{"id": o.policy_id, "status": o.status, "verdict": o.verdict.value, "error": o.error}
                     for o in result.outcomes],
        "audit_record_id": result.audit_record_id,
        "audit_hash": result.audit_hash,
        "seed": result.seed,
    }
    if not result.outputs:
        generated = len(result.output_verdicts)
        message = f"all {generated} outputs were blocked" if generated else "the request was blocked before generation"
        return 422, {**_error("output_blocked", message), **common}
    return 200, {**common, "outputs": [_output_json(o) for o in result.outputs]}


def _output_json(output: Any) -> dict[str, Any]:
    # The digest is the one the audit record lists for this output.
    common = {"modality": output.modality, "digest": output.metadata.get("digest")}
    if output.modality == "text":
        return {**common, "text": output.text, "prompt": output.prompt}
    if output.modality == "table":
        return {**common, "rows": json.loads(output.frame.to_json(orient="records"))}
    buffer = io.BytesIO()
    output.to_pil().save(buffer, format="PNG")
    return {**common, "png_base64": base64.b64encode(buffer.getvalue()).decode()}

"""Online generation on Ray Serve: `gensdk serve`'s own FastAPI application, one Service per replica.

    from ray import serve
    from gensdk.distributed.serve import server_app

    serve.run(server_app("serve.toml", num_replicas=2), name="gensdk", route_prefix="/")

or, from a shell, through Ray Serve's own CLI and the `app_builder` below:

    serve run gensdk.distributed.serve:app_builder config=serve.toml num_replicas=2

The configuration is `gensdk serve`'s (docs/server.md): the same models, API keys, limits and policies. Each
replica builds the same `Service` (engine, policies, audit sink, models, batchers) that `gensdk serve` builds,
and Ray Serve wraps the application `gensdk.server.create_app` makes from it (`serve.ingress`), so a client
sees the same endpoints, key checks, status codes and error bodies, and a request cannot switch a policy off
here either. What changes is who listens: Ray's HTTP proxy instead of uvicorn, so `[server] host` and `port`
are not used (`serve.start(http_options=...)` sets them), and the proxy adds its own `X-Request-ID` header.

Every replica appends to the configured audit trail; replicas on several machines need PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from gensdk.errors import ConfigError, MissingDependencyError

__all__ = ["DEPLOYMENT_NAME", "app_builder", "replica_app", "server_app"]

DEPLOYMENT_NAME = "gensdk-server"


def replica_app(config: dict[str, Any], plugins: Sequence[str] = (), load_entrypoints: bool = True) -> Any:
    """What each replica serves: the Service `gensdk serve` would build from the same configuration, behind the
    application `create_app` makes of it. Runs in the replica, when Ray Serve starts it."""
    from gensdk.distributed.job import import_plugins
    from gensdk.server import ServerConfig, Service, create_app

    # All or nothing, as in `gensdk serve`: a model that does not load stops the replica at start-up.
    service = Service(ServerConfig.parse(config), plugins=import_plugins(plugins), load_entrypoints=load_entrypoints)
    # create_app's lifespan closes the Service (batchers drained, audit trail closed) when the replica stops.
    return _MountedAtRoot(create_app(service))


def server_app(
    config: Any,
    *,
    plugins: Sequence[str] = (),
    load_entrypoints: bool = True,
    num_replicas: int = 1,
    ray_actor_options: Mapping[str, Any] | None = None,
    max_ongoing_requests: int | None = None,
) -> Any:
    """A bound Ray Serve application of `gensdk serve`'s HTTP API; pass it to `serve.run`.

    `config` is a server configuration (a TOML path, a dict or a ServerConfig), checked here, on the driver
    (the configuration, every model directory, the engine's policies and audit trail), so a mistake is one
    clear error before any replica starts. `plugins` are importable module names registered in
    every replica beside (or, with load_entrypoints=False, instead of) the entry points. Give each replica a
    GPU with ray_actor_options={"num_gpus": 1}. `max_ongoing_requests` (default: the configuration's
    generation_threads + max_pending) is how many requests Ray lets into one replica at a time; the
    application itself answers 503 `overloaded` beyond its own limits, as `gensdk serve` does.
    """
    serve = _import_serve()
    parsed = _portable(_parse(config))
    _check_engine(parsed, plugins, load_entrypoints)
    listen = parsed.server
    portable = parsed.model_dump(mode="json")
    plugin_names = tuple(plugins)

    def build_app() -> Any:  # serve.ingress calls it in each replica (a function, so Ray pickles it by value)
        return replica_app(portable, plugin_names, load_entrypoints)

    deployment = serve.deployment(
        serve.ingress(build_app)(),
        name=DEPLOYMENT_NAME,
        num_replicas=num_replicas,
        ray_actor_options=dict(ray_actor_options or {}),
        max_ongoing_requests=max_ongoing_requests or listen.generation_threads + listen.max_pending,
    )
    return deployment.bind()


def app_builder(args: Mapping[str, str]) -> Any:
    """For `serve run gensdk.distributed.serve:app_builder config=serve.toml [num_replicas=N]
    [plugins=MODULE[,MODULE...]]`."""
    if not args.get("config"):
        raise ConfigError("app_builder needs config=SERVER.toml (the configuration `gensdk serve` takes)")
    unknown = sorted(set(args) - {"config", "num_replicas", "plugins"})
    if unknown:
        raise ConfigError(f"app_builder: unknown argument(s) {', '.join(unknown)}; accepted: config, num_replicas, plugins")
    replicas = args.get("num_replicas", "1")
    if not replicas.isdigit() or int(replicas) < 1:
        raise ConfigError(f"app_builder: num_replicas must be a positive integer, got {replicas!r}")
    plugins = [name for name in args.get("plugins", "").split(",") if name]
    return server_app(args["config"], plugins=plugins, num_replicas=int(replicas))


# --- the configuration, made to travel --------------------------------------------------------------------------


def _parse(config: Any) -> Any:
    from gensdk.server.config import ServerConfig

    return ServerConfig.parse(config)


def _portable(config: Any) -> Any:
    """Model directories and an SQLite audit path made absolute (a replica's working directory is not the
    driver's), and each model directory checked here, so a wrong path is a ConfigError before Ray starts a
    replica that would fail on it. Other paths (policy key files) must be valid where the replicas run."""
    models = {}
    for name, model in config.models.items():
        path = model.path.expanduser().absolute()
        if not path.is_dir():
            raise ConfigError(f"models.{name}.path: {model.path} is not a directory")
        models[name] = model.model_copy(update={"path": path})
    engine = config.engine
    audit = os.fspath(engine.audit) if engine.audit else None
    if audit and "://" not in audit:
        engine = engine.model_copy(update={"audit": str(Path(audit).expanduser().absolute())})
    return config.model_copy(update={"models": models, "engine": engine})


def _check_engine(config: Any, plugins: Sequence[str], load_entrypoints: bool) -> None:
    """Build the engine once here: an unknown policy, a bad policy option, a plugin that does not import or an
    audit trail that cannot be opened is then one clear error on the driver, where Ray would only report that
    the deployment failed (the cause in the replica's log). No model is loaded (the replicas do that), and the
    device is left to the replicas, which may have GPUs the driver lacks."""
    from gensdk.distributed.job import import_plugins
    from gensdk.engine import Engine

    engine_config = config.engine.model_copy(update={"device": "auto"})  # "auto" is resolved on first use only
    with Engine(engine_config, plugins=import_plugins(plugins), load_entrypoints=load_entrypoints):
        pass


def _import_serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise MissingDependencyError("ray", "ray", "the Ray Serve deployment") from None
    return serve


# --- the ASGI side ----------------------------------------------------------------------------------------------


class _MountedAtRoot:
    """Ray Serve hands an application deployed under route_prefix="/gensdk" the full path, with root_path
    "/gensdk". gensdk's gate checks API keys on paths that start with /v1/, so each request is shown to the app
    as if it were mounted at "/": the key check and the routes see the same path whatever the prefix."""

    def __init__(self, app: Any):
        self.app = app

    def __getattr__(self, name: str) -> Any:  # Ray adds its exception handlers to the FastAPI app through us
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        root = scope.get("root_path", "")
        if scope["type"] in ("http", "websocket") and root and scope["path"].startswith(root):
            scope = {**scope, "path": scope["path"][len(root):] or "/", "root_path": ""}
        await self.app(scope, receive, send)

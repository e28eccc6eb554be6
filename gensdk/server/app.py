"""The FastAPI application and the uvicorn runner.

    service = Service(load_server_config("serve.toml"))   # engine, policies, models, keys: or ConfigError
    app = create_app(service)                              # an ASGI app
    serve(service)                                         # uvicorn on [server] host and port, until SIGTERM

The OpenAPI document is at /openapi.json. The interactive /docs pages are off: they load scripts from a CDN,
and a gensdk server fetches nothing.
"""

from __future__ import annotations

import logging
import socket
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator

from gensdk.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gensdk.server.service import Service

__all__ = ["bind", "create_app", "log_config", "serve", "uvicorn_server"]

log = logging.getLogger("gensdk.server")


def create_app(service: Service) -> FastAPI:
    from fastapi import FastAPI

    from gensdk import __version__
    from gensdk.server import checks, media, text
    from gensdk.server.errors import install_handlers
    from gensdk.server.gate import Gate

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()  # batchers drained, audit trail closed

    app = FastAPI(title="gensdk", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Generation behind fail-closed policies and a tamper-evident audit trail. "
                              "Every answer carries the verdict, the findings and the audit record id.")
    app.state.service = service
    for router in (text.router, media.router, checks.router):
        app.include_router(router)
    install_handlers(app)
    app.add_middleware(Gate, keys=service.keys, limits=service.config.limits)
    _document_models(app, service)
    return app


# Request bodies whose "model" names a served model of one modality.
_MODEL_FIELDS = {"CompletionRequest": "text", "ChatCompletionRequest": "text", "TextDetect": "text",
                 "ImageRequest": "image", "TableRequest": "table"}


def _document_models(app: FastAPI, service: Service) -> None:
    """The OpenAPI document lists, for each "model" field, the names this server serves of that modality."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            for schema_name, modality in _MODEL_FIELDS.items():
                field = doc["components"]["schemas"].get(schema_name, {}).get("properties", {}).get("model")
                names = sorted(n for n, s in service.models.items() if s.model.modality == modality)
                if field is not None and names:
                    field["enum"] = names
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before uvicorn starts so that a taken port is a clear start-up error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # listening now: a port another server holds fails here, not later inside uvicorn
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def log_config(level: str, access_log: bool = True) -> dict[str, Any]:
    """gensdk's loggers and uvicorn's on stderr. sse_starlette logs every chunk it sends at DEBUG, i.e.
    generated text: it is held at WARNING whatever the level."""
    upper = level.upper()
    access = upper if access_log else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "loggers": {
            "gensdk": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "gensdk.server.access": {"level": access},  # the gate's line per request
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # the gate logs requests
            "sse_starlette": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }


def uvicorn_server(service: Service, app: Any = None, *, configure_logging: bool = True) -> Any:
    """A uvicorn.Server for the service. configure_logging=False leaves the process's logging alone (an
    embedding application, tests)."""
    import uvicorn

    listen = service.config.server
    logging_config = log_config(listen.log_level, listen.access_log) if configure_logging else None
    config = uvicorn.Config(app or create_app(service), log_config=logging_config, access_log=False,
                            limit_concurrency=listen.max_connections, timeout_keep_alive=5, lifespan="on",
                            server_header=False)
    return uvicorn.Server(config)


def serve(service: Service) -> None:
    """Listen on the configured host and port until SIGINT or SIGTERM, then drain and close."""
    listen = service.config.server
    sock = bind(listen.host, listen.port)
    server = uvicorn_server(service)
    host, port = sock.getsockname()[:2]
    # Always said, whatever the log level: with port 0 it is the only way to learn the address.
    print(f"gensdk serving {len(service.models)} model(s) on http://{host}:{port}", file=sys.stderr, flush=True)
    server.run(sockets=[sock])

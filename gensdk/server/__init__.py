"""gensdk's HTTP service: the engine, its policies and its audit trail behind an OpenAI-compatible API.

    gensdk serve serve.toml                       # see docs/server.md

    from gensdk.server import Service, create_app, load_server_config
    app = create_app(Service(load_server_config("serve.toml")))     # any ASGI server

Needs the `server` extra (fastapi, uvicorn, sse-starlette); importing gensdk never imports it.
"""

from __future__ import annotations

from typing import Any

from gensdk.server.config import ServerConfig, load_server_config

__all__ = ["ServerConfig", "Service", "create_app", "load_server_config"]


def __getattr__(name: str) -> Any:
    # The web stack is imported when first used, with a message naming the extra when it is missing.
    if name not in ("Service", "create_app"):
        raise AttributeError(name)
    try:
        import fastapi  # noqa: F401
        import sse_starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        from gensdk.errors import MissingDependencyError

        raise MissingDependencyError(exc.name or "fastapi", "server", "The HTTP service") from None
    from gensdk.server.app import create_app
    from gensdk.server.service import Service

    return {"Service": Service, "create_app": create_app}[name]

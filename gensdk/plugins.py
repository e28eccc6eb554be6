"""Plugin discovery: a fresh pluggy manager per engine (or CLI run), nothing global, nothing at import time.

Switches, read when a manager is built:

* ``GENSDK_LOAD_PLUGINS=a,b``   load only these entry points (an allow-list; empty string loads none)
* ``GENSDK_DISABLE_PLUGINS=a,b`` never load these (logged, and listed by ``gensdk plugins``)
* ``GENSDK_TRACE_PLUGINS=1``    log every hook call and its result (pluggy hook-call monitoring)

The core's own plugin (`gensdk._builtin`: the SQLite audit sink) is essential and cannot be disabled.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Iterable

import pluggy

from gensdk import hookspecs
from gensdk._markers import PROJECT_NAME
from gensdk.errors import DuplicateRegistrationError, PluginError, PluginLoadError
from gensdk.registry import Registrar, Registry

__all__ = ["ENTRYPOINT_GROUP", "PluginHost", "PluginInfo", "get_plugin_host"]

ENTRYPOINT_GROUP = "gensdk"
ESSENTIAL_PLUGIN = "gensdk.builtin"
log = logging.getLogger("gensdk.plugins")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    status: str  # "loaded", "disabled", "not in GENSDK_LOAD_PLUGINS", "essential", "passed in"


@dataclass
class PluginHost:
    """A plugin manager plus the registries its plugins filled."""

    pm: pluggy.PluginManager
    families: Registry[Any]
    policies: Registry[Any]
    sinks: Registry[Any]
    plugins: list[PluginInfo] = field(default_factory=list)

    def distribution_of(self, plugin_name: str) -> str:
        for info in self.plugins:
            if info.name == plugin_name:
                return info.distribution
        return "unknown distribution"


def get_plugin_host(plugins: Iterable[Any] = (), load_entrypoints: bool = True) -> PluginHost:
    """Build a fresh manager: essential plugin, entry points (filtered by the env switches), `plugins`."""
    from gensdk import _builtin
    from gensdk.audit import AuditSink
    from gensdk.family import ModelFamily
    from gensdk.policy import Policy

    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos = [PluginInfo(ESSENTIAL_PLUGIN, _core_distribution(), "essential")]
    pm.register(_builtin, name=ESSENTIAL_PLUGIN)
    if load_entrypoints:
        infos += _load_entrypoints(pm)
    for plugin in plugins:
        infos.append(_register_passed_in(pm, plugin))
    _maybe_trace(pm)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements a hook gensdk does not define: {exc}") from None
    host = PluginHost(
        pm,
        families=Registry("model family", ModelFamily),
        policies=Registry("policy", Policy),
        sinks=Registry("audit sink", AuditSink, id_attr="scheme"),
        plugins=infos,
    )
    _collect(host, "register_model_families", host.families)
    _collect(host, "register_policies", host.policies)
    _collect(host, "register_audit_sinks", host.sinks)
    return host


def _load_entrypoints(pm: pluggy.PluginManager) -> list[PluginInfo]:
    allow = _env_list("GENSDK_LOAD_PLUGINS")
    block = _env_list("GENSDK_DISABLE_PLUGINS") or set()
    infos = []
    for ep in sorted(entry_points(group=ENTRYPOINT_GROUP), key=lambda e: e.name):
        dist = _distribution_name(ep)
        if ep.name in block:
            log.warning("plugin %r (%s) is disabled by GENSDK_DISABLE_PLUGINS", ep.name, dist)
            infos.append(PluginInfo(ep.name, dist, "disabled"))
            continue
        if allow is not None and ep.name not in allow:
            infos.append(PluginInfo(ep.name, dist, "not in GENSDK_LOAD_PLUGINS"))
            continue
        _register_named(pm, _import_entrypoint(ep, dist), ep.name, dist)
        infos.append(PluginInfo(ep.name, dist, "loaded"))
    return infos


def _import_entrypoint(ep: EntryPoint, dist: str) -> Any:
    try:
        return ep.load()
    except Exception as exc:  # never swallowed: name the entry point and where it came from
        raise PluginLoadError(
            f"plugin entry point {ep.name!r} = {ep.value!r} from distribution {dist} failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _register_named(pm: pluggy.PluginManager, plugin: Any, name: str, dist: str) -> None:
    if pm.has_plugin(name):
        raise DuplicateRegistrationError(f"two plugins are named {name!r}; the second comes from {dist}")
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:  # pluggy: the same object registered twice under two names
        raise DuplicateRegistrationError(f"plugin {name!r} ({dist}) is already registered: {exc}") from None
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} ({dist}) has an invalid hook implementation: {exc}") from None


def _register_passed_in(pm: pluggy.PluginManager, plugin: Any) -> PluginInfo:
    name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin):x}"
    module = getattr(plugin, "__module__", None) or name
    dist = f"passed in ({module})"
    _register_named(pm, plugin, name, dist)
    return PluginInfo(name, dist, "passed in")


def _collect(host: PluginHost, hook_name: str, registry: Registry[Any]) -> None:
    """Call a register_* hook plugin by plugin, each with a registrar bound to it."""
    caller = getattr(host.pm.hook, hook_name)
    for impl in caller.get_hookimpls():
        others = [p for p in host.pm.get_plugins() if p is not impl.plugin]
        registrar = Registrar(registry, impl.plugin_name, host.distribution_of(impl.plugin_name))
        host.pm.subset_hook_caller(hook_name, others)(register=registrar)


def _maybe_trace(pm: pluggy.PluginManager) -> None:
    if os.environ.get("GENSDK_TRACE_PLUGINS", "") not in ("1", "true", "yes"):
        return
    trace = logging.getLogger("gensdk.plugins.trace")
    if not trace.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("gensdk trace: %(message)s"))
        trace.addHandler(handler)
        trace.setLevel(logging.DEBUG)

    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        trace.debug("%s -> %s", hook_name, [i.plugin_name for i in impls])

    def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        trace.debug("%s <- %s", hook_name, "error" if outcome.exception else "ok")

    pm.add_hookcall_monitoring(before, after)


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _distribution_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def _core_distribution() -> str:
    from gensdk import __version__

    return f"gensdk {__version__}"

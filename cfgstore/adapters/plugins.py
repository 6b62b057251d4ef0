"""The plugin manager: hookspecs, entry-point discovery and the environment controls.

``CFGSTORE_LOAD_PLUGINS`` (comma list) loads only the named entry points;
``CFGSTORE_DISABLE_PLUGINS`` blocks some; ``CFGSTORE_TRACE_PLUGINS=1`` logs every hook call.

Isolation: each entry point is loaded, checked (:mod:`cfgstore.adapters.validation`) and
registered on its own, then asked on its own for its backends
(:mod:`cfgstore.adapters.offers`). A plugin that fails any step (import error, unknown
hook, wrong arguments, sync where the spec is async, an exception while announcing its
backends, a backend whose implementation is unsound) is recorded in
:attr:`PluginSet.failures` with its distribution and the problem on one line, and skipped
entirely; the other plugins, and every chain not naming its backends, work as before.

Distributions that define hooks for others to implement (the gateway's adapters) announce
their specification modules in the entry-point group ``cfgstore.hookspecs``: they are
added before any plugin is checked, so an implementation of such a hook is checked like
any other, and is found whichever marker it uses.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points

import attrs
import pluggy

from cfgstore.adapters.offers import offered_backends, one_line
from cfgstore.adapters.validation import hookimpl_problems
from cfgstore.hookspecs import PROJECT, spec_modules

log = logging.getLogger("cfgstore.plugins")

ENTRY_POINT_GROUP = "cfgstore"
HOOKSPECS_GROUP = "cfgstore.hookspecs"
"""Entry points naming modules of hook specifications (``gateway = cfgstore_gateway.hookspecs``)."""


@attrs.frozen
class PluginFailure:
    """A plugin that was skipped. ``distribution`` is ``"name version"`` (``None`` when the
    plugin came from no distribution); ``error`` says what is wrong on one line;
    ``backends`` are the backends it announced, when known; ``traceback`` is kept for
    ``cfgctl --debug`` when an exception was the cause."""

    name: str
    error: str
    distribution: str | None = None
    backends: tuple[str, ...] = ()
    traceback: str | None = attrs.field(default=None, eq=False, repr=False)

    def line(self) -> str:
        """``plugin NAME (DIST VERSION) not loaded: PROBLEM``."""
        origin = f" ({self.distribution})" if self.distribution else ""
        return f"plugin {self.name}{origin} not loaded: {self.error}"


@attrs.define
class PluginSet:
    manager: pluggy.PluginManager
    failures: list[PluginFailure] = attrs.Factory(list)
    distributions: dict[str, tuple[str, str]] = attrs.Factory(dict)
    """Plugin name → (distribution name, version) for entry-point plugins."""

    def origin(self, name: str) -> str:
        """``name (distribution version)``, or ``name`` for a plugin of no distribution."""
        dist = self.distributions.get(name)
        return f"{name} ({dist[0]} {dist[1]})" if dist else name

    def skip(
        self,
        name: str,
        error: str,
        *,
        backends: tuple[str, ...] = (),
        trace: str | None = None,
        distribution: str | None = None,
    ) -> PluginFailure:
        """Record ``name`` as broken and unregister it if it was registered."""
        dist = self.distributions.pop(name, None)
        if distribution is None and dist is not None:
            distribution = f"{dist[0]} {dist[1]}"
        if self.manager.has_plugin(name):
            self.manager.unregister(name=name)
        failure = PluginFailure(name, error, distribution, backends, trace)
        self.failures.append(failure)
        log.warning("%s", failure.line())
        return failure

    def failure_for_backend(self, backend: str) -> PluginFailure | None:
        """The skipped plugin that announced ``backend`` (or, when what a plugin announces
        is unknown because it failed earlier, the one of that entry-point name)."""
        for failure in self.failures:
            if backend in failure.backends:
                return failure
        for failure in self.failures:
            if failure.name == backend and not failure.backends:
                return failure
        return None


def make_plugin_manager(environ: Mapping[str, str] | None = None) -> PluginSet:
    """A fresh manager with every hookspec added and the entry-point plugins loaded, each
    isolated (see the module docstring)."""
    env = os.environ if environ is None else environ
    manager = pluggy.PluginManager(PROJECT)
    for module in spec_modules():
        manager.add_hookspecs(module)
    plugins = PluginSet(manager)
    for ep in entry_points(group=HOOKSPECS_GROUP):
        try:
            manager.add_hookspecs(ep.load())
        except Exception as exc:
            plugins.skip(
                ep.name,
                f"its hook specifications ({ep.value}) failed: {one_line(exc)}",
                trace="".join(traceback.format_exception(exc)),
                distribution=_distribution(ep),
            )
    allow = _names(env.get("CFGSTORE_LOAD_PLUGINS"))
    deny = _names(env.get("CFGSTORE_DISABLE_PLUGINS")) or set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if (allow is not None and ep.name not in allow) or ep.name in deny:
            continue
        if manager.has_plugin(ep.name):
            _report_name_clash(plugins, ep)
            continue
        _load(plugins, ep)
    _skip_unsound_backends(plugins)
    if env.get("CFGSTORE_TRACE_PLUGINS"):
        manager.trace.root.setwriter(lambda message: log.info("%s", message.rstrip()))
        manager.enable_tracing()
    return plugins


def _load(plugins: PluginSet, ep: EntryPoint) -> None:
    """Load, check and register one entry point; a failure skips it alone."""
    dist = _distribution(ep)
    try:
        plugin = ep.load()
    except Exception as exc:  # a broken third-party plugin must not take cfgstore down
        trace = "".join(traceback.format_exception(exc))
        plugins.skip(ep.name, one_line(exc), trace=trace, distribution=dist)
        return
    problems = hookimpl_problems(plugins.manager, plugin, backend=False)
    if problems:
        plugins.skip(ep.name, "; ".join(problems), distribution=dist)
        return
    try:
        plugins.manager.register(plugin, name=ep.name)
    except Exception as exc:
        trace = "".join(traceback.format_exception(exc))
        plugins.skip(ep.name, one_line(exc), trace=trace, distribution=dist)
        return
    if ep.dist is not None:
        plugins.distributions[ep.name] = (ep.dist.name, ep.dist.version)


def _skip_unsound_backends(plugins: PluginSet) -> None:
    """Skip every plugin whose backend announcement fails or names an unsound backend."""
    offer = offered_backends(plugins.manager)
    for refusal in offer.refusals:
        plugins.skip(refusal.plugin, refusal.error, trace=refusal.traceback)
    for name in dict.fromkeys(a.plugin for a in offer.announcements if a.problems):
        mine = offer.of_plugin(name)
        error = "; ".join(
            f"backend {a.descriptor.name!r}: {'; '.join(a.problems)}" for a in mine if a.problems
        )
        plugins.skip(name, error, backends=tuple(a.descriptor.name for a in mine))


def _report_name_clash(plugins: PluginSet, ep: EntryPoint) -> None:
    """Two distributions use one entry-point name: the first one loaded is kept."""
    kept = plugins.distributions.get(ep.name)
    other = ep.dist.name if ep.dist is not None else None
    if kept is None or other is None or kept[0] == other:
        return  # the same distribution found twice on the path
    failure = PluginFailure(
        ep.name,
        f"the entry-point name {ep.name!r} is also used by {kept[0]} {kept[1]}, which was "
        "loaded; one of the two must rename it",
        _distribution(ep),
    )
    plugins.failures.append(failure)
    log.warning("%s", failure.line())


def _distribution(ep: EntryPoint) -> str | None:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else None


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}

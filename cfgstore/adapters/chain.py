"""Building a backend chain: descriptors → instances → resolved operation tables.

Everything pluggy-related happens here, once, at start-up: after :func:`build_chain` the
Store awaits plain callables.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from cfgstore.adapters.backend import BackendContext, BackendDescriptor, Operation, Operations
from cfgstore.adapters.offers import Announcement, offered_backends, one_line
from cfgstore.adapters.plugins import PluginSet
from cfgstore.adapters.settings import Settings
from cfgstore.adapters.validation import hookimpl_problems
from cfgstore.errors import PluginError
from cfgstore.hookspecs import hook_names, optional_spec_modules, storage_spec_modules
from cfgstore.model.events import ChangeEvent

log = logging.getLogger("cfgstore.chain")


OPERATIONS: tuple[str, ...] = hook_names(storage_spec_modules())
"""Every storage operation a complete chain must implement."""

OPTIONAL_OPERATIONS: tuple[str, ...] = hook_names(optional_spec_modules())
"""Operations a backend may offer (``cfgstore.hookspecs.replica``); resolved like the others
when present, never required."""

OUTAGE_FALLBACK = "outage-fallback"
REPLICA = "replica"

LIFECYCLE = ("cfgstore_open", "cfgstore_flush", "cfgstore_close", "cfgstore_status")


def descriptors(manager: pluggy.PluginManager) -> dict[str, BackendDescriptor]:
    """Collect every backend the loaded plugins announce, by name. Raises
    :class:`PluginError` when two plugins announce one name (:func:`offered_backends`
    reports without raising)."""
    found: dict[str, BackendDescriptor] = {}
    for name, announcements in offered_backends(manager).by_name().items():
        if len(announcements) > 1:
            raise PluginError(f"two plugins announce a backend named {name!r}")
        found[name] = announcements[0].descriptor
    return found


@attrs.define
class Layer:
    name: str
    instance: object
    operations: Operations
    lifecycle: dict[str, Operation]


@attrs.define
class Chain:
    """The built chain: layers top first, and the resolved table of the whole chain."""

    layers: list[Layer]
    operations: Operations
    instance_id: str


def build_chain(plugins: PluginSet, settings: Settings) -> Chain:
    """Instantiate the backends ``settings.chain`` names, bottom first, and resolve every
    operation to the topmost layer implementing it. Raises :class:`PluginError` for an
    unknown, broken, conflicting or repeated name, a misplaced layer, an invalid hookimpl
    or operations no layer implements; a failed build leaves no backend registered. Only
    the named backends matter: a broken plugin offering another one is no obstacle."""
    manager = plugins.manager
    available = _named_backends(plugins, settings.chain)
    names = list(settings.chain)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PluginError(f"backend {', '.join(repeated)} named more than once in {names}")
    instance_id = uuidlib.uuid4().hex[:12]
    publish = _publisher(manager)
    layers: list[Layer] = []
    registered: list[object] = []
    below: Operations | None = None
    try:
        for position, name in enumerate(reversed(names)):
            descriptor = available[name].descriptor
            if descriptor.layer and position == 0:
                raise PluginError(f"backend {name!r} is a layer and needs a backend below it")
            if not descriptor.layer and position > 0:
                raise PluginError(f"backend {name!r} must be at the bottom of the chain")
            above = (
                available[names[-position - 2]].descriptor if position + 1 < len(names) else None
            )
            fallback_above = (
                above is not None
                and OUTAGE_FALLBACK in above.capabilities
                and REPLICA in descriptor.capabilities
            )
            context = BackendContext(
                settings,
                below,
                publish,
                instance_id,
                fallback_above,
                lambda hook_name, **kwargs: notify(manager, hook_name, **kwargs),
            )
            instance = descriptor.factory(context)
            whose = f"backend {name!r}{_of(plugins, available[name])}"
            problems = hookimpl_problems(manager, instance, backend=True)
            if problems:
                raise PluginError(f"{whose}: {'; '.join(problems)}")
            try:
                manager.register(instance, name=f"backend:{name}:{instance_id}")
            except pluggy.PluginValidationError as exc:
                raise PluginError(f"{whose}: {one_line(exc)}") from exc
            registered.append(instance)
            table = _resolve(manager, instance, OPERATIONS + OPTIONAL_OPERATIONS)
            lifecycle = _resolve(manager, instance, LIFECYCLE)
            below = Operations({**below._table, **table} if below is not None else table)
            layers.insert(0, Layer(name, instance, Operations(table), lifecycle))
        assert below is not None
        missing = [op for op in OPERATIONS if op not in below]
        if missing:
            raise PluginError(f"backend chain {names} does not implement: {', '.join(missing)}")
    except BaseException:
        # A chain that is not returned must leave no backend registered: it would keep
        # receiving change events and be listed as a plugin.
        for instance in registered:
            manager.unregister(instance)
        raise
    return Chain(layers, below, instance_id)


def _named_backends(plugins: PluginSet, names: tuple[str, ...]) -> dict[str, Announcement]:
    """The announcement of each backend ``names`` lists. :class:`PluginError` naming the
    plugin and its problem when one is offered by a skipped plugin, unsound, announced by
    two plugins or unknown."""
    offer = offered_backends(plugins.manager)
    by_name = offer.by_name()
    found: dict[str, Announcement] = {}
    problems: list[str] = []
    unknown: list[str] = []
    for name in dict.fromkeys(names):
        announcements = by_name.get(name, [])
        failure = plugins.failure_for_backend(name)
        if len(announcements) > 1:
            origins = " and ".join(plugins.origin(a.plugin) for a in announcements)
            problems.append(
                f"two plugins announce a backend named {name!r}: {origins}; "
                "disable one with CFGSTORE_DISABLE_PLUGINS"
            )
        elif announcements and announcements[0].problems:
            problems.append(
                f"backend {name!r}{_of(plugins, announcements[0])} is broken: "
                + "; ".join(announcements[0].problems)
            )
        elif announcements:
            found[name] = announcements[0]
        elif failure is not None:
            problems.append(f"backend {name!r} is not available: {failure.line()}")
        else:
            unknown.append(name)
    if problems:
        raise PluginError("; ".join(problems))
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        skipped = [f.name for f in plugins.failures] + [r.plugin for r in offer.refusals]
        not_loaded = (
            f"; not loaded: {', '.join(skipped)} (cfgctl plugins says why)" if skipped else ""
        )
        raise PluginError(
            f"unknown backend {', '.join(unknown)} (installed: {known}); "
            f"install its distribution, e.g. cfgstore-redis, or fix CFGSTORE_BACKENDS{not_loaded}"
        )
    return found


def _of(plugins: PluginSet, announcement: Announcement) -> str:
    return f" of plugin {plugins.origin(announcement.plugin)}"


def _resolve(
    manager: pluggy.PluginManager, instance: object, names: tuple[str, ...]
) -> dict[str, Operation]:
    table: dict[str, Operation] = {}
    for name in names:
        for impl in getattr(manager.hook, name).get_hookimpls():
            if impl.plugin is instance:  # checked before registration: async, spec arguments
                table[name] = _bind(impl.function, tuple(impl.argnames))
    return table


def _bind(function: Callable[..., Any], argnames: tuple[str, ...]) -> Operation:
    """Call an implementation with only the arguments it declares (pluggy's pruning)."""
    if not argnames:
        return lambda **_: function()
    if len(argnames) == 1:  # the hot path's shape (apply_records): no list to build
        (name,) = argnames
        return lambda **kwargs: function(kwargs[name])
    return lambda **kwargs: function(*[kwargs[a] for a in argnames])


def _publisher(manager: pluggy.PluginManager) -> Callable[[ChangeEvent], None]:
    def publish(event: ChangeEvent) -> None:
        notify(manager, "cfgstore_changed", event=event)

    return publish


def notify(manager: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Fan an observer hook out to every implementation, each isolated from the others.

    Awaitables returned by implementations are scheduled on the running loop."""
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        try:
            result = impl.function(*[kwargs[a] for a in impl.argnames])
            if inspect.isawaitable(result):
                asyncio.ensure_future(result).add_done_callback(_log_failure)
        except Exception:
            log.exception("observer %s.%s failed", impl.plugin_name, hook_name)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("observer failed", exc_info=task.exception())

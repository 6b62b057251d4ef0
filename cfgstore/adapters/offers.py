"""Which backends the loaded plugins offer: each plugin asked on its own, each offer checked.

Every ``cfgstore_register_backends`` implementation is called alone, so one that raises
(or passes something that is not a :class:`BackendDescriptor`) is a problem of that plugin
and hides no other plugin's backends. A descriptor whose implementation can be read
without building it (the factory is a class, or a function annotated to return classes)
has its hook implementations checked (:mod:`cfgstore.adapters.validation`) here, before
any chain is built; other factories are checked on the object they build.
"""

from __future__ import annotations

import inspect
import traceback
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from cfgstore.adapters.backend import BackendDescriptor
from cfgstore.adapters.validation import hookimpl_problems


@attrs.frozen
class Announcement:
    """One backend a plugin announced, and what is wrong with its implementation (one
    line per problem; empty when sound or not known before it is built)."""

    descriptor: BackendDescriptor
    plugin: str
    problems: tuple[str, ...] = ()


@attrs.frozen
class Refusal:
    """A plugin whose ``cfgstore_register_backends`` could not be used: why, in one line,
    and the traceback when an exception was the cause."""

    plugin: str
    error: str
    traceback: str | None = None


@attrs.define
class Offer:
    announcements: list[Announcement] = attrs.Factory(list)
    refusals: list[Refusal] = attrs.Factory(list)

    def by_name(self) -> dict[str, list[Announcement]]:
        """Announcements grouped by backend name (more than one: a name conflict)."""
        found: dict[str, list[Announcement]] = {}
        for announcement in self.announcements:
            found.setdefault(announcement.descriptor.name, []).append(announcement)
        return found

    def of_plugin(self, plugin: str) -> list[Announcement]:
        return [a for a in self.announcements if a.plugin == plugin]


def offered_backends(manager: pluggy.PluginManager) -> Offer:
    """Ask every plugin registered on ``manager`` for its backends (see the module
    docstring). Never raises for a plugin's fault."""
    offer = Offer()
    for impl in manager.hook.cfgstore_register_backends.get_hookimpls():
        announced: list[object] = []
        arguments: dict[str, Callable[[object], None]] = {"register": announced.append}
        try:
            impl.function(*[arguments[name] for name in impl.argnames])
        except Exception as exc:
            offer.refusals.append(
                Refusal(
                    impl.plugin_name,
                    f"cfgstore_register_backends raised {one_line(exc)}",
                    "".join(traceback.format_exception(exc)),
                )
            )
            continue
        strays = [a for a in announced if not isinstance(a, BackendDescriptor)]
        if strays:
            offer.refusals.append(
                Refusal(
                    impl.plugin_name,
                    f"cfgstore_register_backends passed {strays[0]!r} to register; pass a "
                    "cfgstore.adapters.BackendDescriptor",
                )
            )
            continue
        for descriptor in announced:
            assert isinstance(descriptor, BackendDescriptor)
            problems = [
                problem
                for cls in implementation_classes(descriptor)
                for problem in hookimpl_problems(manager, cls, backend=True)
            ]
            offer.announcements.append(
                Announcement(descriptor, impl.plugin_name, tuple(dict.fromkeys(problems)))
            )
    return offer


def implementation_classes(descriptor: BackendDescriptor) -> tuple[type, ...]:
    """The classes ``descriptor.factory`` builds, when that can be told without calling
    it: the factory itself when it is a class, else the classes its return annotation
    names (empty when it names none, or cannot be resolved)."""
    factory: Any = descriptor.factory
    if inspect.isclass(factory):
        return (factory,)
    try:
        returned = typing.get_type_hints(factory).get("return")
    except Exception:  # annotations naming what only type checkers import
        return ()
    options = (
        typing.get_args(returned)
        if typing.get_origin(returned) in (typing.Union, types.UnionType)
        else (returned,)
    )
    classes = tuple(c for c in options if inspect.isclass(c) and c is not object)
    return classes if len(classes) == len(options) else ()


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (multi-line messages, e.g. pluggy's, joined)."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

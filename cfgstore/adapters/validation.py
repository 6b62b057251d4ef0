"""Checking a plugin's hook implementations against the specifications, one line per problem.

pluggy accepts much that cannot work: a misspelt hook name (silently, with
``optionalhook``; for everyone at once, through ``check_pending``), an implementation
declaring only some of the spec's arguments, a plain ``def`` where the Store awaits. Each
check here names the method and says what to change, so that a plugin author reads in one
line what is wrong, and cfgstore skips that one plugin instead of failing for everyone.

Rules, for every method marked with ``cfgstore.hookimpl``:

* its hook name (``specname`` or the method name) is a known hook specification, unless it
  is marked ``optionalhook=True`` (a hook of a distribution that may not be installed);
* it declares exactly the spec's arguments (any order; none dropped, none renamed);
* it is ``async def`` when the spec is, and a plain ``def`` when the spec is not, except
  for observer hooks (:mod:`cfgstore.hookspecs.events`), which accept either;
* storage and lifecycle operations live on the object a backend factory returns, never on
  the entry-point object itself (where nothing would ever call them).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

import pluggy

from cfgstore.hookspecs import events, hook_names, optional_spec_modules, storage_spec_modules
from cfgstore.hookspecs import lifecycle as lifecycle_specs

OBSERVER_HOOKS = frozenset(hook_names([events]))
"""Sync specs whose implementations may also be ``async def`` (the Store schedules them)."""

BACKEND_ONLY_HOOKS = frozenset(
    hook_names([*storage_spec_modules(), *optional_spec_modules(), lifecycle_specs])
) - {"cfgstore_register_backends"}
"""Operations only a backend object answers; on an entry-point object they would be dead."""


def hookimpl_problems(manager: pluggy.PluginManager, plugin: object, *, backend: bool) -> list[str]:
    """One line per hook implementation of ``plugin`` that cannot work (see the module
    docstring); empty when every one is sound. ``plugin`` may be a module, an instance or
    a class (its methods are read without instantiating it). ``backend`` says whether it
    is a backend object (storage operations allowed) or an entry-point object."""
    problems: list[str] = []
    for attribute in sorted(dir(plugin)):
        options = manager.parse_hookimpl_opts(plugin, attribute)
        if options is None:
            continue
        hook = options.get("specname") or attribute
        function, arguments = _implementation(plugin, attribute)
        caller = getattr(manager.hook, hook, None)
        spec = caller.spec if caller is not None else None
        if spec is None:
            if not options.get("optionalhook"):
                problems.append(_unknown_hook(manager, attribute, hook))
            continue
        if not backend and hook in BACKEND_ONLY_HOOKS:
            problems.append(
                f"{attribute} is a backend operation: implement it on the object your "
                "BackendDescriptor's factory returns, not on the entry-point object"
            )
            continue
        problems.extend(
            _against_spec(attribute, hook, function, arguments, spec.function, spec.argnames)
        )
    return problems


def known_hooks(manager: pluggy.PluginManager) -> list[str]:
    """Every hook name ``manager`` has a specification for."""
    return sorted(
        name
        for name, caller in vars(manager.hook).items()
        if isinstance(caller, pluggy.HookCaller) and caller.spec is not None
    )


def _unknown_hook(manager: pluggy.PluginManager, attribute: str, hook: str) -> str:
    # Every name shares the "cfgstore_" prefix: a lower cutoff suggests unrelated hooks.
    close = difflib.get_close_matches(hook, known_hooks(manager), n=1, cutoff=0.8)
    if close:
        return f"{attribute}: no hook is named {hook}; did you mean {close[0]}? (rename it)"
    return (
        f"{attribute}: no installed distribution specifies a hook named {hook}; fix the name, "
        "or mark it hookimpl(optionalhook=True) if it belongs to a distribution that may be "
        "absent (the gateway's adapters_hookimpl does)"
    )


def _against_spec(
    attribute: str,
    hook: str,
    function: Callable[..., Any],
    declared: tuple[str, ...],
    spec_function: Callable[..., Any],
    spec_args: tuple[str, ...],
) -> list[str]:
    problems: list[str] = []
    if set(declared) != set(spec_args):
        missing = [a for a in spec_args if a not in declared]
        unknown = [a for a in declared if a not in spec_args]
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"not in the spec: {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        problems.append(
            f"{attribute}({', '.join(declared)}) does not match the spec "
            f"{hook}({', '.join(spec_args)}): {detail}; declare exactly the spec's arguments"
        )
    spec_async = inspect.iscoroutinefunction(spec_function)
    impl_async = inspect.iscoroutinefunction(function)
    if spec_async and not impl_async:
        problems.append(f"{attribute} must be an async def: the spec {hook} is async")
    elif impl_async and not spec_async and hook not in OBSERVER_HOOKS:
        problems.append(
            f"{attribute} must be a plain def: the spec {hook} is called synchronously, "
            "so an async def would never run"
        )
    return problems


def _implementation(plugin: object, attribute: str) -> tuple[Callable[..., Any], tuple[str, ...]]:
    """The implementation and the arguments pluggy passes it (positional parameters
    without a default). A class's method is read without an instance: ``self`` is not
    one of its arguments."""
    static = inspect.getattr_static(plugin, attribute)
    unbound = inspect.isclass(plugin) and not isinstance(static, staticmethod | classmethod)
    function: Callable[..., Any] = static if unbound else getattr(plugin, attribute)
    parameters = list(inspect.signature(function).parameters.values())[1 if unbound else 0 :]
    arguments = tuple(
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )
    return function, arguments

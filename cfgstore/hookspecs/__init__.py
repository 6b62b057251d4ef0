"""The storage contract: pluggy hook specifications, one module per entity type.

Backends implement these as ``async def`` hookimpls on a backend object (see
:mod:`cfgstore.hookspecs.lifecycle` for how a backend announces itself). The docstring of
each spec is the specification third-party backends code to. The composite
:class:`cfgstore.adapters.Store` resolves each operation once at start-up and then awaits the
bound methods directly: no pluggy call happens per operation.
"""

from __future__ import annotations

import inspect
from types import ModuleType

import pluggy

PROJECT = "cfgstore"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


def hook_names(modules: list[ModuleType]) -> tuple[str, ...]:
    """The hook specifications ``modules`` define, in the order they are defined."""
    return tuple(
        name
        for module in modules
        for name, _ in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("cfgstore_")
    )


def storage_spec_modules() -> list[ModuleType]:
    """The modules whose hooks are storage operations (every chain must implement them)."""
    from cfgstore.hookspecs import (
        config,
        credentials,
        custom_models,
        login_guard,
        meta,
        password,
        plugin_config,
        pools,
        sessions,
        system_prompt,
        usage_cache,
    )

    return [
        meta,
        pools,
        credentials,
        config,
        system_prompt,
        custom_models,
        sessions,
        login_guard,
        password,
        usage_cache,
        plugin_config,
    ]


def optional_spec_modules() -> list[ModuleType]:
    """Modules of operations a backend may offer beyond the storage contract."""
    from cfgstore.hookspecs import kept_files, replica

    return [replica, kept_files]


def spec_modules() -> list[ModuleType]:
    """Every module holding hook specifications: lifecycle, storage, optional operations,
    observers, cfgctl."""
    from cfgstore.hookspecs import cli, events, lifecycle

    return [lifecycle, *storage_spec_modules(), *optional_spec_modules(), events, cli]

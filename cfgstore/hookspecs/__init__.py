"""The storage contract: pluggy hook specifications, one module per entity type.

Backends implement these as ``async def`` hookimpls on a backend object (see
:mod:`cfgstore.hookspecs.lifecycle` for how a backend announces itself). The docstring of
each spec is the specification third-party backends code to. The composite
:class:`cfgstore.adapters.Store` resolves each operation once at start-up and then awaits the
bound methods directly: no pluggy call happens per operation.

Rules for every storage operation (the contract suite, :mod:`cfgstore.testing`, checks them):

* **Change events.** Every write to pools, credentials, config, the system prompt, custom
  models, the password, the usage cache or the plugin config publishes a
  :class:`~cfgstore.model.events.ChangeEvent` of its entity through
  ``BackendContext.publish`` before it returns (hot-path records at the latest when
  :func:`~cfgstore.hookspecs.lifecycle.cfgstore_flush` returns). The memory layer drops its
  cached copy only when it hears one: a write that publishes nothing is served stale.
  Sessions, login counts, refresh locks and meta need no event.
* **Copies.** Values returned are copies: a caller may mutate them and the store does not
  change. The one exception is :func:`~cfgstore.hookspecs.pools.cfgstore_pools_view`, a
  read-only live view.
* **Versions** are opaque strings, new on every write; compare-and-set writes raise
  :class:`~cfgstore.errors.VersionConflict` and write nothing when the stored version is
  not the one the caller read.
* **Errors** are the typed ones of :mod:`cfgstore.errors` (``NotFound``,
  ``AlreadyExists``, ``InvalidData``, ``VersionConflict``, ``StorageUnavailable``…); a
  refused write changes nothing.

Versioning: :data:`CFGSTORE_API_VERSION` (see its docstring).
"""

from __future__ import annotations

import inspect
from types import ModuleType

import pluggy

PROJECT = "cfgstore"

CFGSTORE_API_VERSION = "1.4"
"""The version of the hook specifications, ``MAJOR.MINOR``; a plugin may check it.

A MINOR step only adds what no existing plugin has to implement: an optional hook (optional
operations such as :mod:`cfgstore.hookspecs.replica`, observers), a capability, a model
helper, a contract test for a rule the docstrings already state. A MAJOR step may break
plugins: a new required storage operation, an argument added to a spec (implementations
declare exactly the spec's arguments), a hook or an argument removed or renamed, a changed
meaning or return type, a new rule conforming backends may break. What a MAJOR step removes
or changes is first marked deprecated in its docstring for at least one MINOR release,
naming its replacement."""

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
    from cfgstore.hookspecs import (
        kept_files,
        leases,
        plugin_logs,
        potluck,
        replica,
        traffic,
        usage_stats,
    )

    return [replica, kept_files, traffic, leases, usage_stats, plugin_logs, potluck]


def spec_modules() -> list[ModuleType]:
    """Every module holding hook specifications: lifecycle, storage, optional operations,
    observers, cfgctl."""
    from cfgstore.hookspecs import cli, events, lifecycle

    return [lifecycle, *storage_spec_modules(), *optional_spec_modules(), events, cli]

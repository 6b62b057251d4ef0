"""The gateway's plugin hooks: upstream protocol adapters (DESIGN §7) and protocol converters.

An adapter speaks one upstream wire protocol for some provider types (the first one,
:mod:`cfgstore_gateway.adapters.openai_compat`, speaks the OpenAI chat-completions protocol
for the API-key providers, Qwen's portal and iFlow, and — as a generic fallback that any
dedicated adapter overrides — for every other type whose node or config names an
OpenAI-compatible base URL). Adapters ship as plugins in the
entry-point group ``cfgstore``, like storage backends and cfgctl commands, and register
through :func:`cfgstore_gateway_adapters`, a register-callback hook (llm's
``register_models`` shape): the gateway owns the registry and resolves, once per provider
type, which adapter serves it; no pluggy call happens per request.

The gateway announces this module in the entry-point group ``cfgstore.hookspecs``, so
every cfgstore plugin manager knows the hook before it checks any plugin: an
implementation marked with plain ``cfgstore.hookimpl`` is checked (arguments, sync) and
used like any other. :data:`adapters_hookimpl` (``optionalhook=True``) is still the
marker to use in a distribution that should also install without the gateway; the
gateway adds this spec itself (:func:`add_gateway_hookspecs`) to a manager built some
other way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

from cfgstore.hookspecs import hookimpl, hookspec

if TYPE_CHECKING:
    from cfgstore_gateway.adapters import Adapter
    from cfgstore_gateway.plugin_api import GatewayPlugin
    from cfgstore_gateway.protocols import Converter

adapters_hookimpl = hookimpl(optionalhook=True)
"""The marker adapter plugins use for :func:`cfgstore_gateway_adapters`."""


# ----------------------------------------------------------------------------- adapters


@hookspec
def cfgstore_gateway_adapters(register: Callable[[Adapter], None]) -> None:
    """Register upstream protocol adapters: call ``register(adapter)`` once per adapter.

    ``adapter`` implements :class:`cfgstore_gateway.adapters.Adapter`: a ``name``, which
    provider types it serves (``serves(provider_type)``; a suffixed type such as
    ``openai-custom-deepseek`` is served by whoever serves ``openai-custom`` unless an
    adapter claims the suffixed type itself), and the async calls that proxy a chat
    completion and list models. Called once when a gateway application is built, never per
    request. When two adapters serve the same type, the one registered last wins and the
    gateway logs the conflict. Nothing is returned; an implementation that raises is
    reported and its adapters are skipped.
    """


converters_hookimpl = hookimpl(optionalhook=True)
"""The marker converter plugins use for :func:`cfgstore_gateway_converters`."""


@hookspec
def cfgstore_gateway_converters(register: Callable[[Converter], None]) -> None:
    """Register protocol converters: call ``register(converter)`` once per protocol.

    ``converter`` implements :class:`cfgstore_gateway.protocols.Converter`: a ``name`` (the
    protocol an adapter names in its ``protocol`` attribute) and the functions that read
    and write that protocol's requests, responses, streams and errors to and from the
    neutral model. One registered under a built-in name (``openai``, ``claude``,
    ``gemini``, ``openaiResponses``) replaces the built-in. Called once when a gateway
    application is built; an implementation that raises is reported and skipped.
    """


plugins_hookimpl = hookimpl(optionalhook=True)
"""The marker gateway plugins use for :func:`cfgstore_gateway_plugins`."""


@hookspec
def cfgstore_gateway_plugins(register: Callable[[GatewayPlugin], None]) -> None:
    """Register gateway plugins (request middleware, admin routes, console tabs): call
    ``register(plugin)`` once per plugin. ``plugin`` implements
    :class:`cfgstore_gateway.plugin_api.GatewayPlugin`. Called once when a gateway
    application is built; an implementation that raises is reported and skipped.
    """


def add_gateway_hookspecs(manager: pluggy.PluginManager) -> None:
    """Add this module's hook specifications to ``manager`` (once; repeated calls are
    no-ops). Implementations already registered are validated against them now."""
    existing = getattr(manager.hook, "cfgstore_gateway_adapters", None)
    if existing is not None and existing.spec is not None:
        return
    import cfgstore_gateway.hookspecs as this

    manager.add_hookspecs(this)

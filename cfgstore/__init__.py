"""cfgstore: the configuration and state store of an AI API gateway.

Backends are pluggy plugins (entry-point group ``cfgstore``); consumers hold a
:class:`cfgstore.adapters.Store`. ``hookimpl`` marks backend and plugin implementations.
"""

from cfgstore.hookspecs import CFGSTORE_API_VERSION, hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["CFGSTORE_API_VERSION", "__version__", "hookimpl", "hookspec"]

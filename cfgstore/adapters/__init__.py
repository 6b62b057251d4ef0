"""What a consumer holds: the composite :class:`Store`, settings and plugin loading."""

from cfgstore.adapters.backend import BackendContext, BackendDescriptor, Operations
from cfgstore.adapters.settings import Settings
from cfgstore.adapters.store import Store

__all__ = ["BackendContext", "BackendDescriptor", "Operations", "Settings", "Store"]

"""Gateway plugins shipped with the gateway (``plugin_api``), one module each, each
registered by its own entry point."""

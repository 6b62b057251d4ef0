"""The gateway plugins shipped with the gateway (:mod:`cfgstore_gateway.plugin_api`), each
registered through the ``cfgstore_gateway_plugins`` hook from its own entry point."""

"""``cfgctl``, the operator tool. Every command is a plugin (built-ins included)."""

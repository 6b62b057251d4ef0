"""cfgstore backend on Redis (key schema: ``redis-keys.md`` beside this package)."""

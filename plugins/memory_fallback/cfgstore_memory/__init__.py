"""cfgstore memory layer: serves reads from memory over any backend.

Now: a read cache for the documents the hot path and the UI read often. With the Redis
backend it grows into the outage fallback (confirmed snapshot, overlay, journal).
"""

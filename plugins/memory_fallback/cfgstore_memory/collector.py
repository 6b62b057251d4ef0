"""Keeping Python's cyclic garbage collector out of the way of a full read.

A full read of a large pool allocates millions of objects that all live on (the nodes).
With the collector running, that allocation triggers full (generation 2) collections,
each walking every object of the process: 200–370 ms each with 50,000 nodes in memory,
during which the event loop stands still. :func:`collector_paused` turns the collector off
for the read and, when the last read in progress ends, moves every object alive at that
moment into the permanent generation (:func:`gc.freeze`), so that later collections
walk only what was allocated since: the requests' short-lived objects.

The cost: cyclic garbage among the frozen objects is never collected (objects without
reference cycles, such as the nodes a later read replaces, are still freed at once by
reference counting). What is frozen is what was alive at the end of a full read — the
pools, caches and the requests in flight then — so the leak is bounded by what cycles the
objects alive at a start-up or resync form, not by traffic.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
_enabled_before = True
_freeze = False


@contextmanager
def collector_paused(*, freeze: bool = True) -> Iterator[None]:
    """No cyclic collection inside; when the outermost exits, freeze what is alive if any
    level asked for it (a full read: its objects live on; not the snapshot save, whose
    objects are temporary), then collect again as before. Nests, also across tasks."""
    global _depth, _enabled_before, _freeze
    if _depth == 0:
        _enabled_before = gc.isenabled()
        gc.disable()
    _depth += 1
    _freeze = _freeze or freeze
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            if _freeze:
                gc.freeze()
            _freeze = False
            if _enabled_before:
                gc.enable()

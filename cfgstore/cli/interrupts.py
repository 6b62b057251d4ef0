"""SIGINT and SIGTERM in cfgctl commands: a long command stops at its next safe point.

Within :func:`stop_signals` (every command that runs through :func:`cfgstore.cli.common.run`
has it), a stop signal outside a :func:`stoppable` region stops the command at once (as
``KeyboardInterrupt``; cfgctl reports it in one line and exits 130). Inside a stoppable
region — a phase whose every step leaves the target consistent, such as migrate's writes —
the first signal is only recorded and announced; the command raises :class:`Interrupted`
at its next :func:`checkpoint`, saying what was done and how to finish. A second signal
stops the process at once (exit 130, one line, no traceback): what was written stays
written, each entity atomically, and the region's ``finish`` line says how to complete it.

Python's own SIGINT handling is replaced while a command runs: ``asyncio.run`` would
otherwise turn a first Ctrl-C into a cancellation that a library may swallow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import attrs

EXIT_INTERRUPTED = 130
"""The exit status after a stop signal (128 + SIGINT, as shells report Ctrl-C)."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A stop signal was honoured at a safe point; the message says what was done and how
    to finish."""


@attrs.define
class _Region:
    finish: str
    received: str | None = None


_region: _Region | None = None
_last_signal: str = "SIGINT"


def last_signal() -> str:
    """The name of the last stop signal received (``SIGINT`` before any)."""
    return _last_signal


def _say(line: str) -> None:
    print(f"cfgctl: {line}", file=sys.stderr, flush=True)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _last_signal
    name = _last_signal = signal.Signals(signum).name
    region = _region
    if region is None:
        raise KeyboardInterrupt(name)
    if region.received is None:
        region.received = name
        _say(f"{name}: stopping at the next safe point ({name} again stops at once)")
        return
    _say(f"{name} again: stopped at once. {region.finish}")
    os._exit(EXIT_INTERRUPTED)  # at once: no cleanup may block, no traceback


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within: SIGINT and SIGTERM are cfgctl's (see the module docstring); the previous
    handlers come back after. A no-op outside the main thread (signals go there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    if all(handler is _on_signal for handler in previous.values()):
        yield  # nested: already installed
        return
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def stoppable(finish: str) -> Iterator[None]:
    """A phase that a stop signal ends at the next :func:`checkpoint` only. ``finish`` is
    what to do after an immediate stop (a second signal), e.g. the command to run again."""
    global _region
    outer, _region = _region, _Region(finish)
    try:
        with stop_signals():
            yield
    finally:
        _region = outer


def checkpoint(done: Callable[[], str]) -> None:
    """A safe point: when a stop signal came in the current :func:`stoppable` region,
    raise :class:`Interrupted` with ``done()`` (what was done and how to finish)."""
    region = _region
    if region is not None and region.received is not None:
        raise Interrupted(f"stopped by {region.received}: {done()}")

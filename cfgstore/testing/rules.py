"""Failures that name the rule: which hookspec, and what it requires.

Every check of the contract suite runs inside ``with rule(hook, text):``. A failure inside
(an assertion, a ``pytest.raises`` that saw nothing, an exception the backend raised) then
starts with ``broken rule of cfgstore_<hook> (cfgstore.hookspecs.<module>): <text>``, so
a backend author reads what to fix before the details.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cfgstore.hookspecs import spec_modules


@functools.cache
def _spec_module_of() -> dict[str, str]:
    return {
        name: module.__name__
        for module in spec_modules()
        for name, _ in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("cfgstore_")
    }


def rule_text(hook: str, text: str) -> str:
    """``broken rule of <hook> (<module>): <text>``; ``hook`` must be a hookspec's name."""
    module = _spec_module_of().get(hook)
    if module is None:
        raise LookupError(f"the contract suite names an unknown hookspec {hook!r}")
    return f"broken rule of {hook} ({module}): {text}"


@contextmanager
def rule(hook: str, text: str) -> Iterator[None]:
    """Attribute any failure inside the block to ``text``, a rule of hookspec ``hook``."""
    __tracebackhide__ = True
    header = rule_text(hook, text)
    try:
        yield
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        raise
    except AssertionError as exc:
        detail = str(exc.args[0]) if exc.args else ""
        exc.args = (f"{header}\n{detail}" if detail else header, *exc.args[1:])
        raise
    except pytest.fail.Exception as exc:  # pytest.raises that saw no exception
        exc.msg = f"{header}\n{exc.msg}"
        raise
    except BaseException as exc:
        exc.add_note(header)
        raise


@contextmanager
def rule_raises(
    hook: str, text: str, expected: type[BaseException]
) -> Iterator[pytest.ExceptionInfo[BaseException]]:
    """:func:`rule`, for a block that must raise ``expected``."""
    __tracebackhide__ = True
    with rule(hook, text), pytest.raises(expected) as info:
        yield info

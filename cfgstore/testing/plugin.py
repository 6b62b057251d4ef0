"""The pytest plugin of the contract suite (entry point ``pytest11``: ``cfgstore``).

Loaded by every pytest run where cfgstore is installed, so it only adds options and the two
fixtures every contract test starts from; it imports nothing heavy until a contract test
asks for them, and it touches no test that does not.

* ``--cfgstore-chain=memory,NAME`` (repeatable; or the ini option ``cfgstore_chains``): the
  chains to run every contract test against, one test id per chain (``memory+NAME``).
* ``--cfgstore-setting KEY=VALUE`` (repeatable): a setting of the store under test, as
  ``CFGSTORE_KEY=VALUE`` would give it (and over it). ``{tmp}`` and ``{unique}`` in a value
  become the test's temporary directory and a short id of its own.
* ``cfgstore_chain`` / ``cfgstore_settings``: the chain and the settings of the test's store
  (:func:`cfgstore.testing.deployment.suite_settings`). A test suite that runs the contract
  tests from its own modules may override ``cfgstore_settings`` in a ``conftest.py``, e.g.
  to name a server its fixtures start.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cfgstore.adapters import Settings

CHAIN_HELP = "pass --cfgstore-chain=memory,NAME (NAME: the backend under test)"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cfgstore", "cfgstore backend contract suite (cfgstore.testing)")
    group.addoption(
        "--cfgstore-chain",
        action="append",
        default=[],
        metavar="CHAIN",
        help="backend chain to run the contract suite against, top first (memory,NAME); repeatable",
    )
    group.addoption(
        "--cfgstore-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the store under test, over CFGSTORE_KEY; {tmp} and {unique} "
        "are replaced per test; repeatable",
    )
    parser.addini(
        "cfgstore_chains",
        type="args",
        default=[],
        help="chains for the contract suite when --cfgstore-chain is not given",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse a malformed ``--cfgstore-chain`` or ``--cfgstore-setting`` at once."""
    given, settings = chains(config), config.getoption("cfgstore_setting")
    if not given and not settings:
        return
    from cfgstore.errors import InvalidData
    from cfgstore.testing.deployment import parse_chain, parse_setting

    try:
        for text in given:
            parse_chain(text)
        for text in settings:
            parse_setting(text)
    except InvalidData as exc:
        raise pytest.UsageError(str(exc)) from None


def chains(config: pytest.Config) -> list[str]:
    given: list[str] = config.getoption("cfgstore_chain") or config.getini("cfgstore_chains")
    return given


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cfgstore_chain" not in metafunc.fixturenames:
        return
    from cfgstore.testing.deployment import parse_chain

    given = chains(metafunc.config)
    if not given:
        raise pytest.UsageError(f"the cfgstore contract suite needs a backend chain: {CHAIN_HELP}")
    parsed = [parse_chain(text) for text in given]
    metafunc.parametrize("cfgstore_chain", parsed, ids=["+".join(chain) for chain in parsed])


@pytest.fixture
def cfgstore_chain() -> tuple[str, ...]:
    """The chain under test (parametrized from ``--cfgstore-chain``)."""
    raise pytest.UsageError(f"no backend chain: {CHAIN_HELP}")


@pytest.fixture
def cfgstore_settings(
    cfgstore_chain: tuple[str, ...], tmp_path: Path, request: pytest.FixtureRequest
) -> Settings:
    """The settings of this test's store: fresh storage in ``tmp_path``, then the
    environment's ``CFGSTORE_*``, then ``--cfgstore-setting``."""
    from cfgstore.testing.deployment import suite_settings

    return suite_settings(
        cfgstore_chain,
        tmp_path,
        uuidlib.uuid4().hex[:12],
        os.environ,
        request.config.getoption("cfgstore_setting"),
    )

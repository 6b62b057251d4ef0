"""The typed protocols of :mod:`cfgstore.protocols` mirror the hookspecs, and mypy uses them.

The protocols are written out (a type checker cannot read classes generated at run time),
so these tests are what keeps them from drifting: every hook of every backend spec module
is a member of its module's protocol with the same argument names, order, annotations,
return annotation and ``async``, and nothing else is. A third-party backend checked
against them by mypy (run as its author would) gets an error for a dropped argument, a
sync method and a wrong return type, and none when it is right.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cfgstore.adapters.chain import LIFECYCLE, OPERATIONS, OPTIONAL_OPERATIONS
from cfgstore.hookspecs import hook_names, lifecycle, optional_spec_modules, storage_spec_modules
from cfgstore.protocols import GROUPS, StorageBackend

REPO = Path(__file__).resolve().parents[2]
BACKEND_SPEC_MODULES = [*storage_spec_modules(), *optional_spec_modules(), lifecycle]
MYPY_TIMEOUT_S = 120


def backend_hooks(module: ModuleType) -> list[str]:
    """The hooks of ``module`` a backend object implements (the entry point's
    ``cfgstore_register_backends`` is not one)."""
    return [n for n in hook_names([module]) if n != "cfgstore_register_backends"]


def own_members(protocol: type) -> list[str]:
    return [name for name in vars(protocol) if name.startswith("cfgstore_")]


def test_every_backend_spec_module_has_its_protocol() -> None:
    assert set(GROUPS) == {m.__name__ for m in BACKEND_SPEC_MODULES}


@pytest.mark.parametrize("module", BACKEND_SPEC_MODULES, ids=lambda m: m.__name__)
def test_protocol_members_are_the_hooks_of_their_module(module: ModuleType) -> None:
    protocol = GROUPS[module.__name__]
    assert sorted(own_members(protocol)) == sorted(backend_hooks(module))


@pytest.mark.parametrize("module", BACKEND_SPEC_MODULES, ids=lambda m: m.__name__)
def test_protocol_signatures_are_the_spec_signatures(module: ModuleType) -> None:
    protocol = GROUPS[module.__name__]
    for name in backend_hooks(module):
        spec = getattr(module, name)
        member = vars(protocol)[name]
        spec_signature = inspect.signature(spec)
        [self, *parameters] = inspect.signature(member).parameters.values()
        assert self.name == "self", name
        assert [(p.name, p.kind, p.annotation, p.default) for p in parameters] == [
            (p.name, p.kind, p.annotation, p.default) for p in spec_signature.parameters.values()
        ], name
        assert inspect.signature(member).return_annotation == spec_signature.return_annotation, name
        assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(spec), name


def test_storage_backend_is_every_required_operation() -> None:
    members = {
        name for cls in StorageBackend.__mro__ for name in vars(cls) if name.startswith("cfgstore_")
    }
    assert members == set(OPERATIONS)
    assert not members & (set(OPTIONAL_OPERATIONS) | set(LIFECYCLE))


THIRD_PARTY = """
from __future__ import annotations

from cfgstore.protocols import SystemPromptBackend


class Sound:
    async def cfgstore_system_prompt_get(self) -> str | None:
        return None

    async def cfgstore_system_prompt_put(self, text: str) -> None:
        pass


class Dropped(Sound):
    async def cfgstore_system_prompt_put(self) -> None:  # type: ignore[override]
        pass


class Synchronous(Sound):
    def cfgstore_system_prompt_get(self) -> str | None:  # type: ignore[override]
        return None


class WrongReturn(Sound):
    async def cfgstore_system_prompt_get(self) -> bytes:  # type: ignore[override]
        return b""


def sound() -> SystemPromptBackend:
    return Sound()


def dropped() -> SystemPromptBackend:
    return Dropped()


def synchronous() -> SystemPromptBackend:
    return Synchronous()


def wrong_return() -> SystemPromptBackend:
    return WrongReturn()
"""


def test_mypy_checks_a_third_party_backend_against_the_protocols(tmp_path: Path) -> None:
    """mypy, run on a backend module as its author would, accepts the sound class and
    refuses each broken one where it is used as the protocol."""
    module = tmp_path / "thirdparty_backend.py"
    module.write_text(THIRD_PARTY, encoding="utf-8")
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy is not None, "mypy is not installed in this environment"
    result = subprocess.run(
        [mypy, "--strict", "--cache-dir", str(tmp_path / "cache"), str(module)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=MYPY_TIMEOUT_S,
        check=False,
    )
    lines = THIRD_PARTY.splitlines()
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    refused = {lines[int(error.split(":")[1]) - 1].strip() for error in errors}
    assert refused == {"return Dropped()", "return Synchronous()", "return WrongReturn()"}, (
        result.stdout
    )

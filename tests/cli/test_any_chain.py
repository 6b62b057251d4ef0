"""``migrate``, ``verify``, ``export``, ``status`` and ``init`` on a chain other than the
Redis default: ``--backends file`` holding another configs folder, and
``--backends memory,redis`` (the tools drop the memory fallback: no journal, no instance).

Every command talks to the store through the Store API only, so the same sequence works on
both, and the example deployment comes back byte for byte through either. Each store
persists across commands: the file backend's folder, and a private Redis namespace.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from cfgstore.adapters import Settings, Store
from tests.cli.deployments import (
    CLI_TIMEOUT_S,
    EXAMPLE,
    cfgctl,
    copy_deployment,
    deadline,
    describe,
    plugins,
    private_namespace,
    tree_bytes,
)
from tests.cli.test_export import expected_files

SAME = "the files and the store hold the same configuration"
NOT_INITIALISED = "note: namespace not initialised"


@attrs.frozen
class Chain:
    """How a test names one store: ``flags`` for export, init and status; ``target`` for
    migrate and verify (whose ``--configs`` is the source); what the tools' chain is."""

    flags: tuple[str, ...]
    target: tuple[str, ...]
    names: list[str]
    settings: Settings
    folder: Path | None = None
    """The file backend's configs folder (``None`` on Redis)."""

    def run(self, action: Any) -> Any:
        """``asyncio.run`` an ``async def action(store)`` on a Store over this chain."""

        async def go() -> Any:
            async with Store.open(self.settings, plugins=plugins()) as store:
                return await action(store)

        with deadline(CLI_TIMEOUT_S):
            return asyncio.run(go())


@pytest.fixture(params=["file", "redis"])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chain]:
    if request.param == "file":
        folder = tmp_path / "store" / "configs"
        folder.mkdir(parents=True)
        settings = Settings(
            configs_dir=folder,
            backends=("file",),
            watch_interval_ms=0,
            reset_counters_on_start=False,
        )
        yield Chain(
            ("--backends", "file", "--configs", str(folder)),
            ("--backends", "file", "--target-configs", str(folder)),
            ["file"],
            settings,
            folder,
        )
        return
    redis_url = request.getfixturevalue("redis_url")
    monkeypatch = request.getfixturevalue("monkeypatch")
    with private_namespace(redis_url, monkeypatch) as ns:
        flags = ("--backends", "memory,redis", "--redis-url", ns.url)
        yield Chain(flags, flags, ["redis"], ns.settings())


def status(chain: Chain) -> dict[str, Any]:
    result = cfgctl("status", *chain.flags, "--json")
    assert result.exit_code == 0, describe(result)
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_migrate_verify_export_status_init_on_any_chain(chain: Chain, tmp_path: Path) -> None:
    root = copy_deployment(EXAMPLE, tmp_path)
    original = tree_bytes(root)
    configs = root / "configs"

    migrated = cfgctl("migrate", "--configs", configs, *chain.target)
    assert migrated.exit_code == 0, describe(migrated)
    assert migrated.stdout.startswith("migrated\n"), describe(migrated)

    verified = cfgctl("verify", "--configs", configs, *chain.target)
    assert verified.exit_code == 0, describe(verified)
    assert verified.stdout.strip() == SAME

    out = tmp_path / "out"
    exported = cfgctl("export", "--to", out, *chain.flags)
    assert exported.exit_code == 0, describe(exported)
    written, expected = tree_bytes(out), expected_files(root)
    assert sorted(written) == sorted(expected)
    for name, data in expected.items():
        assert written[name] == data, name

    report = status(chain)
    assert report["chain"] == chain.names  # memory,redis: the tool dropped the fallback
    assert report["initialised"] is True and report["interrupted_migration"] is None
    [storage] = report["backends"]
    assert storage["counts"]["nodes"] == 16 and storage["counts"]["credentials"] == 11
    assert NOT_INITIALISED not in cfgctl("status", *chain.flags).stdout

    before = chain.run(lambda store: store.meta.get())
    refused = cfgctl("init", *chain.flags)
    assert refused.exit_code == 1, describe(refused)
    assert "refusing to initialise" in refused.stderr and "Nothing was written" in refused.stderr
    assert chain.run(lambda store: store.meta.get()) == before

    again = cfgctl("migrate", "--configs", configs, *chain.target)
    assert again.exit_code == 0, describe(again)
    assert again.stdout.startswith("nothing to do"), describe(again)
    assert tree_bytes(root) == original  # the source was only read


def test_init_on_any_chain_writes_the_defaults_through_the_store(
    chain: Chain, tmp_path: Path
) -> None:
    before = status(chain)
    assert before["initialised"] is False
    assert NOT_INITIALISED in cfgctl("status", *chain.flags).stdout
    refused = cfgctl("export", "--to", tmp_path / "out", *chain.flags)
    assert refused.exit_code == 2, describe(refused)
    assert "never initialised" in refused.stderr and "--allow-incomplete" in refused.stderr
    hint = "--redis-url" if chain.folder is None else "--backends"
    assert hint in refused.stderr

    result = cfgctl("init", *chain.flags, "--json")
    assert result.exit_code == 0, describe(result)
    summary = json.loads(result.stdout)
    key, password = summary["generated_api_key"], summary["generated_password"]

    async def stored(store: Store) -> tuple[Any, bool, bool, str | None]:
        config = await store.config.get()
        return (
            config.get("REQUIRED_API_KEY"),
            await store.password.verify(password),
            await store.password.verify("admin123"),
            await store.password.get_stored(),
        )

    stored_key, right, default, hashed = chain.run(stored)
    assert stored_key == key and right and not default
    assert hashed is not None and hashed.startswith("pbkdf2:") and password not in hashed
    after = status(chain)
    assert after["initialised"] is True
    assert NOT_INITIALISED not in cfgctl("status", *chain.flags).stdout
    if chain.folder is not None:  # the file backend's own files, nothing else
        names = {p.name for p in chain.folder.iterdir() if not p.name.startswith(".cfgstore-")}
        assert names == {"config.json", "plugins.json", "pwd"}


@pytest.mark.parametrize("target", ["configs", "configs-2"], ids=["same-folder", "same-cwd"])
def test_a_file_target_sharing_the_source_deployment_is_refused(
    target: str, tmp_path: Path
) -> None:
    """The target folder must not be the source, nor share its working directory (token
    paths are relative to it: the target would write the source's token files)."""
    root = copy_deployment(EXAMPLE, tmp_path)
    (root / target).mkdir(exist_ok=True)
    original = tree_bytes(root)
    for command in ("migrate", "verify"):
        result = cfgctl(
            command,
            "--configs",
            root / "configs",
            "--backends",
            "file",
            "--target-configs",
            root / target,
        )
        assert result.exit_code == 2, describe(result)
        assert "--target-configs" in result.stderr, describe(result)
    assert tree_bytes(root) == original


def test_an_interrupted_migration_into_files_is_shown_refused_and_finished(
    tmp_path: Path,
) -> None:
    """The migration markers live in the store's metadata (here the file backend's), so a
    run that stopped halfway is reported, exported only on request, and finished by the
    command it recorded, as on Redis."""
    root = copy_deployment(EXAMPLE, tmp_path)
    target = tmp_path / "store" / "configs"
    target.mkdir(parents=True)
    (root / "configs" / "api-potluck-data.json").write_bytes(b'{"users": {}}')  # obsolete
    blocker = target / "api-potluck-data.json"  # a folder where a kept file must go
    blocker.mkdir()
    flags = ("--backends", "file", "--configs", str(target))
    stopped = cfgctl(
        "migrate", "--configs", root / "configs", "--backends", "file", "--target-configs", target
    )
    assert stopped.exit_code == 2, describe(stopped)

    shown = cfgctl("status", *flags)
    assert shown.exit_code == 0, describe(shown)
    assert "did not finish" in shown.stdout, describe(shown)
    assert "(same backend settings)" in shown.stdout
    finish = shlex.split(shown.stdout.split("finish it with: ", 1)[1].split(" (same", 1)[0])
    assert finish[:2] == ["cfgctl", "migrate"]
    assert finish[finish.index("--backends") + 1] == "file"
    assert Path(finish[finish.index("--target-configs") + 1]) == target.absolute()

    out = tmp_path / "out"
    refused = cfgctl("export", "--to", out, *flags)
    assert refused.exit_code == 2, describe(refused)
    assert "mid-migration" in refused.stderr and "--allow-incomplete" in refused.stderr
    assert not out.exists() or not any(out.iterdir())

    shutil.rmtree(blocker)
    finished = cfgctl(*finish[1:])
    assert finished.exit_code == 0, describe(finished)
    assert "interrupted" in finished.stdout
    assert "did not finish" not in cfgctl("status", *flags).stdout
    exported = cfgctl("export", "--to", out, *flags)
    assert exported.exit_code == 0, describe(exported)
    assert tree_bytes(out) == expected_files(root)

"""Each hook implementation is checked against its spec when its plugin loads.

Every case is a real distribution (package plus ``*.dist-info`` with ``entry_points.txt``)
written into a temporary site directory on ``sys.path``, discovered by
:func:`make_plugin_manager` as an installed wheel would be. A refused plugin is skipped
alone, with one line naming the method and the fix; the built-in plugins and chains keep
working.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest
from typer.testing import CliRunner

from cfgstore.adapters import Settings, Store
from cfgstore.adapters.plugins import PluginFailure, PluginSet, make_plugin_manager
from cfgstore.adapters.validation import hookimpl_problems
from cfgstore.cli.app import build_app
from cfgstore.errors import PluginError
from cfgstore.hookspecs import PROJECT, spec_modules
from tests.adapters.test_third_party_backend import DICTSTORE_SOURCE, write_distribution

BACKEND_HEADER = """
        from cfgstore import hookimpl
        from cfgstore.adapters.backend import BackendDescriptor
"""
"""Imports of a backend distribution, indented like the sources that follow it."""


class Site:
    """Installs distributions into one temporary site directory on ``sys.path``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        monkeypatch.syspath_prepend(str(root))

    def install(self, entry: str, source: str, *, dist: str | None = None) -> str:
        """Install ``source`` as package ``thirdparty_<entry>`` under entry point ``entry``;
        returns the distribution's name."""
        package = "_".join(["thirdparty", entry, *([dist] if dist else [])]).replace("-", "_")
        name = dist or package.replace("_", "-")
        write_distribution(
            self.root,
            dist=name,
            version="0.1",
            package=package,
            source=textwrap.dedent(source),
            entry_points=f"[cfgstore]\n{entry} = {package}\n",
        )
        self.monkeypatch.delitem(sys.modules, package, raising=False)
        self.monkeypatch.syspath_prepend(str(self.root))  # invalidates the import caches
        return name


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    return Site(tmp_path / "site", monkeypatch)


def failure_of(plugins: PluginSet, name: str) -> PluginFailure:
    [failure] = [f for f in plugins.failures if f.name == name]
    assert not plugins.manager.has_plugin(name)
    return failure


def test_a_renamed_argument_names_what_is_missing_and_what_is_unknown(site: Site) -> None:
    site.install(
        "renamed",
        BACKEND_HEADER
        + """
        class Renamed:
            def __init__(self, context):
                pass

            @hookimpl
            async def cfgstore_pools_delete_node(self, provider_type, node_uuid):
                pass

        @hookimpl
        def cfgstore_register_backends(register):
            register(BackendDescriptor("renamed", "a renamed argument", Renamed))
        """,
    )
    failure = failure_of(make_plugin_manager(environ={}), "renamed")
    assert failure.error == (
        "backend 'renamed': cfgstore_pools_delete_node(provider_type, node_uuid) does not "
        "match the spec cfgstore_pools_delete_node(provider_type, uuid): missing uuid; "
        "not in the spec: node_uuid; declare exactly the spec's arguments"
    )
    assert failure.backends == ("renamed",)
    assert failure.distribution == "thirdparty-renamed 0.1"


def test_an_async_implementation_of_a_sync_hook_is_refused(site: Site) -> None:
    site.install(
        "asynccmd",
        """
        from cfgstore import hookimpl

        @hookimpl
        async def cfgctl_register_commands(app):
            pass
        """,
    )
    failure = failure_of(make_plugin_manager(environ={}), "asynccmd")
    assert failure.error == (
        "cfgctl_register_commands must be a plain def: the spec cfgctl_register_commands is "
        "called synchronously, so an async def would never run"
    )


def test_a_storage_operation_on_the_entry_point_module_is_refused(site: Site) -> None:
    site.install(
        "misplaced",
        """
        from cfgstore import hookimpl

        @hookimpl
        async def cfgstore_pools_list():
            return None
        """,
    )
    failure = failure_of(make_plugin_manager(environ={}), "misplaced")
    assert failure.error == (
        "cfgstore_pools_list is a backend operation: implement it on the object your "
        "BackendDescriptor's factory returns, not on the entry-point object"
    )


def test_an_unknown_hook_without_a_close_name_says_how_to_mark_an_optional_one(
    site: Site,
) -> None:
    site.install(
        "frob",
        """
        from cfgstore import hookimpl

        @hookimpl
        def cfgstore_acme_frobnicate(widget):
            pass
        """,
    )
    failure = failure_of(make_plugin_manager(environ={}), "frob")
    assert failure.error == (
        "cfgstore_acme_frobnicate: no installed distribution specifies a hook named "
        "cfgstore_acme_frobnicate; fix the name, or mark it hookimpl(optionalhook=True) if it "
        "belongs to a distribution that may be absent (the gateway's adapters_hookimpl does)"
    )


def test_sound_variants_load(site: Site) -> None:
    """Optional hooks of absent distributions, async observers, ``specname`` and arguments
    in another order are all fine."""
    site.install(
        "variants",
        BACKEND_HEADER
        + """
        class Reordered:
            def __init__(self, context):
                pass

            @hookimpl(specname="cfgstore_pools_rename_node")
            async def rename(self, new_uuid, old_uuid, provider_type):
                pass

        @hookimpl(optionalhook=True)
        def cfgstore_acme_frobnicate(widget):
            pass

        @hookimpl
        async def cfgstore_changed(event):
            pass

        @hookimpl
        def cfgstore_register_backends(register):
            register(BackendDescriptor("reordered", "a layer", Reordered, layer=True))
        """,
    )
    plugins = make_plugin_manager(environ={})
    assert plugins.failures == []
    assert plugins.manager.has_plugin("variants")


def test_a_factory_annotated_with_its_class_is_checked_at_load(site: Site) -> None:
    site.install(
        "annotated",
        BACKEND_HEADER
        + """
        from cfgstore.adapters.backend import BackendContext

        class Annotated:
            def __init__(self, context):
                pass

            @hookimpl
            def cfgstore_config_get(self):
                return None

        def make(context: BackendContext) -> Annotated:
            return Annotated(context)

        @hookimpl
        def cfgstore_register_backends(register):
            register(BackendDescriptor("annotated", "checked through the annotation", make))
        """,
    )
    failure = failure_of(make_plugin_manager(environ={}), "annotated")
    assert failure.error == (
        "backend 'annotated': cfgstore_config_get must be an async def: "
        "the spec cfgstore_config_get is async"
    )


async def test_an_opaque_factory_is_checked_when_a_chain_builds_it(site: Site) -> None:
    """A factory whose class cannot be told beforehand: the plugin loads, and only a chain
    naming its backend refuses, with the same one-line problem."""
    site.install(
        "opaque",
        BACKEND_HEADER
        + """
        class Hidden:
            def __init__(self, context):
                pass

            @hookimpl
            async def cfgstore_config_get(self, now_ms):
                return None

        @hookimpl
        def cfgstore_register_backends(register):
            register(BackendDescriptor("opaque", "lambda factory", lambda c: Hidden(c), layer=True))
        """,
    )
    site.install("dictstore", DICTSTORE_SOURCE)
    plugins = make_plugin_manager(environ={})
    assert plugins.failures == []
    before = set(plugins.manager.get_plugins())
    with pytest.raises(PluginError) as caught:
        async with Store.open(Settings(backends=("opaque", "dictstore")), plugins=plugins):
            pytest.fail("the chain must not open")
    assert str(caught.value) == (
        "backend 'opaque' of plugin opaque (thirdparty-opaque 0.1): "
        "cfgstore_config_get(now_ms) does not match the spec cfgstore_config_get(): "
        "not in the spec: now_ms; declare exactly the spec's arguments"
    )
    assert set(plugins.manager.get_plugins()) == before
    async with Store.open(Settings(backends=("memory", "dictstore")), plugins=plugins) as store:
        await store.system_prompt.put("fine")


def test_one_entry_point_name_in_two_distributions(site: Site) -> None:
    quiet = """
    from cfgstore import hookimpl

    @hookimpl
    def cfgstore_changed(event):
        pass
    """
    site.install("twin", quiet, dist="twin-one")
    site.install("twin", quiet, dist="twin-two")
    plugins = make_plugin_manager(environ={})
    assert plugins.manager.has_plugin("twin")
    kept = plugins.distributions["twin"][0]
    other = ({"twin-one", "twin-two"} - {kept}).pop()
    [failure] = plugins.failures
    assert failure == PluginFailure(
        "twin",
        f"the entry-point name 'twin' is also used by {kept} 0.1, which was loaded; "
        "one of the two must rename it",
        f"{other} 0.1",
    )


def test_two_third_party_commands_with_one_name(site: Site) -> None:
    command = """
    from cfgstore import hookimpl

    @hookimpl
    def cfgctl_register_commands(app):
        @app.command("top")
        def top():
            '''Show the busiest nodes.'''
            print("top from {dist}")

        @app.command("{extra}")
        def extra():
            print("{extra}")
    """
    site.install("top-a", command.format(dist="a", extra="alpha"), dist="top-a")
    site.install("top-b", command.format(dist="b", extra="beta"), dist="top-b")
    plugins = make_plugin_manager(environ={})
    app = build_app(plugins)
    [failure] = plugins.failures
    first, second = ("a", "b") if failure.name == "top-b" else ("b", "a")
    assert failure.line() == (
        f"plugin top-{second} (top-{second} 0.1) not loaded: its command 'top' is already a "
        f"command of plugin top-{first} (top-{first} 0.1); rename it"
    )
    runner = CliRunner()
    assert runner.invoke(app, ["top"]).stdout == f"top from {first}\n"
    # The skipped plugin added none of its commands, not even those without a clash.
    skipped_extra = "beta" if second == "b" else "alpha"
    assert runner.invoke(app, [skipped_extra]).exit_code == 2
    assert not plugins.manager.has_plugin(f"top-{second}")


def test_a_gateway_hook_without_the_gateway_says_how_to_mark_it(site: Site) -> None:
    """Where the gateway is not installed (a manager with cfgstore's own specs only), an
    adapter plugin marked with plain ``cfgstore.hookimpl`` is told to use the optional
    marker instead of crashing every command."""
    site.install(
        "adapter-only",
        """
        from cfgstore import hookimpl

        @hookimpl
        def cfgstore_gateway_adapters(register):
            pass
        """,
    )
    manager = pluggy.PluginManager(PROJECT)
    for module in spec_modules():
        manager.add_hookspecs(module)
    plugin = importlib.import_module("thirdparty_adapter_only")
    assert hookimpl_problems(manager, plugin, backend=False) == [
        "cfgstore_gateway_adapters: no installed distribution specifies a hook named "
        "cfgstore_gateway_adapters; fix the name, or mark it hookimpl(optionalhook=True) if "
        "it belongs to a distribution that may be absent (the gateway's adapters_hookimpl "
        "does)"
    ]
    # With the gateway installed, the same plugin loads and implements the gateway's hook.
    plugins = make_plugin_manager(environ={})
    assert plugins.failures == []
    assert "cfgstore_gateway_adapters" in {
        h.name
        for h in plugins.manager.get_hookcallers(plugins.manager.get_plugin("adapter-only")) or []
    }

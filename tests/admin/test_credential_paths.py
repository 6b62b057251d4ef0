"""Security (issue 13, finding 6): the admin API cannot make the gateway read or write a
credential file outside the deployment's working directory.

The attack: an admin names a token file elsewhere (absolute, ``..``, ``configs/../..``, a
symlink inside ``configs/`` pointing out) in a node's ``*_CREDS_FILE_PATH``, on an add, an
update or a credential ``PUT``. Each is ``400`` naming the field, the pools are unchanged,
and the file system shows nothing created or overwritten outside. A folder an operator
lists in ``credential_roots`` (``CFGSTORE_CREDENTIAL_ROOTS``) is allowed.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from cfgstore.adapters import Settings
from cfgstore.model.pools import pools_to_json
from tests.admin.conftest import Admin, admin_gateway
from tests.admin.test_providers_api import KIRO, kiro_token, upload
from tests.gateway.conftest import make_deployment

PATH_KEY = "KIRO_OAUTH_CREDS_FILE_PATH"
FIELD = f"providerConfig.{PATH_KEY}"
EXISTING = "kiro-node-1"
VICTIM = b'{"keep": "me"}'


@attrs.frozen
class Site:
    """A deployment at ``root`` (its working directory) beside an ``outside`` folder."""

    root: Path
    outside: Path
    escape_name: str
    """A unique file name for paths that climb above the test's own folder."""

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    def attacks(self) -> dict[str, str]:
        """Attack name → the path string an admin sends."""
        return {
            "absolute": str(self.outside / "abs.json"),
            "etc": f"/etc/{self.escape_name}",
            "dotdot": f"../../{self.escape_name}",
            "sibling": "../outside/up.json",
            "configs-dotdot": "configs/../../outside/mid.json",
            "symlinked-folder": "configs/linked-dir/inner.json",
            "symlinked-file": "configs/linked-file.json",
        }

    def escape_targets(self) -> list[Path]:
        return [Path("/etc") / self.escape_name, self.root.parent.parent / self.escape_name]

    def outside_tree(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.outside).as_posix(): p.read_bytes()
            for p in sorted(self.outside.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.json").write_bytes(VICTIM)
    found = Site(tmp_path / "deploy", outside, f"cfgstore-attack-{secrets.token_hex(6)}.json")
    yield found
    for target in found.escape_targets():  # only there if a refusal failed
        target.unlink(missing_ok=True)


def deployment(site: Site, node_path: str = "./configs/kiro/k1/k1.json", **extra: Any) -> Settings:
    """The deployment: one Kiro node naming ``node_path`` (hand-edited pools), symlinks
    inside ``configs/`` pointing outside."""
    node = {"uuid": EXISTING, PATH_KEY: node_path, "customName": "k"}
    settings = make_deployment(site.root, {KIRO: [node]})
    (site.configs / "linked-dir").symlink_to(site.outside, target_is_directory=True)
    (site.configs / "linked-file.json").symlink_to(site.outside / "victim.json")
    return attrs.evolve(settings, **extra)


@pytest.fixture
async def admin(site: Site) -> AsyncIterator[Admin]:
    async with admin_gateway(deployment(site)) as anonymous:
        yield await anonymous.login()


async def pools(admin: Admin) -> dict[str, Any]:
    return pools_to_json(await admin.store.pools.list())


def assert_nothing_outside(site: Site) -> None:
    assert site.outside_tree() == {"victim.json": VICTIM}
    for target in site.escape_targets():
        assert not target.exists(), target


@pytest.mark.parametrize(
    "attack",
    [
        "absolute",
        "etc",
        "dotdot",
        "sibling",
        "configs-dotdot",
        "symlinked-folder",
        "symlinked-file",
    ],
)
async def test_an_account_added_with_an_outside_path_is_400(
    admin: Admin, site: Site, attack: str
) -> None:
    path = site.attacks()[attack]
    before = await pools(admin)
    status, body = await admin.call(
        "POST",
        "/api/providers",
        json={"providerType": KIRO, "providerConfig": {PATH_KEY: path}, "credential": kiro_token()},
    )
    assert status == 400, body
    assert path in body["error"]["fields"][FIELD]
    assert await pools(admin) == before
    assert_nothing_outside(site)


@pytest.mark.parametrize(
    "attack", ["absolute", "etc", "dotdot", "configs-dotdot", "symlinked-file"]
)
async def test_a_node_edited_to_an_outside_path_is_400_and_the_next_put_writes_inside(
    admin: Admin, site: Site, attack: str
) -> None:
    path = site.attacks()[attack]
    before = await pools(admin)
    status, body = await admin.call(
        "PUT", f"/api/providers/{KIRO}/{EXISTING}", json={"providerConfig": {PATH_KEY: path}}
    )
    assert status == 400, body
    assert FIELD in body["error"]["fields"]
    assert await pools(admin) == before
    token = kiro_token("after")
    status, body = await admin.call(
        "PUT", f"/api/providers/{KIRO}/{EXISTING}/credential", json=token
    )
    assert status == 200, body
    assert json.loads((site.configs / "kiro/k1/k1.json").read_bytes()) == token
    assert_nothing_outside(site)


@pytest.mark.parametrize("attack", ["absolute", "sibling", "configs-dotdot", "symlinked-file"])
async def test_a_credential_put_to_a_hand_edited_outside_path_is_400_and_writes_nothing(
    site: Site, attack: str
) -> None:
    path = site.attacks()[attack]
    async with admin_gateway(deployment(site, node_path=path)) as anonymous:
        admin = await anonymous.login()
        status, body = await admin.call(
            "PUT", f"/api/providers/{KIRO}/{EXISTING}/credential", json=kiro_token()
        )
        assert status == 400, body
        assert PATH_KEY in body["error"]["fields"]
    assert_nothing_outside(site)


async def test_equivalent_spellings_inside_the_working_directory_are_accepted(
    admin: Admin, site: Site
) -> None:
    token = kiro_token("inside")
    for index, path in enumerate(["configs/kiro/a/a.json", "./configs/kiro/a/../b/b.json"]):
        status, body = await admin.call(
            "POST",
            "/api/providers",
            json={
                "providerType": KIRO,
                "providerConfig": {"uuid": f"in-{index}", PATH_KEY: path},
                "credential": token,
            },
        )
        assert status == 200, body
    assert json.loads((site.configs / "kiro/a/a.json").read_bytes()) == token
    assert json.loads((site.configs / "kiro/b/b.json").read_bytes()) == token
    assert_nothing_outside(site)


async def test_a_folder_listed_in_credential_roots_is_allowed(site: Site) -> None:
    settings = deployment(site, credential_roots=(site.outside,))
    token = kiro_token("rooted")
    target = site.outside / "rooted" / "token.json"
    async with admin_gateway(settings) as anonymous:
        admin = await anonymous.login()
        status, body = await admin.call(
            "POST",
            "/api/providers",
            json={
                "providerType": KIRO,
                "providerConfig": {"uuid": "rooted", PATH_KEY: str(target)},
                "credential": token,
            },
        )
        assert status == 200, body
        stored = await admin.store.credentials.get(KIRO, "rooted")
        assert stored is not None and stored.document == token
        # Still nothing beyond the listed root.
        status, body = await admin.call(
            "POST",
            "/api/providers",
            json={"providerType": KIRO, "providerConfig": {PATH_KEY: site.attacks()["dotdot"]}},
        )
        assert status == 400 and FIELD in body["error"]["fields"], body
    assert json.loads(target.read_bytes()) == token
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    for escaped in site.escape_targets():
        assert not escaped.exists()


def test_the_roots_setting_reads_the_environment_variable(tmp_path: Path) -> None:
    value = os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")])
    settings = Settings.load(environ={"CFGSTORE_CREDENTIAL_ROOTS": value})
    assert settings.credential_roots == (tmp_path / "a", tmp_path / "b")


async def test_uploads_land_in_private_convention_folders(admin: Admin, site: Site) -> None:
    """Issue 13, 7: the token's folders are 0700 and the file 0600, whatever the umask."""
    form = upload({"file": json.dumps(kiro_token("up")).encode(), "provider": KIRO})
    status, body = await admin.call("POST", "/api/cfgstore/upload-oauth-credentials", data=form)
    assert status == 200, body
    named = body["provider"][PATH_KEY]  # the Node upload convention: under configs/kiro/
    assert named.startswith("./configs/kiro/"), named
    token_file = site.root / named
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for folder in (token_file.parent, token_file.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder

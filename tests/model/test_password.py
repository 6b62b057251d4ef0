"""The admin password file (aiclient-formats §5.1)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cfgstore.model.password import (
    DEFAULT_PASSWORD,
    hash_password,
    is_hashed,
    js_trim,
    verify_password,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PWD = REPO / "examples" / "deployment" / "configs" / "pwd"
PLAINTEXT_VARIANT = REPO / "examples" / "variants" / "pwd.plaintext-with-newline"
SHARED = REPO.parent / "shared" / "fixtures" / "aiclient-2-api"

STORED_FORM = re.compile(r"pbkdf2:[0-9a-f]{32}:[0-9a-f]{128}")


def test_example_pwd_verifies_with_its_password() -> None:
    stored = EXAMPLE_PWD.read_text("utf-8")
    assert not stored.endswith("\n")
    assert STORED_FORM.fullmatch(stored)
    assert is_hashed(stored)
    assert verify_password("example-admin-password", stored)
    # The password is trimmed before hashing, as the Node service does.
    assert verify_password("  example-admin-password\n", stored)
    assert not verify_password("example-admin-passwor", stored)
    assert not verify_password("Example-admin-password", stored)
    assert not verify_password(DEFAULT_PASSWORD, stored)


def test_shared_fixture_pwd_verifies() -> None:
    path = SHARED / "deployment" / "configs" / "pwd"
    if not path.is_file():
        pytest.skip("shared fixtures not present (fresh clone)")
    stored = path.read_text("utf-8")
    assert verify_password("fixture-admin-password", stored)
    assert not verify_password("example-admin-password", stored)


def test_legacy_plaintext_with_trailing_newline() -> None:
    stored = PLAINTEXT_VARIANT.read_text("utf-8")
    assert stored == "legacy-plain-password\n"
    assert not is_hashed(stored)
    assert verify_password("legacy-plain-password", stored)
    assert verify_password(" legacy-plain-password ", stored)
    assert not verify_password("legacy-plain-passwor", stored)
    assert not verify_password("legacy-plain-password-and-more", stored)
    assert not verify_password(DEFAULT_PASSWORD, stored)


def test_shipped_upstream_pwd_is_plaintext_admin123() -> None:
    path = SHARED / "upstream-examples" / "pwd"
    if not path.is_file():
        pytest.skip("shared fixtures not present (fresh clone)")
    stored = path.read_text("utf-8")
    assert verify_password("admin123", stored)
    assert not verify_password("admin1234", stored)


@pytest.mark.parametrize("stored", [None, "", "   ", "\n", "\ufeff\n"])
def test_missing_or_empty_pwd_accepts_nothing_not_even_admin123(stored: str | None) -> None:
    """Security (issue 13, 7): the Node service reads no password as ``admin123``; here no
    password matches nothing (``cfgctl serve`` generates one for such a folder)."""
    for tried in ("admin123", "admin", "", " ", "\ufeff"):
        assert not verify_password(tried, stored), tried


def test_hash_password_format_and_known_value() -> None:
    salt = "0123456789abcdef0123456789abcdef"
    stored = hash_password("  secret-example \n", salt)
    expected = hashlib.pbkdf2_hmac(
        "sha512", b"secret-example", salt.encode("ascii"), 310_000, 64
    ).hex()
    assert stored == f"pbkdf2:{salt}:{expected}"
    assert verify_password("secret-example", stored)


def test_fresh_salts_differ() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert STORED_FORM.fullmatch(first) and STORED_FORM.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    "stored",
    ["pbkdf2:short", "pbkdf2:a:b:c", "sha256:00112233445566778899:aabb", "pbkdf2:"],
)
def test_malformed_hash_forms_are_plaintext(stored: str) -> None:
    assert not is_hashed(stored)
    assert verify_password(stored, stored)


def test_corrupt_hash_form_is_rejected_not_raised() -> None:
    assert not verify_password("x", "pbkdf2:sält-not-hex:ünicode-hash")
    assert not verify_password("x", "pbkdf2:00:zz")


def test_js_trim_matches_string_prototype_trim() -> None:
    # Node: "\ufeff a \t".trim() === "a"; "\x1ca\x85".trim() keeps both controls.
    assert js_trim("\ufeff a \t\u3000") == "a"
    assert js_trim("\x1ca\x85") == "\x1ca\x85"
    assert verify_password("admin123", "\ufeffadmin123\r\n")  # pwd saved with a BOM


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_hash_matches_node_crypto() -> None:
    salt = "fedcba9876543210fedcba9876543210"
    password = "\ufeff pässwörd-示例 \u00a0"
    script = (
        "const c=require('crypto');"
        "const [pw,salt]=JSON.parse(process.argv[1]);"
        "process.stdout.write(c.pbkdf2Sync(pw.trim(),salt,310000,64,'sha512').toString('hex'))"
    )
    node = shutil.which("node")
    assert node is not None
    out = subprocess.run(
        [node, "-e", script, json.dumps([password, salt])],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert hash_password(password, salt) == f"pbkdf2:{salt}:{out}"

"""Credential documents: which node key names the file, where it is, when it expires,
what a refresh writes, and Kiro's directory merge (aiclient-formats §1, §3.2, §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cfgstore.model.credentials import (
    CREDENTIAL_PATH_KEYS,
    Credential,
    TokenFormat,
    apply_refresh,
    credential_path_of,
    expiry_ms,
    path_keys_for,
    resolve_path,
    token_format_for,
)
from cfgstore.model.jsjson import loads
from cfgstore.model.pools import ProviderNode, node_from_json, pools_from_json

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "deployment"
CONFIGS = EXAMPLE / "configs"
VARIANTS = REPO / "examples" / "variants"

VALID_MS = 1773579600000  # 2026-03-15T13:00:00.000Z, expiry of the example's valid tokens


def node(**settings: Any) -> ProviderNode:
    return node_from_json({"uuid": "u-1", **settings}, "test")


def read_doc(relative: str) -> dict[str, Any]:
    doc = loads((CONFIGS / relative).read_bytes(), relative)
    assert isinstance(doc, dict)
    return doc


# -------------------------------------------------------------------- path keys per type


@pytest.mark.parametrize(
    ("provider_type", "key", "token_format"),
    [
        ("claude-kiro-oauth", "KIRO_OAUTH_CREDS_FILE_PATH", TokenFormat.KIRO),
        ("gemini-cli-oauth", "GEMINI_OAUTH_CREDS_FILE_PATH", TokenFormat.GOOGLE),
        ("gemini-antigravity", "ANTIGRAVITY_OAUTH_CREDS_FILE_PATH", TokenFormat.GOOGLE),
        ("openai-qwen-oauth", "QWEN_OAUTH_CREDS_FILE_PATH", TokenFormat.QWEN),
        ("openai-iflow", "IFLOW_TOKEN_FILE_PATH", TokenFormat.IFLOW),
        ("openai-iflow", "IFLOW_OAUTH_CREDS_FILE_PATH", TokenFormat.IFLOW),
        ("openai-codex-oauth", "CODEX_OAUTH_CREDS_FILE_PATH", TokenFormat.CODEX),
        # Suffixed groups inherit their base type's carrier.
        ("claude-kiro-oauth-team2", "KIRO_OAUTH_CREDS_FILE_PATH", TokenFormat.KIRO),
        ("gemini-cli-oauth-eu", "GEMINI_OAUTH_CREDS_FILE_PATH", TokenFormat.GOOGLE),
        ("gemini-antigravity-x", "ANTIGRAVITY_OAUTH_CREDS_FILE_PATH", TokenFormat.GOOGLE),
        ("openai-qwen-oauth-b", "QWEN_OAUTH_CREDS_FILE_PATH", TokenFormat.QWEN),
        ("openai-iflow-backup", "IFLOW_OAUTH_CREDS_FILE_PATH", TokenFormat.IFLOW),
        ("openai-codex-oauth-work", "CODEX_OAUTH_CREDS_FILE_PATH", TokenFormat.CODEX),
    ],
)
def test_credential_path_of_oauth_types(
    provider_type: str, key: str, token_format: TokenFormat
) -> None:
    path = "./configs/some/file.json"
    assert credential_path_of(provider_type, node(**{key: path})) == (key, path)
    assert key in path_keys_for(provider_type)
    assert token_format_for(provider_type) is token_format
    assert key in CREDENTIAL_PATH_KEYS


@pytest.mark.parametrize(
    "provider_type",
    [
        "grok-web",
        "openai-custom",
        "openai-custom-deepseek",
        "openaiResponses-custom",
        "claude-custom",
        "claude-custom-spare",
        "atlascloud",
        "forward-api",
        "claude-kiro-oauthx",  # a prefix match needs the "-" separator
        "auto",
    ],
)
def test_types_without_token_files(provider_type: str) -> None:
    carrier = node(
        KIRO_OAUTH_CREDS_FILE_PATH="./configs/k.json", GROK_COOKIE_TOKEN="FAKE", OPENAI_API_KEY="k"
    )
    assert credential_path_of(provider_type, carrier) is None
    assert path_keys_for(provider_type) == ()
    assert token_format_for(provider_type) is TokenFormat.UNKNOWN


def test_iflow_prefers_the_adapter_key_and_falls_back_to_the_ui_form_key() -> None:
    both = node(
        IFLOW_OAUTH_CREDS_FILE_PATH="./configs/iflow/ui.json",
        IFLOW_TOKEN_FILE_PATH="./configs/iflow/adapter.json",
    )
    assert credential_path_of("openai-iflow", both) == (
        "IFLOW_TOKEN_FILE_PATH",
        "./configs/iflow/adapter.json",
    )
    empty_token_key = node(IFLOW_TOKEN_FILE_PATH="", IFLOW_OAUTH_CREDS_FILE_PATH="./u.json")
    assert credential_path_of("openai-iflow", empty_token_key) == (
        "IFLOW_OAUTH_CREDS_FILE_PATH",
        "./u.json",
    )


@pytest.mark.parametrize("value", [None, "", "   ", 5, ["./x.json"]])
def test_missing_blank_or_non_string_paths_are_no_path(value: Any) -> None:
    assert credential_path_of("claude-kiro-oauth", node(KIRO_OAUTH_CREDS_FILE_PATH=value)) is None
    assert credential_path_of("claude-kiro-oauth", node()) is None


def test_every_example_oauth_node_names_an_existing_file() -> None:
    pools = pools_from_json(loads((CONFIGS / "provider_pools.json").read_bytes(), "p"), "p")
    found = {}
    for provider_type, n in pools:
        carrier = credential_path_of(provider_type, n)
        if carrier is not None:
            found[n.uuid] = (carrier[0], resolve_path(carrier[1], EXAMPLE))
    assert len(found) == 11
    assert all(path.is_file() for _, path in found.values())
    keys = sorted({key for key, _ in found.values()})
    assert keys == sorted(
        [
            "ANTIGRAVITY_OAUTH_CREDS_FILE_PATH",
            "CODEX_OAUTH_CREDS_FILE_PATH",
            "GEMINI_OAUTH_CREDS_FILE_PATH",
            "IFLOW_OAUTH_CREDS_FILE_PATH",
            "IFLOW_TOKEN_FILE_PATH",
            "KIRO_OAUTH_CREDS_FILE_PATH",
            "QWEN_OAUTH_CREDS_FILE_PATH",
        ]
    )


# -------------------------------------------------------------------------- resolve_path


@pytest.mark.parametrize(
    ("path_string", "expected"),
    [
        ("./configs/x.json", "configs/x.json"),
        ("configs/x.json", "configs/x.json"),
        ("./credentials1.json", "credentials1.json"),  # cwd, never the configs folder
        (".\\configs\\kiro\\a.json", "configs/kiro/a.json"),
        ("configs\\kiro\\b\\b.json", "configs/kiro/b/b.json"),
        ("  ./configs/padded.json  ", "configs/padded.json"),
        ("./configs/../configs/x.json", "configs/x.json"),
    ],
)
def test_resolve_relative_paths_against_cwd(path_string: str, expected: str) -> None:
    cwd = Path("/app")
    assert resolve_path(path_string, cwd) == Path("/app") / expected


def test_resolve_absolute_path_as_is() -> None:
    assert resolve_path("/srv/tokens/kiro.json", Path("/app")) == Path("/srv/tokens/kiro.json")


def test_windows_variant_resolves_to_the_same_files_as_the_deployment() -> None:
    posix = pools_from_json(loads((CONFIGS / "provider_pools.json").read_bytes(), "p"), "p")
    windows_raw = (VARIANTS / "provider_pools.windows-paths.json").read_bytes()
    assert b".\\\\configs\\\\" in windows_raw
    windows = pools_from_json(loads(windows_raw, "w"), "w")
    compared = 0
    for provider_type, win_node in windows:
        carrier = credential_path_of(provider_type, win_node)
        if carrier is None:
            continue
        assert "\\" in carrier[1]
        twin = posix.find(provider_type, win_node.uuid)
        assert twin is not None
        twin_carrier = credential_path_of(provider_type, twin)
        assert twin_carrier is not None and twin_carrier[0] == carrier[0]
        resolved = resolve_path(carrier[1], EXAMPLE)
        assert resolved == resolve_path(twin_carrier[1], EXAMPLE)
        assert resolved.is_file()
        compared += 1
    assert compared == 5


# ---------------------------------------------------------------------------- expiry_ms


def test_expiry_per_format_on_the_example_files() -> None:
    kiro = read_doc("kiro/1773400000000_kiro-auth-token/1773400000000_kiro-auth-token.json")
    assert expiry_ms(kiro, TokenFormat.KIRO) == VALID_MS
    builder = read_doc("kiro/1773400100000_kiro-auth-token/1773400100000_kiro-auth-token.json")
    assert expiry_ms(builder, TokenFormat.KIRO) == VALID_MS - 3 * 3_600_000  # expired
    gemini = read_doc("gemini/1773300000000_oauth_creds.json")
    assert expiry_ms(gemini, TokenFormat.GOOGLE) == VALID_MS
    antigravity = read_doc("antigravity/1773310000000_oauth_creds.json")
    assert expiry_ms(antigravity, TokenFormat.GOOGLE) == VALID_MS - 30 * 60_000
    qwen_raw = read_doc("qwen/1773320000000_oauth_creds.json")
    assert "expires_in" in qwen_raw
    assert expiry_ms(qwen_raw, TokenFormat.QWEN) is None  # device flow: no expiry_date yet
    qwen = read_doc("qwen/1773320500000_oauth_creds.json")
    assert expiry_ms(qwen, TokenFormat.QWEN) == VALID_MS + 4 * 3_600_000 + 30 * 60_000
    iflow = read_doc("iflow/1773330000000_oauth_creds.json")
    assert expiry_ms(iflow, TokenFormat.IFLOW) == VALID_MS - 3_600_000 + 2 * 86_400_000
    legacy = read_doc("iflow/iflow-legacy-camel.json")
    assert legacy["expiryDate"] == "2026-03-20 08:30"
    assert expiry_ms(legacy, TokenFormat.IFLOW) == 1773995400000  # 2026-03-20T08:30:00Z
    codex = read_doc("codex/1773340000000_codex-bob@example.com_oauth_creds.json")
    assert expiry_ms(codex, TokenFormat.CODEX) == VALID_MS
    only = read_doc(
        "codex/1773340500000_codex-codex-0c0d0000-0000-4000-8000-00000000000b_oauth_creds.json"
    )
    assert only["access_token_only"] is True
    assert expiry_ms(only, TokenFormat.CODEX) == VALID_MS - 3_600_000 + 86_400_000


@pytest.mark.parametrize(
    ("document", "token_format", "expected"),
    [
        ({"expiresAt": "2026-03-15T13:00:00.000Z"}, TokenFormat.KIRO, VALID_MS),
        ({"expiry_date": VALID_MS}, TokenFormat.KIRO, None),  # Kiro reads expiresAt only
        ({}, TokenFormat.KIRO, None),
        ({"expiry_date": VALID_MS}, TokenFormat.GOOGLE, VALID_MS),
        ({"expiry_date": VALID_MS, "expires_in": 3600}, TokenFormat.QWEN, VALID_MS),
        ({"expiry_date": str(VALID_MS)}, TokenFormat.IFLOW, VALID_MS),
        ({"expiryDate": VALID_MS}, TokenFormat.IFLOW, VALID_MS),
        ({"expiryDate": "2026-03-15T13:00:00.000Z"}, TokenFormat.IFLOW, VALID_MS),
        ({"expiryDate": "2026-03-15 13:00"}, TokenFormat.IFLOW, VALID_MS),
        ({"expiry_date": VALID_MS, "expiryDate": 1}, TokenFormat.IFLOW, VALID_MS),
        ({"expired": "2026-03-15T13:00:00.000Z"}, TokenFormat.CODEX, VALID_MS),
        ({"expiry_date": VALID_MS}, TokenFormat.CODEX, None),  # Codex's key is "expired"
        ({"expires_at": VALID_MS}, TokenFormat.UNKNOWN, VALID_MS),
        ({"expiry": "2026-03-15T13:00:00Z"}, TokenFormat.UNKNOWN, VALID_MS),
        ({"expiresAt": "not a date"}, TokenFormat.KIRO, None),
        ({"expiry_date": True}, TokenFormat.GOOGLE, None),
        ({"expiry_date": "²"}, TokenFormat.GOOGLE, None),
        ({"expiry_date": float("inf")}, TokenFormat.GOOGLE, None),
    ],
)
def test_expiry_ms_by_format(
    document: dict[str, Any], token_format: TokenFormat, expected: int | None
) -> None:
    assert expiry_ms(document, token_format) == expected


# -------------------------------------------------------------------------- apply_refresh


def test_kiro_refresh_merges_into_the_file() -> None:
    current = read_doc("kiro/1773400100000_kiro-auth-token/1773400100000_kiro-auth-token.json")
    fresh = {
        "accessToken": "aoaFAKE-new",
        "refreshToken": "aorFAKE-new",
        "expiresAt": "2026-03-15T14:00:00.000Z",
        "profileArn": "arn:FAKE",
    }
    written = apply_refresh(current, fresh, TokenFormat.KIRO)
    assert list(written) == [*current, "profileArn"]
    assert written["clientId"] == current["clientId"]
    assert written["clientSecret"] == current["clientSecret"]
    assert written["authMethod"] == "builder-id"
    assert written["accessToken"] == "aoaFAKE-new"
    assert written["expiresAt"] == "2026-03-15T14:00:00.000Z"
    assert current["accessToken"] != "aoaFAKE-new"  # input untouched


@pytest.mark.parametrize(
    ("relative", "token_format"),
    [
        ("gemini/1773300000000_oauth_creds.json", TokenFormat.GOOGLE),
        ("antigravity/1773310000000_oauth_creds.json", TokenFormat.GOOGLE),
        ("qwen/1773320000000_oauth_creds.json", TokenFormat.QWEN),
        ("iflow/iflow-legacy-camel.json", TokenFormat.IFLOW),
        ("codex/1773340000000_codex-bob@example.com_oauth_creds.json", TokenFormat.CODEX),
    ],
)
def test_other_refreshes_replace_the_file(relative: str, token_format: TokenFormat) -> None:
    current = read_doc(relative)
    fresh = {"access_token": "FAKE-new", "refresh_token": "FAKE-r", "expiry_date": VALID_MS}
    written = apply_refresh(current, fresh, token_format)
    assert written == fresh
    assert written is not fresh
    assert not token_format.refresh_merges
    assert TokenFormat.KIRO.refresh_merges


# ---------------------------------------------------------------- Kiro directory merge


def _ide_credential() -> Credential:
    document = read_doc("kiro/ide-cache/kiro-auth-token.json")
    sibling = read_doc(f"kiro/ide-cache/{document['clientIdHash']}.json")
    return Credential(
        "claude-kiro-oauth",
        "299f53b6-db17-48a2-a3e6-5754f00925e7",
        document,
        "configs/kiro/ide-cache/kiro-auth-token.json",
        TokenFormat.KIRO,
        siblings={f"{document['clientIdHash']}.json": sibling},
    )


def test_kiro_sibling_merge_supplies_client_registration_and_keeps_target_expiry() -> None:
    credential = _ide_credential()
    (sibling,) = credential.siblings.values()
    assert sibling["expiresAt"] == "2026-06-13T00:00:00.000Z"
    merged = credential.effective()
    assert merged["clientId"] == "FAKE-example-clientId-ide-0003"
    assert merged["clientSecret"] == "FAKE-example-clientSecret-ide-0003"
    assert merged["expiresAt"] == "2026-03-15T13:00:00.000Z"
    assert merged["accessToken"] == "aoaFAKE-example-kiro-ide-access-0003"
    # The target's keys first, then what the siblings add.
    assert list(merged) == [*credential.document, "clientId", "clientSecret"]
    assert credential.expiry_ms() == VALID_MS
    assert "clientId" not in credential.document  # the document itself is untouched


def test_kiro_sibling_values_win_except_expires_at() -> None:
    # Node: `credentials.expiresAt = merged.expiresAt; Object.assign(merged, credentials)`.
    credential = Credential(
        "claude-kiro-oauth",
        "u",
        {"accessToken": "a", "region": "us-east-1", "expiresAt": "2026-03-15T13:00:00.000Z"},
        token_format=TokenFormat.KIRO,
        siblings={
            "reg.json": {
                "region": "eu-west-1",
                "clientId": "c",
                "expiresAt": "2030-01-01T00:00:00Z",
            }
        },
    )
    assert credential.effective() == {
        "accessToken": "a",
        "region": "eu-west-1",
        "expiresAt": "2026-03-15T13:00:00.000Z",
        "clientId": "c",
    }


def test_kiro_target_without_expiry_gets_none_from_siblings() -> None:
    credential = Credential(
        "claude-kiro-oauth",
        "u",
        {"accessToken": "a"},
        token_format=TokenFormat.KIRO,
        siblings={"reg.json": {"clientId": "c", "expiresAt": "2030-01-01T00:00:00.000Z"}},
    )
    assert credential.effective() == {"accessToken": "a", "clientId": "c"}
    assert credential.expiry_ms() is None


def test_effective_without_siblings_is_a_copy_of_the_document() -> None:
    document = read_doc("gemini/1773300000000_oauth_creds.json")
    credential = Credential("gemini-cli-oauth", "u", document, token_format=TokenFormat.GOOGLE)
    merged = credential.effective()
    assert merged == document
    assert merged is not document
    assert credential.expiry_ms() == VALID_MS

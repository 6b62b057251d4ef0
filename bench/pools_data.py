"""A realistic ``provider_pools.json`` for the benchmarks (aiclient-formats §3.3).

20 nodes across 4 types: two OAuth types whose nodes have the auto-link key order and two
API-key types whose nodes have the web-UI add-form key order, both after the Node service's
load-time normalisation (§3.4: counters zeroed, the always-present keys appended). Every
``usageCount`` starts at 0, so after N successes the counts must sum to exactly N.
Other sizes (``realistic_pools(sizes)``) give more nodes of the same shapes.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping

from cfgstore.model.jsjson import JSONValue

_NAMESPACE = uuidlib.UUID("6f2b1c3e-0d3a-4b8e-9a51-3c1f0e7d2b90")

TYPE_SIZES: dict[str, int] = {
    "claude-kiro-oauth": 6,
    "gemini-cli-oauth": 5,
    "openai-custom": 5,
    "claude-custom": 4,
}


def node_uuid(provider_type: str, index: int) -> str:
    """A stable UUID per node, so that runs are comparable."""
    return str(uuidlib.uuid5(_NAMESPACE, f"{provider_type}/{index}"))


def _auto_link_node(provider_type: str, index: int) -> dict[str, JSONValue]:
    # Auto-link order: [credKey], uuid, checkModelName, checkHealth, state…, [PROJECT_ID], urls.
    ts = 1779990000000 + index * 50_000
    if provider_type == "claude-kiro-oauth":
        cred_key = "KIRO_OAUTH_CREDS_FILE_PATH"
        cred = f"./configs/kiro/{ts}_kiro-auth-token/{ts}_kiro-auth-token.json"
        model = "claude-haiku-4-5"
        extra: dict[str, JSONValue] = {
            "KIRO_BASE_URL": "",
            "KIRO_REFRESH_URL": "",
            "KIRO_REFRESH_IDC_URL": "",
        }
    else:
        cred_key = "GEMINI_OAUTH_CREDS_FILE_PATH"
        cred = f"./configs/gemini/{ts}_oauth_creds.json"
        model = "gemini-2.5-flash"
        project = "" if index % 2 else f"proj-{index:03d}-424242"  # "" = discover at runtime
        extra = {"PROJECT_ID": project, "GEMINI_BASE_URL": ""}
    return {
        cred_key: cred,
        "uuid": node_uuid(provider_type, index),
        "checkModelName": model,
        "checkHealth": False,
        "isHealthy": True,
        "isDisabled": False,
        "lastUsed": None,
        "usageCount": 0,
        "errorCount": 0,
        "lastErrorTime": None,
        "lastHealthCheckTime": "2026-05-30T07:50:00.004Z" if index % 3 == 0 else None,
        "lastHealthCheckModel": model if index % 3 == 0 else None,
        "lastErrorMessage": None,
        **extra,
        "needsRefresh": False,
        "refreshCount": 0,
        "customName": f"{provider_type.split('-')[0].title()} 账号 #{index}" if index % 2 else None,
    }


def _ui_form_node(provider_type: str, index: int) -> dict[str, JSONValue]:
    # UI add-form order: customName, checkModelName, checkHealth, limits, <type fields>, uuid,
    # state…, [supportedModels, notSupportedModels], then the keys normalisation appends.
    if provider_type == "openai-custom":
        type_fields: dict[str, JSONValue] = {
            "OPENAI_API_KEY": f"sk-bench-{index:02d}-{'x' * 40}",
            "OPENAI_BASE_URL": f"https://api{index}.example.com/v1",
        }
        models: list[JSONValue] = ["deepseek-chat", "deepseek-reasoner", "gpt-4o-mini"]
        check = "gpt-4o-mini"
    else:
        type_fields = {
            "CLAUDE_API_KEY": f"sk-ant-bench-{index:02d}-{'y' * 48}",
            "CLAUDE_BASE_URL": "https://api.anthropic.com",
        }
        models = ["claude-3-7-sonnet-20250219", "claude-sonnet-4-5"]
        check = "claude-3-7-sonnet-20250219"
    return {
        "customName": f"{provider_type} #{index}",
        "checkModelName": check,
        "checkHealth": index % 2 == 0,
        "concurrencyLimit": 4 + index,
        "queueLimit": 16,
        **type_fields,
        "uuid": node_uuid(provider_type, index),
        "isHealthy": True,
        "lastUsed": None,
        "usageCount": 0,
        "errorCount": 0,
        "lastErrorTime": None,
        "supportedModels": models,
        "notSupportedModels": [],
        "isDisabled": False,
        "needsRefresh": False,
        "refreshCount": 0,
        "lastHealthCheckTime": None,
        "lastHealthCheckModel": None,
        "lastErrorMessage": None,
    }


def realistic_pools(sizes: Mapping[str, int] = TYPE_SIZES) -> dict[str, JSONValue]:
    """The document, as parsed JSON: ``sizes`` nodes per type (a type ending in ``-oauth``
    gets auto-link nodes, any other the web-UI add-form shape of ``openai-custom`` or, for
    every other name, ``claude-custom``)."""
    doc: dict[str, JSONValue] = {}
    for provider_type, size in sizes.items():
        make = _auto_link_node if provider_type.endswith("-oauth") else _ui_form_node
        doc[provider_type] = [make(provider_type, i) for i in range(size)]
    return doc


def node_keys(sizes: Mapping[str, int] = TYPE_SIZES) -> list[tuple[str, str]]:
    """(type, uuid) of every node, in document order."""
    return [(t, node_uuid(t, i)) for t, size in sizes.items() for i in range(size)]

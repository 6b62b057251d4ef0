"""Accounts the gateway cannot serve are left alone (issue 15.5), against a real gateway
over an imported deployment (file backend) with its background work running.

A ``claude-kiro-oauth`` node with no relay configured (the gateway here runs only the
generic adapter, with Kiro as a pass-through relay type as it was before Kiro had an adapter
of its own: :data:`RELAY`, so no adapter speaks Kiro's protocol) and a ``grok-web`` node
(no adapter at all) sit in the pools next to served nodes, with every type selected for
the startup health check and proactive refresh on.
The startup pass checks the served nodes and records nothing for the others; the refresh
pass refreshes the served Kiro node's token and never the other's; requests for the Kiro
type go to the served node only. Their node documents in ``provider_pools.json`` and the
unserved Kiro token file are byte for byte what they were. Before, the startup check
marked every such node ``errorCount: 1`` with ``no upstream base URL for
claude-kiro-oauth…``, which then showed in the Node service after a rollback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cfgstore.model import jsjson
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_gateway.adapters.openai_compat import PROFILES, OpenAICompatAdapter, TypeProfile
from tests.gateway.conftest import TYPE, api_node, make_deployment, running_gateway, write_json
from tests.gateway.token_stub import Received, TokenStub
from tests.gateway.upstream_stub import UpstreamStub
from tests.support.waiting import until

KIRO = "claude-kiro-oauth"
GROK = "grok-web"
UNSERVED_KIRO = "7a7a0000-0000-4000-8000-000000000001"
SERVED_KIRO = "7a7a0000-0000-4000-8000-000000000002"
GROK_NODE = "7a7a0000-0000-4000-8000-000000000003"
OPENAI_NODE = "7a7a0000-0000-4000-8000-000000000004"
RELAY = OpenAICompatAdapter(
    {**PROFILES, KIRO: TypeProfile("KIRO_BASE_URL", None, pass_through=True)}
)
"""The only adapter of these gateways: Kiro served through an OpenAI-compatible relay."""


NODE_SERVICE_STATE: dict[str, Any] = {
    "isHealthy": True,
    "lastUsed": None,
    "usageCount": 0,
    "errorCount": 0,
    "isDisabled": False,
    "needsRefresh": False,
    "refreshCount": 0,
    "lastHealthCheckTime": None,
    "lastHealthCheckModel": None,
    "lastErrorMessage": None,
    "customName": None,
}
"""The state fields the Node service writes on every node (as an imported file has them)."""


def imported(**fields: Any) -> dict[str, Any]:
    """A node as the Node service wrote it: its fields, then its state fields."""
    return {**fields, **{k: v for k, v in NODE_SERVICE_STATE.items() if k not in fields}}


def expired_kiro(name: str) -> dict[str, Any]:
    return {
        "accessToken": f"old-access-{name}",
        "refreshToken": f"old-refresh-{name}",
        "expiresAt": iso_ms(now_ms() - 60_000),
        "authMethod": "social",
        "region": "us-east-1",
    }


def refreshed(received: Received, number: int) -> tuple[int, Any]:
    return 200, {
        "accessToken": f"new-access-{number}",
        "refreshToken": f"new-refresh-{number}",
        "expiresIn": 3600,
    }


async def test_unserved_nodes_are_untouched_by_health_checks_refresh_and_selection(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    async with TokenStub(refreshed) as tokens:
        refresh_url = tokens.url("/refresh")
        configs = tmp_path / "configs"
        for name in ("unserved", "served"):
            write_json(configs / "kiro" / name / "kiro-auth-token.json", expired_kiro(name))
        unserved_kiro = imported(
            uuid=UNSERVED_KIRO,
            KIRO_OAUTH_CREDS_FILE_PATH="./configs/kiro/unserved/kiro-auth-token.json",
            KIRO_REFRESH_URL=refresh_url,
            checkModelName="claude-sonnet-4-5",
            # Cooling down until a minute ago: a pick of its served sibling finds it due
            # for recovery, and must leave it as it is all the same.
            isHealthy=False,
            scheduledRecoveryTime=iso_ms(now_ms() - 60_000),
        )
        served_kiro = {
            "uuid": SERVED_KIRO,
            "KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/served/kiro-auth-token.json",
            "KIRO_REFRESH_URL": refresh_url,
            "KIRO_BASE_URL": upstream.base_url,
            "checkModelName": "claude-sonnet-4-5",
        }
        grok = imported(uuid=GROK_NODE, GROK_COOKIE_TOKEN="fixture-cookie", customName="g")
        pools = {
            KIRO: [unserved_kiro, served_kiro],  # the unserved one first: refreshed first
            GROK: [grok],
            TYPE: [api_node(OPENAI_NODE, upstream.base_url, "key-o", checkModelName="m")],
        }
        settings = make_deployment(
            tmp_path,
            pools,
            MODEL_PROVIDER=KIRO,
            SCHEDULED_HEALTH_CHECK={"enabled": False, "providerTypes": [KIRO, GROK, TYPE]},
            CRON_REFRESH_TOKEN=True,
        )
        token_file = (configs / "kiro" / "unserved" / "kiro-auth-token.json").read_bytes()
        async with running_gateway(settings, adapters=[RELAY]) as gw:

            async def checked() -> bool:
                served = [await gw.node(OPENAI_NODE), await gw.node(SERVED_KIRO, KIRO)]
                return all(n.state.last_health_check_time for n in served)

            await until(checked, "the startup health check of the served nodes")

            async def served_token_refreshed() -> bool:
                credential = await gw.store.credentials.get(KIRO, SERVED_KIRO)
                return credential is not None and credential.document["accessToken"] != (
                    "old-access-served"
                )

            await until(served_token_refreshed, "the served Kiro node's token refreshed")
            for _ in range(3):
                assert (await gw.chat("claude-sonnet-4-5")).status == 200
            assert (await gw.node(SERVED_KIRO, KIRO)).state.usage_count == 3
        # One refresh (the served node's), whatever asked for it first.
        assert [r.fields for r in tokens.received] == [{"refreshToken": "old-refresh-served"}]

    stored = json.loads((configs / "provider_pools.json").read_bytes())
    by_uuid = {node["uuid"]: node for nodes in stored.values() for node in nodes}
    for original in (unserved_kiro, grok):
        assert jsjson.dump_bytes(by_uuid[original["uuid"]]) == jsjson.dump_bytes(original)
    assert (configs / "kiro" / "unserved" / "kiro-auth-token.json").read_bytes() == token_file
    assert by_uuid[OPENAI_NODE]["lastHealthCheckTime"]  # the pass did run and record


async def test_the_adapters_endpoint_names_the_types_not_served(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    from tests.admin.conftest import admin_gateway

    pools = {
        KIRO: [{"uuid": UNSERVED_KIRO, "KIRO_OAUTH_CREDS_FILE_PATH": "./k.json"}],
        GROK: [{"uuid": GROK_NODE}],
        TYPE: [api_node(OPENAI_NODE, upstream.base_url, "key-o")],
    }
    async with admin_gateway(make_deployment(tmp_path, pools), adapters=[RELAY]) as anonymous:
        admin = await anonymous.login()
        status, body = await admin.call("GET", "/api/adapters")
    assert status == 200
    types = body["types"]
    assert list(types) == [KIRO, GROK, TYPE]
    assert types[KIRO]["adapter"] == "openai-compatible" and types[KIRO]["served"] is False
    assert types[KIRO]["reason"].startswith("no adapter installed for claude-kiro-oauth's own")
    assert "KIRO_BASE_URL" in types[KIRO]["reason"]
    assert types[KIRO]["unservedNodes"] == [UNSERVED_KIRO]
    assert types[GROK] == {
        "adapter": None,
        "served": False,
        "reason": "no adapter installed for grok-web",
        "unservedNodes": [GROK_NODE],
    }
    assert types[TYPE] == {
        "adapter": "openai-compatible",
        "served": True,
        "reason": None,
        "unservedNodes": [],
    }

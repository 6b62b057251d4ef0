"""The admin API and ``cfgctl migrate`` judge ``config.json`` values by the same rules
(:mod:`cfgstore.model.config_rules`): what migrate warns about is a 400 here, and what
the sample deployment holds is accepted here."""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin.conftest import Admin


@pytest.mark.parametrize(
    "change",
    [{"MAX_ERROR_COUNT": "three"}, {"SERVER_PORT": "abc"}, {"REQUEST_MAX_RETRIES": -5}],
)
async def test_values_migrate_warns_about_are_refused(admin: Admin, change: dict[str, Any]) -> None:
    status, body = await admin.call("POST", "/api/config", json=change)
    assert status == 400, body
    assert list(body["error"]["fields"]) == list(change)


@pytest.mark.parametrize("providers", [["gemini-cli-oauth", "openai-custom"], "a,b"])
async def test_model_provider_may_be_a_list_as_in_the_node_service(
    admin: Admin, providers: Any
) -> None:
    status, body = await admin.call("POST", "/api/config", json={"MODEL_PROVIDER": providers})
    assert status == 200, body
    assert (await admin.store.config.get()).document["MODEL_PROVIDER"] == providers


async def test_an_empty_provider_list_is_refused(admin: Admin) -> None:
    status, body = await admin.call("POST", "/api/config", json={"MODEL_PROVIDER": []})
    assert status == 400, body

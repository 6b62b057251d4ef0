"""A request that finds no node is told why (issue 15.4), over HTTP against a real gateway.

The message keeps the Node service's words (``No healthy provider found in pool for
<type> supporting model: <model>``) and adds what chose the type (the ``Model-Provider``
header, the path prefix, the model's ``type:`` prefix, ``MODEL_PROVIDER`` or its default,
a custom model) and every target's skip reason: none configured, disabled, unhealthy,
model not supported, no adapter installed, or a mix. A model without a ``type:`` prefix
goes to ``MODEL_PROVIDER`` as in the Node service; when another pool type lists it, the
message names that type and how to ask for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import (
    TYPE,
    Gateway,
    api_node,
    auth,
    make_deployment,
    running_gateway,
    write_json,
)
from tests.gateway.upstream_stub import UpstreamStub

A, B, C, D, E = (f"0000000{i}-0000-4000-8000-000000000000" for i in range(1, 6))


async def error_of(response: Any) -> tuple[int, str, str]:
    document = await response.json()
    return response.status, document["error"]["code"], document["error"]["message"]


async def test_a_model_listed_by_another_type_is_named_with_the_way_to_ask_for_it(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    """The issue's case: the model is listed by ``/v1/models`` for an ``openai-custom``
    node, but ``MODEL_PROVIDER`` is unset, so the request went to ``gemini-cli-oauth``."""
    pools = {TYPE: [api_node(A, upstream.base_url, "key-a", supportedModels=["my-model"])]}
    settings = make_deployment(tmp_path, pools, MODEL_PROVIDER=None)
    async with running_gateway(settings) as gw:
        listed = await gw.client.get("/v1/models", headers=auth())
        assert [m["id"] for m in (await listed.json())["data"]] == ["my-model"]
        status, code, message = await error_of(await gw.chat("my-model"))
        assert (status, code) == (503, "no_healthy_provider")
        assert message.startswith(
            "No healthy provider found in pool for gemini-cli-oauth supporting model: my-model"
        )
        assert "the default MODEL_PROVIDER (gemini-cli-oauth" in message
        assert "gemini-cli-oauth: none configured" in message
        assert "Model 'my-model' is listed by openai-custom" in message
        assert "'openai-custom:my-model'" in message and "Model-Provider: openai-custom" in message
        assert upstream.chat_requests() == []
        # Asked the way the message says: served.
        assert (await gw.chat("openai-custom:my-model")).status == 200


async def test_every_target_says_why_it_was_skipped(tmp_path: Path, upstream: UpstreamStub) -> None:
    url = upstream.base_url
    pools = {
        TYPE: [api_node(A, url, "key-a", isHealthy=False)],
        "openai-custom-off": [api_node(B, url, "key-b", isDisabled=True)],
        "openai-custom-small": [api_node(C, url, "key-c", supportedModels=["other"])],
        "openai-custom-mixed": [
            api_node(D, url, "key-d", isDisabled=True),
            api_node(E, url, "key-e", isHealthy=False),
        ],
        "grok-web": [{"uuid": "grok-1", "GROK_COOKIE_TOKEN": "fixture-cookie"}],
    }
    chain = [
        "openai-custom-off",
        "openai-custom-small",
        "openai-custom-none",
        "openai-custom-mixed",
    ]
    settings = make_deployment(
        tmp_path,
        pools,
        MODEL_PROVIDER=TYPE,
        providerFallbackChain={TYPE: chain},
        modelFallbackMapping={"gpt-x": {"targetProviderType": "grok-web", "targetModel": "g-1"}},
    )
    async with running_gateway(settings) as gw:
        before = await gw.store.pools.list()
        status, code, message = await error_of(await gw.chat("gpt-x"))
        assert (status, code) == (503, "no_healthy_provider")
        via = f"via providerFallbackChain['{TYPE}']"
        for part in (
            "(type chosen by MODEL_PROVIDER in config.json)",
            f"{TYPE}: its only node unhealthy",
            f"openai-custom-off {via}: its only node disabled",
            f"openai-custom-small {via}: model not supported by any of its 1 node",
            f"openai-custom-none {via}: none configured",
            f"openai-custom-mixed {via}: no usable node among 2: 1 disabled, 1 unhealthy",
            "grok-web for model g-1 via modelFallbackMapping['gpt-x']: "
            "no adapter installed for grok-web",
        ):
            assert part in message, (part, message)
        assert upstream.chat_requests() == []
        assert await gw.store.pools.list() == before  # nothing recorded for the skips


async def routed_error(gw: Gateway, **request: Any) -> str:
    status, code, message = await error_of(await gw.chat(**request))
    assert (status, code) == (503, "no_healthy_provider"), message
    return message


@pytest.mark.parametrize(
    ("request_args", "chosen_by"),
    [
        ({"headers": {"model-provider": "openai-custom-none"}}, "the Model-Provider header"),
        ({"path": "/openai-custom-none/v1/chat/completions"}, "the /{type}/v1/ path prefix"),
        ({"model": "openai-custom-none:m"}, "the model's 'type:' prefix"),
        ({"model": "alias-none"}, "then custom model 'alias-none' of custom_models.json"),
    ],
)
async def test_the_message_names_what_chose_the_type(
    tmp_path: Path, upstream: UpstreamStub, request_args: dict[str, Any], chosen_by: str
) -> None:
    settings = make_deployment(
        tmp_path, {TYPE: [api_node(A, upstream.base_url, "key-a")]}, MODEL_PROVIDER=TYPE
    )
    custom = [{"id": "alias-none", "provider": "openai-custom-none", "actualModel": "m"}]
    write_json(tmp_path / "configs" / "custom_models.json", custom)
    async with running_gateway(settings) as gw:
        message = await routed_error(gw, **{"model": "m", **request_args})
        assert "No healthy provider found in pool for openai-custom-none" in message
        assert chosen_by in message
        assert "openai-custom-none: none configured" in message


async def test_a_type_with_no_adapter_is_provider_unsupported(
    tmp_path: Path, upstream: UpstreamStub
) -> None:
    pools = {"grok-web": [{"uuid": "grok-1", "GROK_COOKIE_TOKEN": "fixture-cookie"}]}
    async with running_gateway(make_deployment(tmp_path, pools)) as gw:
        status, code, message = await error_of(
            await gw.chat("grok-3", headers={"model-provider": "grok-web"})
        )
        assert (status, code) == (503, "provider_unsupported")
        assert "grok-web: no adapter installed for grok-web" in message
        assert "(type chosen by the Model-Provider header)" in message

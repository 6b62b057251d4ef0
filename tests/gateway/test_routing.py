"""Routing rules (pure): the effective type and its fallbacks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cfgstore.model.config import MainConfig
from cfgstore_gateway.routing import Target, default_providers, resolve, split_model

POOLS = ("openai-custom", "openai-custom-deepseek", "claude-custom", "my-own-type")


def route(model: str, static: dict[str, list[str]] | None = None, **kwargs: Any) -> list[Target]:
    config = MainConfig(kwargs.pop("config", {}))
    listed = static or {}

    def static_models(provider_type: str) -> Sequence[str]:
        return listed.get(provider_type, [])

    return list(
        resolve(
            header_type=kwargs.get("header"),
            path_type=kwargs.get("path"),
            model=model,
            config=config,
            pool_types=POOLS,
            static_models=static_models,
        ).targets
    )


def test_header_beats_path_beats_model_prefix_beats_default() -> None:
    config = {"MODEL_PROVIDER": "claude-custom"}
    assert route("openai-custom:m", header="x-type", path="claude-custom", config=config) == [
        Target("x-type", "m")
    ]
    assert route("openai-custom:m", path="claude-custom", config=config) == [
        Target("claude-custom", "m")
    ]
    assert route("openai-custom:m", config=config) == [Target("openai-custom", "m")]
    assert route("m", config=config) == [Target("claude-custom", "m")]
    assert route("m", header="auto", path="auto", config=config) == [Target("claude-custom", "m")]


def test_model_prefix_must_name_a_known_type() -> None:
    assert split_model("qwen3:8b", POOLS) == (None, "qwen3:8b")
    assert split_model("my-own-type:m", POOLS) == ("my-own-type", "m")
    assert split_model("openai-custom-new:m", POOLS) == ("openai-custom-new", "m")  # suffix
    assert split_model("openai-custom:", POOLS) == (None, "openai-custom:")


def test_model_provider_normalisation() -> None:
    def first(value: object) -> list[str]:
        return default_providers(MainConfig({"MODEL_PROVIDER": value}), POOLS)

    assert first(" Claude-Custom , openai-custom") == ["claude-custom", "openai-custom"]
    assert first(["nonsense", "openai-custom-zzz"]) == ["openai-custom-zzz"]
    assert first(["nonsense"]) == ["gemini-cli-oauth"]
    assert default_providers(MainConfig({}), POOLS) == ["gemini-cli-oauth"]


def test_fallback_chain_keeps_same_protocol_types_that_list_the_model() -> None:
    chain = {
        "openai-custom": [
            "claude-custom",  # other protocol
            "openai-custom-deepseek",  # static list without the model
            "openai-custom-x",
            "openai-custom-x",  # listed twice
            "openai-custom",  # itself
        ]
    }
    targets = route(
        "gpt-4o",
        static={"openai-custom-deepseek": ["deepseek-chat"]},
        header="openai-custom",
        config={"providerFallbackChain": chain},
    )
    assert targets == [Target("openai-custom", "gpt-4o"), Target("openai-custom-x", "gpt-4o")]


def test_model_fallback_mapping_comes_last_with_its_own_chain() -> None:
    config = {
        "providerFallbackChain": {"claude-custom": ["claude-custom-b"]},
        "modelFallbackMapping": {
            "gpt-4o": {"targetProviderType": "claude-custom", "targetModel": "sonnet"}
        },
    }
    assert route("gpt-4o", header="openai-custom", config=config) == [
        Target("openai-custom", "gpt-4o"),
        Target("claude-custom", "sonnet"),
        Target("claude-custom-b", "sonnet"),
    ]

"""``configs/api-potluck-keys.json`` through ``cfgctl migrate`` and ``cfgctl export``: the
keys become the store's api-potluck entity (served and counted from Redis), and an export
writes the file back byte for byte (the Node format, unknown fields, floats, history);
bytes the Node service would not have written stay a kept file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cfgstore.adapters import Settings, Store
from cfgstore.model import jsjson
from cfgstore.model import potluck as pl
from cfgstore.model.timefmt import iso_ms
from tests.cli.deployments import EXAMPLE, Namespace, cfgctl, copy_deployment, describe, tree_bytes

KEY_A = "maki_" + "a1" * 16
KEY_B = "maki_" + "b2" * 16

BUCKET = {
    "requestCount": 3,
    "promptTokens": 120,
    "completionTokens": 40,
    "totalTokens": 160,
    "cachedTokens": 8,
    "maxQps": 0.05,
    "maxRpm": 3,
    "maxTps": 2.6666666666666665,
}


def key(key_id: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": key_id,
        "name": name,
        "createdAt": "2026-03-01T12:00:00.000Z",
        "dailyLimit": 500,
        "todayUsage": 3,
        "totalUsage": 734,
        "todayPromptTokens": 120,
        "todayCompletionTokens": 40,
        "todayTotalTokens": 160,
        "todayCachedTokens": 8,
        "totalPromptTokens": 99_000,
        "totalCompletionTokens": 12_345,
        "totalTokens": 111_345,
        "totalCachedTokens": 77,
        "lastResetDate": "2026-03-15",
        "lastUsedAt": "2026-03-15T11:40:00.000Z",
        "enabled": True,
        "maxQps": 0.05,
        "maxRpm": 3,
        "maxTps": 2.6666666666666665,
        "usageHistory": {
            "2026-03-14": {"summary": 7},  # a legacy numeric bucket
            "2026-03-15": {
                "summary": BUCKET,
                "providers": {"openai-custom": BUCKET},
                "models": {"gpt-4o/mini": BUCKET, "tilde~model": BUCKET},
            },
        },
        **fields,
    }


POTLUCK = {
    "keys": {
        KEY_A: key(KEY_A, "示例用户", bonusRemaining=0, note=["kept", 1.5]),
        KEY_B: key(KEY_B, "off", enabled=False, regeneratedFrom="maki_0000000...", dailyLimit=0),
    }
}


def migrate(ns: Namespace, configs: Path) -> Any:
    return cfgctl("migrate", "--configs", configs, "--redis-url", ns.url)


def export(ns: Namespace, to: Path) -> Any:
    return cfgctl("export", "--to", to, "--redis-url", ns.url)


def redis_settings(ns: Namespace) -> Settings:
    return Settings(
        configs_dir=Path("unused"), backends=("redis",), redis_url=ns.url, redis_prefix=ns.prefix
    )


@pytest.mark.parametrize("trailing", [b"", b"\n"], ids=["node-bytes", "hand-edited"])
def test_keys_migrate_into_the_entity_and_export_byte_identical(
    tmp_path: Path, ns: Namespace, trailing: bytes
) -> None:
    deployment = copy_deployment(EXAMPLE, tmp_path)
    source = deployment / "configs" / "api-potluck-keys.json"
    source.write_bytes(jsjson.dump_bytes(POTLUCK) + trailing)
    migrated = migrate(ns, deployment / "configs")
    assert migrated.exit_code == 0, describe(migrated)

    async def served() -> tuple[list[pl.KeyDocument], pl.Admission]:
        async with Store.open(redis_settings(ns)) as store:
            keys = await store.potluck.list(pl.parse_day_ms("2026-03-15"))
            return keys, await store.potluck.admit(KEY_B, pl.parse_day_ms("2026-03-15"))

    keys, admission = asyncio.run(served())
    assert [k["id"] for k in keys] == [KEY_A, KEY_B]
    assert keys[0] == POTLUCK["keys"][KEY_A]
    assert admission == pl.Admission("disabled", 3, 0)

    out = tmp_path / "out"
    exported = export(ns, out)
    assert exported.exit_code == 0, describe(exported)
    assert tree_bytes(out)["configs/api-potluck-keys.json"] == source.read_bytes()
    verified = cfgctl("verify", "--configs", deployment / "configs", "--redis-url", ns.url)
    assert verified.exit_code == 0, describe(verified)


def test_counted_keys_export_in_the_node_format(tmp_path: Path, ns: Namespace) -> None:
    deployment = copy_deployment(EXAMPLE, tmp_path)
    source = deployment / "configs" / "api-potluck-keys.json"
    source.write_bytes(jsjson.dump_bytes(POTLUCK) + b"\n")
    assert migrate(ns, deployment / "configs").exit_code == 0
    day = pl.parse_day_ms("2026-03-15")

    async def count() -> None:
        async with Store.open(redis_settings(ns)) as store:
            assert (await store.potluck.admit(KEY_A, day)).used == 4
            use = pl.TokenUse(KEY_A, "openai-custom", "gpt-4o/mini", 10, 5, 1, "2026-03-15")
            await store.potluck.add_tokens([use])

    asyncio.run(count())
    exported = export(ns, tmp_path / "out")
    assert exported.exit_code == 0, describe(exported)
    written = tree_bytes(tmp_path / "out")["configs/api-potluck-keys.json"]
    expected: dict[str, Any] = jsjson.loads(jsjson.dump_bytes(POTLUCK), "expected")
    a = expected["keys"][KEY_A]
    a.update(todayUsage=4, totalUsage=735, lastUsedAt=iso_ms(day))
    for name, amount in pl.key_increments(
        pl.TokenUse(KEY_A, "", "", 10, 5, 1, "2026-03-15")
    ).items():
        a[name] += amount
    for bucket in (
        a["usageHistory"]["2026-03-15"]["summary"],
        a["usageHistory"]["2026-03-15"]["providers"]["openai-custom"],
        a["usageHistory"]["2026-03-15"]["models"]["gpt-4o/mini"],
    ):
        bucket.update(
            requestCount=4,
            promptTokens=130,
            completionTokens=45,
            totalTokens=175,
            cachedTokens=9,
        )
    assert written == jsjson.dump_bytes(expected)  # the Node writer's bytes, counts added

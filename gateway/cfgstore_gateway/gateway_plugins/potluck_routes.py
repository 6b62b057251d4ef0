"""The api-potluck plugin's HTTP routes, in the Node service's paths and shapes
(aiclient-protocols §5.2): the admin routes under ``/api/potluck`` (access ``admin``: the
gateway checks the session) and the key owner's ``GET /api/potluckuser/usage`` (access
``public``: the route checks the ``maki_`` key itself).

Answers are ``{"success": true, "data"?, "message"?}`` or ``{"success": false, "error":
{"message"}}`` (404 unknown key, 400 invalid body, 503 storage unavailable, 500 other
errors). Bodies are JSON of at most 1 MB.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from cfgstore.errors import CfgStoreError, NotFound, StorageUnavailable
from cfgstore.model import potluck as pl
from cfgstore_gateway.json_body import parse_client_json
from cfgstore_gateway.plugin_api import ConsoleTab, PluginRoute

if TYPE_CHECKING:
    from cfgstore.adapters.facades import Potluck
    from cfgstore_gateway.gateway_plugins.potluck import PotluckPlugin

MAX_BODY = 1024 * 1024
KEY_NOT_FOUND = "未找到 Key"
MAX_LIMIT = 2**53 - 1
"""Largest daily limit (the Node service's numbers are JavaScript's: exact up to here)."""
MAX_NAME = 256
"""Longest key name, in characters."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Failure(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def reply(status: int = 200, **fields: Any) -> web.Response:
    return web.json_response({"success": status < 400, **fields}, status=status)


def answering(handler: Handler) -> Handler:
    """Turn failures into the Node service's error shape."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Failure as exc:
            error: dict[str, str] = {"message": exc.message}
            if exc.code:
                error["code"] = exc.code
            return reply(exc.status, error=error)
        except NotFound:
            return reply(404, error={"message": KEY_NOT_FOUND})
        except StorageUnavailable as exc:
            return reply(503, error={"message": str(exc)})
        except CfgStoreError as exc:
            return reply(500, error={"message": str(exc) or "内部服务器错误"})

    return wrapped


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Failure(413, "请求体过大")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise Failure(413, "请求体过大")
    if not raw.strip():
        return {}
    try:
        body = parse_client_json(raw)
    except ValueError as exc:
        raise Failure(400, f"无效的 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Failure(400, "请求体必须是 JSON 对象")
    return body


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole(value: object, minimum: int, problem: str) -> int:
    """A limit from a body: a finite number from ``minimum`` to :data:`MAX_LIMIT` (a
    fraction is cut, as stored limits are compared to whole counts), else 400 with
    ``problem`` (JSON's ``NaN``, ``Infinity`` and ``1e400`` included: never a 500)."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not minimum <= value <= MAX_LIMIT
    ):
        raise Failure(400, problem)
    return int(value)


def key_name(value: object) -> str:
    """A key name from a body: at most :data:`MAX_NAME` characters, none a control or
    line/paragraph separator (a name is shown in logs and the console), else 400."""
    if (
        not isinstance(value, str)
        or len(value) > MAX_NAME
        or any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value)
    ):
        raise Failure(400, "无效的名称值")
    return value


def with_rates(plugin: PotluckPlugin, key: pl.KeyDocument, now: int) -> pl.KeyDocument:
    qps, rpm, tps = plugin.rates.of(str(key.get("id", "")), now)
    return {**key, "qps": qps, "tps": tps, "rpm": rpm}


def stats(plugin: PotluckPlugin, keys: list[pl.KeyDocument], now: int) -> dict[str, Any]:
    """The aggregate over every key (Node's ``getStats``); rates are this instance's."""
    sums = dict.fromkeys(
        (
            "todayUsage",
            "totalUsage",
            "todayPromptTokens",
            "todayCompletionTokens",
            "todayTotalTokens",
            "todayCachedTokens",
            "totalPromptTokens",
            "totalCompletionTokens",
            "totalTokens",
            "totalCachedTokens",
        ),
        0,
    )
    history: dict[str, dict[str, Any]] = {}
    enabled = 0
    rates = [0.0, 0.0, 0.0]
    peaks = [0.0, 0.0, 0.0]
    for key in keys:
        enabled += pl.is_enabled(key)
        for name in sums:
            sums[name] += pl.as_int(key.get(name))
        key_rates = plugin.rates.of(str(key.get("id", "")), now)
        key_peaks = plugin.rates.peaks.get(str(key.get("id", "")), (0.0, 0.0, 0.0))
        for i in range(3):
            rates[i] += key_rates[i]
            peaks[i] = max(peaks[i], key_peaks[i])
        days = key.get("usageHistory")
        if isinstance(days, dict):
            for day, buckets in days.items():
                if isinstance(buckets, dict):
                    _add_day(history.setdefault(day, _empty_day()), buckets)
    return {
        "totalKeys": len(keys),
        "enabledKeys": enabled,
        "disabledKeys": len(keys) - enabled,
        "todayTotalUsage": sums.pop("todayUsage"),
        **sums,
        "qps": round(rates[0], 2),
        "tps": round(rates[2], 2),
        "rpm": round(rates[1], 2),
        "maxQps": peaks[0],
        "maxTps": peaks[2],
        "maxRpm": peaks[1],
        "usageHistory": history,
    }


def _empty_day() -> dict[str, Any]:
    return {"summary": dict.fromkeys(pl.BUCKET_FIELDS, 0), "providers": {}, "models": {}}


def _add_bucket(into: dict[str, Any], bucket: object) -> None:
    if is_number(bucket):
        bucket = {"requestCount": bucket}
    if not isinstance(bucket, Mapping):
        return
    for name in pl.BUCKET_FIELDS:
        value = bucket.get(name, 0)
        if is_number(value):
            into[name] = max(into[name], value) if name.startswith("max") else into[name] + value


def _add_day(into: dict[str, Any], day: Mapping[str, Any]) -> None:
    _add_bucket(into["summary"], day.get("summary"))
    for section in ("providers", "models"):
        named = day.get(section)
        if isinstance(named, Mapping):
            for name, bucket in named.items():
                _add_bucket(
                    into[section].setdefault(name, dict.fromkeys(pl.BUCKET_FIELDS, 0)), bucket
                )


def routes(plugin: PotluckPlugin) -> list[PluginRoute]:
    def potluck() -> Potluck:
        return plugin.store.potluck  # set when the plugin starts

    def key_id(request: web.Request) -> str:
        return request.match_info["id"]

    async def must(found: pl.KeyDocument | None) -> pl.KeyDocument:
        if found is None:
            raise Failure(404, KEY_NOT_FOUND)
        return found

    @answering
    async def get_stats(request: web.Request) -> web.Response:
        now = plugin.clock()
        return reply(data=stats(plugin, await potluck().list(now), now))

    @answering
    async def reset_all_tokens(request: web.Request) -> web.Response:
        now = plugin.clock()
        updated = await potluck().reset_tokens(None)
        keys = await potluck().list(now)
        return reply(
            message=f"已重置 {updated}/{len(keys)} 个 Key 的 Token 统计",
            data=stats(plugin, keys, now),
        )

    @answering
    async def list_keys(request: web.Request) -> web.Response:
        now = plugin.clock()
        keys = await potluck().list(now)
        listed = [
            {**with_rates(plugin, k, now), "maskedKey": pl.masked(str(k.get("id", "")))}
            for k in keys
        ]
        return reply(data={"keys": listed, "stats": stats(plugin, keys, now)})

    @answering
    async def create_key(request: web.Request) -> web.Response:
        body = await read_json(request)
        name = body.get("name")
        limit = body.get("dailyLimit")
        created = await potluck().create(
            key_name(name) if isinstance(name, str) else "",
            None if limit is None else whole(limit, 0, "无效的每日限额值"),
            now=plugin.clock(),
        )
        return reply(201, message="API Key 创建成功", data=created)

    @answering
    async def apply_limit(request: web.Request) -> web.Response:
        limit = whole((await read_json(request)).get("dailyLimit"), 1, "dailyLimit 必须是一个正数")
        total, updated = await potluck().apply_limit(limit)
        return reply(
            message=f"已将每日限额 {limit} 应用到 {updated}/{total} 个 Key",
            data={"total": total, "updated": updated},
        )

    @answering
    async def get_key(request: web.Request) -> web.Response:
        now = plugin.clock()
        return reply(
            data=with_rates(plugin, await must(await potluck().get(key_id(request), now)), now)
        )

    @answering
    async def delete_key(request: web.Request) -> web.Response:
        if not await potluck().delete(key_id(request)):
            raise Failure(404, KEY_NOT_FOUND)
        return reply(message="Key 删除成功")

    @answering
    async def set_limit(request: web.Request) -> web.Response:
        limit = whole((await read_json(request)).get("dailyLimit"), 0, "无效的每日限额值")
        updated = await potluck().set_limit(key_id(request), limit)
        return reply(message="每日限额更新成功", data=updated)

    @answering
    async def reset_today(request: web.Request) -> web.Response:
        now = plugin.clock()
        if not await potluck().reset_today(key_id(request), now):
            raise Failure(404, KEY_NOT_FOUND)
        return reply(
            message="使用量重置成功", data=await must(await potluck().get(key_id(request), now))
        )

    @answering
    async def reset_tokens(request: web.Request) -> web.Response:
        if not await potluck().reset_tokens(key_id(request)):
            raise Failure(404, KEY_NOT_FOUND)
        found = await must(await potluck().get(key_id(request), plugin.clock()))
        return reply(message="Token 统计重置成功", data=found)

    @answering
    async def toggle(request: web.Request) -> web.Response:
        toggled = await potluck().toggle(key_id(request))
        word = "启用" if pl.is_enabled(toggled) else "禁用"
        return reply(message=f"Key 已成功{word}", data=toggled)

    @answering
    async def rename(request: web.Request) -> web.Response:
        name = key_name((await read_json(request)).get("name"))
        if not name:
            raise Failure(400, "无效的名称值")
        return reply(message="名称更新成功", data=await potluck().rename(key_id(request), name))

    @answering
    async def regenerate(request: web.Request) -> web.Response:
        old = key_id(request)
        moved = await potluck().regenerate(old, plugin.clock())
        return reply(
            message="Key 重新生成成功",
            data={"oldKey": old, "newKey": moved["id"], "keyData": moved},
        )

    @answering
    async def user_usage(request: web.Request) -> web.Response:
        offered = [
            v.removeprefix("Bearer ")
            for v in (
                request.headers.get("Authorization", ""),
                request.headers.get("x-api-key", ""),
            )
            if v
        ]
        key = next((k for k in offered if k.startswith(pl.KEY_PREFIX)), None)
        if key is None:
            raise Failure(
                401,
                "需要 API Key。请在 Authorization 标头 (Bearer maki_xxx) 或 x-api-key "
                "标头中提供您的 API Key。",
                "API_KEY_REQUIRED",
            )
        now = plugin.clock()
        found = await potluck().get(key, now)
        if found is None:
            raise Failure(401, "未找到 API Key", "not_found")
        if not pl.is_enabled(found):
            raise Failure(401, "API Key 已禁用", "disabled")
        return reply(data=usage_view(plugin, key, found, now))

    base = "/api/potluck"
    admin = [
        ("GET", f"{base}/stats", get_stats),
        ("POST", f"{base}/stats/reset-tokens", reset_all_tokens),
        ("GET", f"{base}/keys", list_keys),
        ("POST", f"{base}/keys", create_key),
        ("POST", f"{base}/keys/apply-limit", apply_limit),
        ("GET", f"{base}/keys/{{id}}", get_key),
        ("DELETE", f"{base}/keys/{{id}}", delete_key),
        ("PUT", f"{base}/keys/{{id}}/limit", set_limit),
        ("POST", f"{base}/keys/{{id}}/reset", reset_today),
        ("POST", f"{base}/keys/{{id}}/reset-tokens", reset_tokens),
        ("POST", f"{base}/keys/{{id}}/toggle", toggle),
        ("PUT", f"{base}/keys/{{id}}/name", rename),
        ("POST", f"{base}/keys/{{id}}/regenerate", regenerate),
    ]
    return [
        *(PluginRoute(method, path, handler, "admin") for method, path, handler in admin),
        PluginRoute("GET", "/api/potluckuser/usage", user_usage, "public"),
    ]


def usage_view(plugin: PotluckPlugin, key_id: str, key: pl.KeyDocument, now: int) -> dict[str, Any]:
    """What the key's owner sees (Node's ``/api/potluckuser/usage`` data)."""
    today, limit = pl.as_int(key.get("todayUsage")), pl.as_int(key.get("dailyLimit"))
    qps, rpm, tps = plugin.rates.of(key_id, now)

    def n(name: str) -> Any:
        return key.get(name) or 0

    return {
        "name": key.get("name"),
        "enabled": key.get("enabled"),
        "usage": {
            "today": today,
            "limit": limit,
            "remaining": max(0, limit - today),
            "percent": round(today / limit * 100) if limit > 0 else 0,
            "resetDate": key.get("lastResetDate"),
            "promptTokens": n("todayPromptTokens"),
            "completionTokens": n("todayCompletionTokens"),
            "totalTokens": n("todayTotalTokens"),
            "cachedTokens": n("todayCachedTokens"),
            "qps": qps,
            "tps": tps,
            "rpm": rpm,
            "maxQps": n("maxQps"),
            "maxTps": n("maxTps"),
            "maxRpm": n("maxRpm"),
        },
        "total": key.get("totalUsage"),
        "tokens": {
            "prompt": n("totalPromptTokens"),
            "completion": n("totalCompletionTokens"),
            "total": n("totalTokens"),
            "cached": n("totalCachedTokens"),
        },
        "lastUsedAt": key.get("lastUsedAt"),
        "createdAt": key.get("createdAt"),
        "usageHistory": key.get("usageHistory") or {},
        "maskedKey": pl.masked(key_id),
    }


def console_tab() -> ConsoleTab:
    return ConsoleTab("API Potluck", (Path(__file__).parent / "potluck_tab.js").read_bytes())

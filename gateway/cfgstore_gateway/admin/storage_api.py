"""``GET /api/storage/status``: what the storage is doing, for the UI's banner and for
operators (mode, instances, journal depth, Redis version and memory policy).

Built from the backends' own status reports (``store.status()``), which never carry a
secret (Redis locations have no password), and ``configProblems``: the stored config's
keys this instance ignores because their values are unusable (key → what is wrong; their
defaults are used). Answers while degraded: that is when it matters most. With an
``ETag``: a poll naming it in ``If-None-Match`` is a ``304`` while nothing changed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from cfgstore.errors import CfgStoreError
from cfgstore.model.status import BackendStatus
from cfgstore_gateway.admin.conditional import json_with_etag
from cfgstore_gateway.services import SERVICES

STATUS_TIMEOUT_S = 5.0
DEGRADED_MODES = frozenset({"degraded", "data-lost"})


async def storage_status(request: web.Request) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    store = services.store
    async with asyncio.timeout(STATUS_TIMEOUT_S):
        statuses = await store.status()
    config_problems: dict[str, str] = {}
    with contextlib.suppress(CfgStoreError, TimeoutError):
        async with asyncio.timeout(STATUS_TIMEOUT_S):
            config_problems = (await services.config.get()).problems
    instances: list[dict[str, Any]] = []
    with contextlib.suppress(CfgStoreError, NotImplementedError, TimeoutError):
        async with asyncio.timeout(STATUS_TIMEOUT_S):
            instances = [i.to_json() for i in await store.replicas.instances()]
    mode = statuses[0].mode if statuses else "unknown"
    details = _details(statuses)
    redis = None
    if "redis version" in details or "maxmemory-policy" in details:
        redis = {
            "version": details.get("redis version"),
            "maxmemoryPolicy": details.get("maxmemory-policy"),
        }
    depth = details.get("journal depth")
    return json_with_etag(
        request,
        {
            "mode": mode,
            "degraded": mode in DEGRADED_MODES,
            # The id /health states too: the one this instance's heartbeat announces
            # (persistent in its state directory) when it has one, found in "instances".
            "instance": store.instance_id,
            "layers": [_layer(s) for s in statuses],
            "instances": instances,
            "journalDepth": int(depth) if depth and depth.isdigit() else 0,
            # When this instance lost the storage (ISO time), while degraded; else null.
            "degradedSince": details.get("degraded since"),
            "redis": redis,
            "configProblems": config_problems,
        },
    )


def _details(statuses: list[BackendStatus]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for status in statuses:
        for key, value in status.details.items():
            merged.setdefault(key, value)
    return merged


def _layer(status: BackendStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "location": status.location,
        "mode": status.mode,
        "warnings": list(status.warnings),
        "details": dict(status.details),
    }

"""``GET /api/cfgstore/traffic``: the console's charts data (issue 15, point 8), on files.

Chat requests through the gateway (two failing upstream) are counted per provider type;
the hour range answers 60 one-minute points ending now, the day range 96 quarter hours,
both with the same totals; the counts are in the configs folder's
``.cfgstore-traffic.json``; ``store.traffic.last_hour()`` (what a summary shows) agrees; an
unknown range is a 400 naming the field, and the route needs a session like every admin
route.
"""

from __future__ import annotations

from pathlib import Path

from tests.admin.conftest import Admin, admin_gateway, file_deployment
from tests.gateway.conftest import TYPE, auth
from tests.gateway.upstream_stub import Received, Reply, UpstreamStub, default_responder, error

FAILING_MODEL = "always-fails"


def responder(received: Received) -> Reply:
    body = received.body if isinstance(received.body, dict) else {}
    if body.get("model") == FAILING_MODEL:
        return error(400, "refused by the stub")
    return default_responder(received)


async def chat(admin: Admin, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with admin.client.post("/v1/chat/completions", json=body, headers=auth()) as response:
        await response.read()
        return response.status


async def test_requests_show_in_the_hour_and_the_day(tmp_path: Path) -> None:
    async with (
        UpstreamStub(responder) as upstream,
        admin_gateway(file_deployment(tmp_path, upstream.base_url)) as anonymous,
    ):
        admin = await anonymous.login()
        statuses = [await chat(admin, "gpt-4o") for _ in range(4)]
        statuses += [await chat(admin, FAILING_MODEL) for _ in range(2)]
        assert statuses == [200] * 4 + [400] * 2

        status, hour = await admin.call("GET", "/api/cfgstore/traffic")
        assert status == 200, hour
        assert (hour["range"], hour["points"], hour["stepMs"], hour["available"]) == (
            "hour",
            60,
            60_000,
            True,
        )
        series = hour["types"][TYPE]
        assert series["totals"]["requests"] == 6 and series["totals"]["errors"] == 2
        assert series["totals"]["p95Ms"] is not None
        assert len(series["requests"]) == 60 and sum(series["requests"]) == 6
        assert sum(series["errors"]) == 2
        assert sum(series["requests"][-2:]) == 6  # this minute (or the one before it)
        assert all(
            m is None for m, n in zip(series["meanMs"], series["requests"], strict=True) if not n
        )

        status, day = await admin.call("GET", "/api/cfgstore/traffic?range=day")
        assert status == 200 and (day["points"], day["stepMs"]) == (96, 900_000)
        assert day["types"][TYPE]["totals"] == series["totals"]

        totals = await admin.store.traffic.last_hour()
        assert (totals[TYPE].requests, totals[TYPE].errors) == (6, 2)
        assert (tmp_path / "configs" / ".cfgstore-traffic.json").is_file()

        status, body = await admin.call("GET", "/api/cfgstore/traffic?range=week")
        assert status == 400 and body["error"]["fields"] == {"range": "must be hour or day"}


async def test_the_route_needs_a_session(anonymous: Admin) -> None:
    status, body = await anonymous.call("GET", "/api/cfgstore/traffic")
    assert status == 401, body


async def test_admin_calls_are_not_counted(admin: Admin) -> None:
    for _ in range(3):
        status, _ = await admin.call("GET", "/api/providers")
        assert status == 200
    status, body = await admin.call("GET", "/api/cfgstore/traffic")
    assert status == 200 and body["types"] == {}

"""The traffic charts of the Providers view, fed by two gateway instances on one Redis
(issue 15, point 8).

:func:`test_charts_render_with_data_from_two_instances`: a second gateway (its own store,
memory fallback over the same namespace) serves beside the fixture's; chat requests go
through both, some failing upstream (400). The console of the first shows, for the
provider type, the requests and errors of both instances summed (the totals and one bar
per minute with traffic), for the last hour and for the last day; the admin API says the
same. Screenshots: ``desktop-traffic-hour.png``, ``desktop-traffic-day.png``,
``phone-traffic.png``.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import attrs
from playwright.async_api import Browser, expect

from cfgstore.adapters import Store
from cfgstore.testing.builders import make_node
from cfgstore_gateway.app import create_app
from tests.browser.conftest import (
    CLIENT_KEY,
    DESKTOP,
    PHONE,
    TYPE,
    UI_WAIT_MS,
    UiGateway,
    log_in,
    new_page,
)
from tests.gateway.conftest import serving
from tests.gateway.upstream_stub import Received, Reply, default_responder, error
from tests.support.waiting import until

FAILING_MODEL = "always-fails"
PLAN = {"first": (5, 1), "second": (4, 2)}
"""Requests per instance: (succeeding, failing)."""


def failing_on_request(received: Received) -> Reply:
    body = received.body if isinstance(received.body, dict) else {}
    if body.get("model") == FAILING_MODEL:
        return error(400, "the stub refuses this model")
    return default_responder(received)


async def chat(client: aiohttp.ClientSession, url: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with client.post(
        f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    ) as response:
        await response.read()
        return response.status


async def traffic_through_both(gateway: UiGateway, second_url: str) -> None:
    for url, (ok, failing) in zip((gateway.url, second_url), PLAN.values(), strict=True):
        for _ in range(ok):
            assert await chat(gateway.client, url, "gpt-4o") == 200
        for _ in range(failing):
            assert await chat(gateway.client, url, FAILING_MODEL) == 400


async def test_charts_render_with_data_from_two_instances(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path, tmp_path: Path
) -> None:
    gateway = ui_gateway
    gateway.upstream.responder = failing_on_request
    node = make_node(
        customName="charts",
        OPENAI_API_KEY="sk-charts-upstream-key-0123456789",
        OPENAI_BASE_URL=gateway.upstream.base_url,
    )
    await gateway.store.pools.add_node(TYPE, node)
    second_settings = attrs.evolve(gateway.store.settings, state_dir=tmp_path / "second")
    requests = sum(ok + failing for ok, failing in PLAN.values())
    errors = sum(failing for _, failing in PLAN.values())
    async with Store.open(second_settings) as second, serving(create_app(second)) as second_url:
        await traffic_through_both(gateway, second_url)
        token = await gateway.api_token()

        async def both_counted() -> bool:
            body = await gateway.api_get("/api/cfgstore/traffic?range=hour", token)
            totals = body["types"].get(TYPE, {}).get("totals", {})
            return totals.get("requests") == requests  # the second hands over within ~1 s

        await until(both_counted, "both instances' counts", within_s=UI_WAIT_MS / 1000, step_s=0.2)
        hour = await gateway.api_get("/api/cfgstore/traffic?range=hour", token)
        assert hour["types"][TYPE]["totals"]["errors"] == errors
        assert (hour["points"], hour["stepMs"]) == (60, 60_000)

        errors_seen: list[str] = []
        page = await new_page(browser, DESKTOP, errors_seen)
        await log_in(page, gateway)
        charts = page.get_by_test_id("traffic-charts")
        row = charts.locator(f'[data-testid="traffic-type"][data-type="{TYPE}"]')
        await expect(row.get_by_test_id("traffic-total-requests")).to_have_text(
            str(requests), timeout=UI_WAIT_MS
        )
        await expect(row.get_by_test_id("traffic-total-errors")).to_have_text(str(errors))
        bars = row.get_by_test_id("traffic-chart-requests").locator('[data-testid="traffic-bar"]')
        assert 1 <= await bars.count() <= 2  # the requests' minute (two at a minute's turn)
        assert await row.locator("rect.bar-errors").count() >= 1
        assert await row.get_by_test_id("traffic-chart-latency").locator("circle").count() >= 1
        await page.screenshot(path=artifacts / "desktop-traffic-hour.png", full_page=True)

        await page.get_by_test_id("traffic-range-day").click()
        await expect(charts).to_have_attribute("data-loaded", "day", timeout=UI_WAIT_MS)
        await expect(row.get_by_test_id("traffic-total-requests")).to_have_text(str(requests))
        await page.screenshot(path=artifacts / "desktop-traffic-day.png", full_page=True)
        assert errors_seen == []

        phone = await new_page(browser, PHONE, errors_seen)
        await log_in(phone, gateway)
        phone_row = phone.get_by_test_id("traffic-charts").locator('[data-testid="traffic-type"]')
        await expect(phone_row.get_by_test_id("traffic-total-requests")).to_have_text(
            str(requests), timeout=UI_WAIT_MS
        )
        overflow = await phone.evaluate(
            "document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
        assert not overflow, "the charts widen the page past a phone's screen"
        await phone.screenshot(path=artifacts / "phone-traffic.png", full_page=True)
        assert errors_seen == []

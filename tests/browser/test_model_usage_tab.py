"""The ``model-usage-stats`` console tab in headless Chromium: enabled, its module loads
(same origin, under the CSP), draws a table per provider type from the store's statistics,
and its "Reset tokens" button zeroes the tokens while keeping the counts."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import DESKTOP, UI_WAIT_MS, UiGateway, log_in, new_page


async def test_the_tab_shows_the_statistics_and_resets_the_tokens(
    browser: Browser, ui_gateway: UiGateway
) -> None:
    stats = ui_gateway.store.usage_stats
    for _ in range(3):
        stats.record("claude-kiro-oauth", "claude-tab-model", prompt_tokens=40, completion_tokens=2)
    await ui_gateway.store.flush()
    await ui_gateway.store.plugin_config.set_enabled("model-usage-stats", True)

    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await log_in(page, ui_gateway)
    await page.get_by_test_id("nav-plugins").click()
    tab = page.get_by_test_id("plugin-tab").filter(has_text="Model usage")
    await expect(tab).to_be_visible(timeout=UI_WAIT_MS)
    await tab.click()
    body = page.locator('[data-name="model-usage-stats"] [data-testid="plugin-tab-body"]')
    await expect(body).to_contain_text("Requests 3 · tokens 126", timeout=UI_WAIT_MS)
    table = body.locator('[data-testid="model-usage-type"]')
    await expect(table).to_contain_text("claude-kiro-oauth")
    await expect(table.locator("tbody tr").first).to_contain_text("claude-tab-model")

    await body.get_by_role("button", name="Reset tokens").click()
    await expect(body).to_contain_text("Requests 3 · tokens 0", timeout=UI_WAIT_MS)
    doc = await stats.read(live=False)
    assert (doc["summary"]["requestCount"], doc["summary"]["totalTokens"]) == (3, 0)
    assert errors == []

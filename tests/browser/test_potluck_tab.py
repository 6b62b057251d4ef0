"""The api-potluck console tab in headless Chromium: enabled, it lists every key with
today's usage against its limit, read through the console's authenticated API."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser.conftest import DESKTOP, UI_WAIT_MS, UiGateway, log_in, new_page


async def test_the_tab_lists_the_keys(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    store = ui_gateway.store
    key = await store.potluck.create("team-key", 7)
    assert (await store.potluck.admit(key["id"])).admitted
    await store.plugin_config.set_enabled("api-potluck", True)
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await log_in(page, ui_gateway)
    await page.get_by_test_id("nav-plugins").click()
    tab = page.get_by_test_id("plugin-tab").filter(has_text="API Potluck")
    await expect(tab).to_be_visible(timeout=UI_WAIT_MS)
    await tab.click()
    body = page.locator('[data-name="api-potluck"]').get_by_test_id("plugin-tab-body")
    await expect(body).to_contain_text("1 keys (1 enabled), 1 requests today", timeout=UI_WAIT_MS)
    row = body.locator("tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator("td").nth(0)).to_have_text("team-key")
    await expect(row.locator("td").nth(1)).to_have_text(f"{key['id'][:12]}...{key['id'][-4:]}")
    await expect(row.locator("td").nth(3)).to_have_text("1")
    await expect(row.locator("td").nth(4)).to_have_text("7")
    await page.screenshot(path=artifacts / "desktop-potluck-tab.png")
    assert errors == []

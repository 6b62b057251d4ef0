"""The console's operator notes in headless Chromium (issue 15.3 and 15.5), against a real
gateway over a real Redis that is stopped and restarted.

* Pool types this gateway does not serve carry "no adapter installed": ``grok-web`` (no
  adapter at all); served types do not (``claude-kiro-oauth``, which has an adapter of its
  own, and an OpenAI-compatible one).
* With Redis stopped, the degraded banner says since when, the journal depth and what to
  do; signing in then gives a session marked read-only (a pill and a note), whose changes
  are refused with the reason; once Redis is back that session ends and the page says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from cfgstore.model.pools import node_from_json
from tests.browser.conftest import (
    ADMIN_PASSWORD,
    DEGRADE_WAIT_MS,
    DESKTOP,
    RECOVER_WAIT_MS,
    TYPE,
    UI_WAIT_MS,
    UiGateway,
    log_in,
    new_page,
)

KIRO = "claude-kiro-oauth"
GROK = "grok-web"
KIRO_NODE = "6b6b0000-0000-4000-8000-00000000000a"
GROK_NODE = "6b6b0000-0000-4000-8000-00000000000b"
SERVED_NODE = "6b6b0000-0000-4000-8000-00000000000c"


async def add_nodes(gateway: UiGateway) -> None:
    pools = gateway.store.pools
    kiro = {"uuid": KIRO_NODE, "KIRO_OAUTH_CREDS_FILE_PATH": "./configs/kiro/a.json"}
    await pools.add_node(KIRO, node_from_json(kiro, "test"))
    grok = {"uuid": GROK_NODE, "GROK_COOKIE_TOKEN": "fixture-cookie"}
    await pools.add_node(GROK, node_from_json(grok, "test"))
    served = {
        "uuid": SERVED_NODE,
        "OPENAI_API_KEY": "sk-served-0123456789",
        "OPENAI_BASE_URL": gateway.upstream.base_url,
    }
    await pools.add_node(TYPE, node_from_json(served, "test"))


def pool(page: Page, provider_type: str) -> object:
    return page.locator(f'[data-testid="pool"][data-type="{provider_type}"]')


async def test_no_adapter_types_and_the_degraded_read_only_console(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    await add_nodes(ui_gateway)
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await log_in(page, ui_gateway)
    for unserved in (GROK,):
        badge = page.locator(f'[data-testid="pool"][data-type="{unserved}"]').get_by_test_id(
            "no-adapter"
        )
        await expect(badge).to_have_text("no adapter installed", timeout=UI_WAIT_MS)
    for served_type in (KIRO, TYPE):
        served = page.locator(f'[data-testid="pool"][data-type="{served_type}"]')
        await expect(served).to_be_visible()
        await expect(served.get_by_test_id("no-adapter")).to_have_count(0)
    await expect(page.get_by_test_id("read-only-pill")).to_be_hidden()
    await page.screenshot(path=artifacts / "desktop-no-adapter.png", full_page=True)

    await ui_gateway.redis.astop()
    banner = page.get_by_test_id("degraded-banner")
    await expect(banner).to_be_visible(timeout=DEGRADE_WAIT_MS)
    details = page.get_by_test_id("degraded-details")
    await expect(details).to_contain_text("Since ", timeout=UI_WAIT_MS)
    await expect(details).to_contain_text(re.compile(r"Journal: \d+ entr"))
    await expect(details).to_contain_text("What to do: bring Redis back")

    # A sign-in during the outage, in a fresh browser context.
    outage_page = await new_page(browser, DESKTOP, errors)
    await outage_page.goto(ui_gateway.url + "/")
    await outage_page.get_by_test_id("login-password").fill(ADMIN_PASSWORD)
    await outage_page.get_by_test_id("login-submit").click()
    await expect(outage_page.get_by_test_id("view-providers")).to_be_visible(timeout=UI_WAIT_MS)
    await expect(outage_page.get_by_test_id("read-only-pill")).to_be_visible(timeout=UI_WAIT_MS)
    await expect(outage_page.get_by_test_id("read-only-note")).to_contain_text("read-only")
    await expect(outage_page.get_by_test_id("degraded-details")).to_contain_text("Journal:")
    row = outage_page.locator(f'[data-testid="provider-row"][data-uuid="{SERVED_NODE}"]')
    await row.get_by_test_id("provider-toggle-disabled").click()
    await expect(outage_page.get_by_test_id("notice")).to_have_attribute(
        "data-kind", "error", timeout=UI_WAIT_MS
    )
    await expect(outage_page.get_by_test_id("notice-text")).to_contain_text("read-only session")
    await outage_page.screenshot(path=artifacts / "desktop-read-only.png", full_page=True)
    await expect(row.get_by_test_id("health-badge")).to_have_text("healthy")

    await ui_gateway.redis.arestart()
    await expect(outage_page.get_by_test_id("login-form")).to_be_visible(timeout=RECOVER_WAIT_MS)
    await expect(outage_page.get_by_test_id("login-error")).to_contain_text("The storage is back")
    await expect(outage_page.get_by_test_id("read-only-pill")).to_be_hidden()
    assert errors == []

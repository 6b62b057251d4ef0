"""The console at scale (issue 15 point 6, issue 16) in headless Chromium against a real
gateway over a real Redis.

* :func:`test_a_5000_node_deployment`: 5,000 nodes in four types. The summary counts them
  all; a search finds one node by its uuid and by its name; the health filter shows only
  the unhealthy nodes with their count; paging walks through all of them; a column sorts;
  a poll cycle while nothing changes (one exchange for the summary and the four pages
  shown, ``204``; the storage mode, ``304``) moves under 1 KB. Desktop
  screenshots of the summary and of a filtered page.
* :func:`test_every_node_action_is_reachable_on_a_phone`: at 390x844 the page does not
  scroll sideways, each node is a card whose five actions lie inside the screen, and a
  tap on one (Disable) works. Phone screenshot.
* :func:`test_the_storage_tab_reads_well_at_1440_px`: readable column labels (no
  ``snake_case``), nothing wider than the page; the instance named on the tab is the one
  ``/health`` names.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Locator, Page, Request, expect

from bench.pools_data import node_uuid, realistic_pools
from cfgstore.model.pools import pools_from_json
from tests.browser.conftest import DESKTOP, PHONE, UI_WAIT_MS, UiGateway, log_in, new_page

SIZES = {
    "claude-kiro-oauth": 1500,
    "gemini-cli-oauth": 1250,
    "openai-custom": 1250,
    "claude-custom": 1000,
}
TOTAL = sum(SIZES.values())
TYPE = "openai-custom"
UNHEALTHY_EVERY = 20  # every 20th node of each type
DISABLED_EVERY = 125  # every 125th, counted from the 7th
POLL_BUDGET_BYTES = 1024
WIDE = {"width": 1440, "height": 900}


def is_unhealthy(index: int) -> bool:
    return index % UNHEALTHY_EVERY == 0


def is_disabled(index: int) -> bool:
    return index % DISABLED_EVERY == 7


async def deploy(gateway: UiGateway, sizes: dict[str, int]) -> None:
    """Replace the pools with ``sizes`` realistic nodes, some unhealthy, some disabled."""
    doc = realistic_pools(sizes)
    for nodes in doc.values():
        assert isinstance(nodes, list)
        for index, node in enumerate(nodes):
            assert isinstance(node, dict)
            node["isHealthy"] = not is_unhealthy(index)
            node["isDisabled"] = is_disabled(index)
    await gateway.store.pools.import_all(pools_from_json(doc, "test"), keep_live_state=True)


def section(page: Page, provider_type: str) -> Locator:
    return page.locator(f'[data-testid="pool"][data-type="{provider_type}"]')


class Transfers:
    """Bytes each console poll answer moved (headers and body, as the network saw them)."""

    def __init__(self, page: Page) -> None:
        self.answers: list[tuple[str, int, int]] = []
        self.polls = 0
        self.wanted = 0
        self.enough = asyncio.Event()
        page.on("requestfinished", self._finished)

    async def _finished(self, request: Request) -> None:
        if "/api/cfgstore/" not in request.url and "/api/storage/" not in request.url:
            return
        response = await request.response()
        sizes = await request.sizes()
        size = sizes["responseHeadersSize"] + sizes["responseBodySize"]
        self.answers.append((request.url, response.status if response else 0, size))
        if "/api/cfgstore/pools/poll" in request.url:
            self.polls += 1
            if self.polls >= self.wanted:
                self.enough.set()

    async def cycles(self, count: int) -> list[list[tuple[str, int, int]]]:
        """The answers of the next ``count`` whole poll cycles (from a poll to the next)."""
        start = len(self.answers)
        self.wanted = self.polls + count + 1
        self.enough.clear()
        try:
            await asyncio.wait_for(self.enough.wait(), UI_WAIT_MS * (count + 1) / 1000)
        except TimeoutError:
            raise AssertionError(f"poll answers seen: {self.answers[-12:]}") from None
        answers = self.answers[start:]
        marks = [i for i, a in enumerate(answers) if "/pools/poll" in a[0]]
        return [answers[a:b] for a, b in itertools.pairwise(marks)]


async def test_a_5000_node_deployment(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    await deploy(ui_gateway, SIZES)
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    transfers = Transfers(page)
    await log_in(page, ui_gateway)

    totals = page.get_by_test_id("summary-totals")
    await expect(totals).to_contain_text(f"{TOTAL:,}", timeout=UI_WAIT_MS)
    await expect(page.get_by_test_id("summary-row")).to_have_count(len(SIZES))
    mine = page.locator(f'[data-testid="summary-row"][data-type="{TYPE}"]')
    unhealthy = sum(1 for i in range(SIZES[TYPE]) if is_unhealthy(i) and not is_disabled(i))
    disabled = sum(1 for i in range(SIZES[TYPE]) if is_disabled(i))
    await expect(mine.get_by_test_id("summary-nodes")).to_have_text(f"{SIZES[TYPE]:,}")
    await expect(mine.get_by_test_id("summary-unhealthy")).to_have_text(str(unhealthy))
    await expect(mine.get_by_test_id("summary-disabled")).to_have_text(str(disabled))
    pool = section(page, TYPE)
    await expect(pool.get_by_test_id("provider-row")).to_have_count(25, timeout=UI_WAIT_MS)
    await page.screenshot(path=artifacts / "big-pools-summary.png")

    # An unchanged poll: one exchange for the summary and the four pages (204, no body)
    # and the storage mode (304), under 1 KB together; the full storage status (which
    # reads every node from Redis) is not polled outside its tab.
    cycles = await transfers.cycles(3)
    quiet = [answer for cycle in cycles[-2:] for answer in cycle]
    largest: dict[str, tuple[int, int]] = {}  # per path: its status, its largest size
    for url, status, size in quiet:
        path = url.split("?")[0].removeprefix(ui_gateway.url)
        largest[path] = (status, max(size, largest.get(path, (0, 0))[1]))
    assert largest.keys() == {"/api/cfgstore/pools/poll", "/api/cfgstore/storage/mode"}, quiet
    assert largest["/api/cfgstore/pools/poll"][0] == 204, quiet
    assert largest["/api/cfgstore/storage/mode"][0] == 304, quiet
    moved = sum(size for _, size in largest.values())
    assert moved < POLL_BUDGET_BYTES, f"an unchanged poll moved {moved} bytes: {largest}"

    # Search: one node by its uuid, then by its name.
    search = pool.get_by_test_id("pool-search")
    wanted = node_uuid(TYPE, 1234)
    await search.fill(wanted)
    rows = pool.get_by_test_id("provider-row")
    await expect(rows).to_have_count(1, timeout=UI_WAIT_MS)
    await expect(rows).to_have_attribute("data-uuid", wanted)
    await search.fill("#1234")
    await expect(rows.get_by_test_id("provider-name")).to_have_text(
        f"{TYPE} #1234", timeout=UI_WAIT_MS
    )
    await expect(pool.get_by_test_id("pool-page-info")).to_have_text("Page 1 of 1 · 1 matching")
    await search.fill("no node is called like this")
    await expect(pool.get_by_test_id("pool-no-match")).to_be_visible(timeout=UI_WAIT_MS)
    await expect(rows).to_have_count(0)
    await search.fill("")

    # The health filter: only unhealthy nodes, their count; paging walks through them all.
    await pool.get_by_test_id("pool-health").select_option("unhealthy")
    info = pool.get_by_test_id("pool-page-info")
    pages = -(-unhealthy // 25)
    await expect(info).to_have_text(f"Page 1 of {pages} · {unhealthy} matching", timeout=UI_WAIT_MS)
    await expect(rows).to_have_count(min(25, unhealthy))
    assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.health)")) == {"unhealthy"}
    first_page = await rows.evaluate_all("rs => rs.map(r => r.dataset.uuid)")
    await page.screenshot(path=artifacts / "big-pools-unhealthy.png", full_page=False)
    seen = list(first_page)
    for number in range(2, pages + 1):
        await pool.get_by_test_id("pool-next").click()
        await expect(info).to_have_text(
            f"Page {number} of {pages} · {unhealthy} matching", timeout=UI_WAIT_MS
        )
        await expect(rows).to_have_count(min(25, unhealthy - 25 * (number - 1)))
        seen += await rows.evaluate_all("rs => rs.map(r => r.dataset.uuid)")
    await expect(pool.get_by_test_id("pool-next")).to_be_disabled()
    assert sorted(seen) == sorted(
        node_uuid(TYPE, i) for i in range(SIZES[TYPE]) if is_unhealthy(i) and not is_disabled(i)
    )

    # Sort by name, descending (a second click on the header), over every node.
    await pool.get_by_test_id("pool-health").select_option("all")
    await pool.get_by_test_id("sort-name").click()
    await pool.get_by_test_id("sort-name").click()
    await expect(rows.first.get_by_test_id("provider-name")).to_have_text(
        f"{TYPE} #999", timeout=UI_WAIT_MS
    )  # "#999" > "#1249" as text
    await expect(pool.locator('th[aria-sort="descending"]')).to_have_text("Node")
    assert errors == []


async def test_every_node_action_is_reachable_on_a_phone(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    await deploy(ui_gateway, {TYPE: 30, "claude-custom": 5})
    errors: list[str] = []
    page = await new_page(browser, PHONE, errors)
    await log_in(page, ui_gateway)
    pool = section(page, TYPE)
    rows = pool.get_by_test_id("provider-row")
    await expect(rows).to_have_count(25, timeout=UI_WAIT_MS)

    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    width = PHONE["width"]
    for index in (0, 24):
        card = rows.nth(index)
        await card.scroll_into_view_if_needed()
        buttons = card.get_by_test_id("node-actions").get_by_role("button")
        await expect(buttons).to_have_count(5)
        for i in range(5):
            box = await buttons.nth(i).bounding_box()
            assert box is not None, "an action is not laid out"
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (index, i, box)
            await expect(buttons.nth(i)).to_be_visible()
    # A tap works: disable a healthy node, enable it again.
    first = rows.nth(1)
    await first.get_by_test_id("provider-toggle-disabled").click()
    await expect(first.get_by_test_id("health-badge")).to_have_text("disabled", timeout=UI_WAIT_MS)
    await first.get_by_test_id("provider-toggle-disabled").click()
    await expect(first.get_by_test_id("health-badge")).to_have_text("healthy", timeout=UI_WAIT_MS)
    # The phone's sort control (headers are hidden on cards) and the pager.
    await pool.get_by_test_id("pool-sort").select_option("name:desc")
    await expect(rows.first.get_by_test_id("provider-name")).to_have_text(
        f"{TYPE} #9",
        timeout=UI_WAIT_MS,  # "#9" > "#29" as text
    )
    await pool.get_by_test_id("pool-next").click()
    await expect(rows).to_have_count(5, timeout=UI_WAIT_MS)
    await page.screenshot(path=artifacts / "phone-big-pools.png", full_page=True)
    await rows.first.scroll_into_view_if_needed()
    await page.screenshot(path=artifacts / "phone-big-pools-cards.png")
    assert errors == []


async def test_the_storage_tab_reads_well_at_1440_px(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    errors: list[str] = []
    page = await new_page(browser, WIDE, errors)
    await log_in(page, ui_gateway)
    await page.get_by_test_id("nav-storage").click()
    table = page.get_by_test_id("storage-instances")
    await expect(table.locator("tbody tr td").first).not_to_have_text(
        "No instance reported.", timeout=UI_WAIT_MS
    )
    headers: list[str] = await table.locator("th").all_inner_texts()
    assert headers and all("_" not in h for h in headers), headers
    assert "INSTANCE" in [h.upper() for h in headers]
    overflow: dict[str, Any] = await page.evaluate(
        """() => { const w = document.querySelector('[data-testid="storage-instances"]')
                     .closest('.table-wrap');
                   return {page: document.documentElement.scrollWidth
                                 - document.documentElement.clientWidth,
                           table: w.scrollWidth - w.clientWidth}; }"""
    )
    assert overflow == {"page": 0, "table": 0}, overflow
    async with ui_gateway.client.get(f"{ui_gateway.url}/health") as response:
        instance = (await response.json())["instance"]
    await expect(page.get_by_test_id("storage-facts")).to_contain_text(instance)
    await expect(table).to_contain_text(instance)
    await page.screenshot(path=artifacts / "desktop-storage-1440.png", full_page=True)
    assert errors == []

"""The web UI in headless Chromium against a real gateway over a real Redis (issue 8, §3).

* :func:`test_log_in_add_a_provider_and_watch_its_usage_rise`: a wrong password is
  refused on the form; log in; add an ``openai-custom`` node pointing at the upstream stub;
  chat requests through the gateway raise its usage count in the table (polled, no reload);
  the edit form shows the key masked and saving it keeps the real key; disable/enable flip
  the badge; delete (confirmed) removes the node and its type; log out. Desktop screenshots.
* :func:`test_a_plugin_toggle_is_persisted`: the switch flips the plugin; the API and the
  Redis namespace both say so, and a reload of the page shows it, with its console tab.
* :func:`test_the_degraded_banner_follows_redis`: stopping Redis raises the banner within
  the bound and a mutation is refused with the storage message; restarting it clears the
  banner. Screenshot of the banner.
* :func:`test_custom_models_add_edit_delete`: the Models tab adds a model (it shows in
  the table and in ``GET /v1/models``), refuses a taken id and an id change (400) on
  the form, edits it (a merge the store keeps), deletes it (confirmed). Desktop screenshot.
* :func:`test_node_check_new_uuid_and_unhealthy_actions`: a node's Check asks its upstream
  stub and says healthy; New uuid (confirmed) renames it in the table and the store; the
  type's Check unhealthy counts what it checked; Delete unhealthy (confirmed) removes the
  node marked unhealthy and keeps the healthy one.
* :func:`test_phone_layout_and_session_end`: a 390x844 viewport: no horizontal overflow of
  the page (the nodes are cards), screenshots; a session ended elsewhere (logout
  through the API) sends the page back to the login form; no token ever in the URL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.async_api import Browser, FilePayload, Locator, Page, expect

from cfgstore.adapters import Store
from cfgstore.model.pools import node_to_json
from tests.browser.conftest import (
    CLIENT_KEY,
    DEGRADE_WAIT_MS,
    DESKTOP,
    PHONE,
    RECOVER_WAIT_MS,
    TYPE,
    UI_WAIT_MS,
    UiGateway,
    log_in,
    new_page,
)

UPSTREAM_KEY = "sk-browser-upstream-key-0123456789"
REQUESTS = 3


def row(page: Page, uuid: str) -> Locator:
    return page.locator(f'[data-testid="provider-row"][data-uuid="{uuid}"]')


async def add_node_in_ui(page: Page, gateway: UiGateway, name: str) -> str:
    """Fill and send the add form; the new node's uuid (read from its table row)."""
    config = {
        "customName": name,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": gateway.upstream.base_url,
    }
    await page.get_by_test_id("add-provider-type").fill(TYPE)
    await page.get_by_test_id("add-provider-config").fill(json.dumps(config))
    await page.get_by_test_id("add-provider-submit").click()
    await expect(page.get_by_test_id("add-provider-error")).to_be_hidden()
    named = page.locator('[data-testid="provider-row"]').filter(
        has=page.get_by_test_id("provider-name").filter(has_text=name)
    )
    await expect(named).to_have_count(1, timeout=UI_WAIT_MS)
    uuid = await named.get_attribute("data-uuid")
    assert uuid, "the new row has no data-uuid"
    return uuid


async def test_log_in_add_a_provider_and_watch_its_usage_rise(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await page.goto(ui_gateway.url + "/")

    # A wrong password is refused on the form, with a message.
    await page.get_by_test_id("login-password").fill("not-the-password")
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("login-error")).to_have_text(
        "Incorrect password. 4 attempts remaining.",
        timeout=UI_WAIT_MS,  # the Node wording
    )
    await page.screenshot(path=artifacts / "desktop-login.png")

    await log_in(page, ui_gateway)
    await expect(page.get_by_test_id("pools-empty")).to_be_visible()
    uuid = await add_node_in_ui(page, ui_gateway, "browser-node")
    node_row = row(page, uuid)
    await expect(node_row.get_by_test_id("health-badge")).to_have_text("healthy")
    await expect(node_row.get_by_test_id("usage-count")).to_have_text("0")
    assert UPSTREAM_KEY not in await page.content(), "the upstream key is shown unmasked"

    # Requests through the gateway: the table follows (the page polls; no reload).
    for _ in range(REQUESTS):
        assert await ui_gateway.chat() == 200
    await expect(node_row.get_by_test_id("usage-count")).to_have_text(
        str(REQUESTS), timeout=UI_WAIT_MS
    )
    await expect(node_row.get_by_test_id("last-used")).not_to_have_text("—")
    assert len(ui_gateway.upstream.chat_requests()) == REQUESTS
    await page.screenshot(path=artifacts / "desktop-providers.png", full_page=True)

    # Edit: the key is masked in the form; saving the masked echo keeps the real key.
    await node_row.get_by_test_id("provider-edit").click()
    editor = page.get_by_test_id("edit-provider-config")
    await expect(editor).to_be_visible()
    shown = json.loads(await editor.input_value())
    assert "****" in shown["OPENAI_API_KEY"]
    assert UPSTREAM_KEY not in json.dumps(shown)
    shown["customName"] = "browser-node-renamed"
    await editor.fill(json.dumps(shown, indent=2))
    await page.get_by_test_id("edit-provider-save").click()
    await expect(page.get_by_test_id("edit-provider-form")).to_be_hidden(timeout=UI_WAIT_MS)
    await expect(node_row.get_by_test_id("provider-name")).to_have_text(
        "browser-node-renamed", timeout=UI_WAIT_MS
    )
    stored = await ui_gateway.store.pools.get_node(TYPE, uuid)
    assert stored is not None
    assert node_to_json(stored)["OPENAI_API_KEY"] == UPSTREAM_KEY
    assert await ui_gateway.chat() == 200  # the node still reaches its upstream

    # Disable, enable.
    await node_row.get_by_test_id("provider-toggle-disabled").click()
    await expect(node_row.get_by_test_id("health-badge")).to_have_text(
        "disabled", timeout=UI_WAIT_MS
    )
    await node_row.get_by_test_id("provider-toggle-disabled").click()
    await expect(node_row.get_by_test_id("health-badge")).to_have_text(
        "healthy", timeout=UI_WAIT_MS
    )

    # Delete, after the confirmation: the type goes with its last node.
    page.once("dialog", lambda dialog: dialog.accept())
    await node_row.get_by_test_id("provider-delete").click()
    await expect(node_row).to_have_count(0, timeout=UI_WAIT_MS)
    await expect(page.get_by_test_id("pools-empty")).to_be_visible(timeout=UI_WAIT_MS)
    assert await ui_gateway.store.pools.get_node(TYPE, uuid) is None

    await page.get_by_test_id("logout-button").click()
    await expect(page.get_by_test_id("login-form")).to_be_visible(timeout=UI_WAIT_MS)
    assert await page.evaluate("Object.keys(sessionStorage).length") == 0
    assert errors == []


async def test_a_plugin_toggle_is_persisted(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await log_in(page, ui_gateway)
    await page.get_by_test_id("nav-plugins").click()
    monitor = page.locator('[data-testid="plugin"][data-name="ai-monitor"]')
    await expect(monitor.get_by_test_id("plugin-state")).to_have_text(
        "disabled", timeout=UI_WAIT_MS
    )
    await expect(monitor.get_by_test_id("plugin-toggle")).not_to_be_checked()

    await monitor.get_by_test_id("plugin-toggle").click()
    await expect(monitor.get_by_test_id("plugin-state")).to_have_text("enabled", timeout=UI_WAIT_MS)
    await page.screenshot(path=artifacts / "desktop-plugins.png")

    token = await ui_gateway.api_token()
    plugins = (await ui_gateway.api_get("/api/plugins", token))["plugins"]
    assert {p["name"]: p["enabled"] for p in plugins} == {
        "ai-monitor": True,
        "api-potluck": False,  # off by default, as in the Node service
        "default-auth": True,
        "model-usage-stats": False,  # off by default, listed by the runtime
    }
    async with Store.open(ui_gateway.redis_only()) as redis_store:
        assert (await redis_store.plugin_config.get()).is_enabled("ai-monitor")

    # A reload keeps the session (sessionStorage) and shows the stored state.
    await page.reload()
    await expect(page.get_by_test_id("view-plugins")).to_be_visible(timeout=UI_WAIT_MS)
    await expect(monitor.get_by_test_id("plugin-toggle")).to_be_checked(timeout=UI_WAIT_MS)
    # The enabled plugin's console tab: its module loads (same origin, under the CSP).
    await expect(page.get_by_test_id("plugin-tab")).to_have_text("AI Monitor", timeout=UI_WAIT_MS)
    await page.get_by_test_id("plugin-tab").click()
    await expect(page.get_by_test_id("plugin-tab-body")).to_contain_text(
        "AI Monitor: last 0 requests", timeout=UI_WAIT_MS
    )
    assert errors == []


async def test_the_degraded_banner_follows_redis(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await log_in(page, ui_gateway)
    uuid = await add_node_in_ui(page, ui_gateway, "outage-node")
    assert await ui_gateway.chat() == 200
    banner = page.get_by_test_id("degraded-banner")
    await expect(banner).to_be_hidden()

    await ui_gateway.redis.astop()
    await expect(banner).to_be_visible(timeout=DEGRADE_WAIT_MS)
    await expect(banner).to_contain_text("changes are refused until Redis is back")
    await expect(page.get_by_test_id("storage-pill")).to_have_text("degraded")
    # Requests are still served, and the table still answers from memory.
    assert await ui_gateway.chat() == 200
    await expect(row(page, uuid).get_by_test_id("usage-count")).to_have_text(
        "2", timeout=UI_WAIT_MS
    )
    # A mutation is refused with the storage message.
    await row(page, uuid).get_by_test_id("provider-toggle-disabled").click()
    notice = page.get_by_test_id("notice")
    await expect(notice).to_have_attribute("data-kind", "error", timeout=UI_WAIT_MS)
    await expect(page.get_by_test_id("notice-text")).to_contain_text(
        re.compile("degraded", re.IGNORECASE)
    )
    await page.screenshot(path=artifacts / "desktop-degraded.png", full_page=True)
    await expect(row(page, uuid).get_by_test_id("health-badge")).to_have_text("healthy")

    await ui_gateway.redis.arestart()
    await expect(banner).to_be_hidden(timeout=RECOVER_WAIT_MS)
    await expect(page.get_by_test_id("storage-pill")).to_have_text("redis")
    # Changes are accepted again.
    await row(page, uuid).get_by_test_id("provider-toggle-disabled").click()
    await expect(row(page, uuid).get_by_test_id("health-badge")).to_have_text(
        "disabled", timeout=UI_WAIT_MS
    )
    assert errors == []


async def test_phone_layout_and_session_end(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    errors: list[str] = []
    page = await new_page(browser, PHONE, errors)
    await page.goto(ui_gateway.url + "/")
    await expect(page.get_by_test_id("login-form")).to_be_visible(timeout=UI_WAIT_MS)
    await page.screenshot(path=artifacts / "phone-login.png")
    await log_in(page, ui_gateway)
    await add_node_in_ui(page, ui_gateway, "phone-node-with-a-long-name")
    assert await ui_gateway.chat() == 200
    await expect(page.get_by_test_id("usage-count")).to_have_text("1", timeout=UI_WAIT_MS)

    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    cards_fit = await page.evaluate(
        """() => { const w = document.querySelector('[data-testid="pool"] .table-wrap');
                   return w.scrollWidth <= w.clientWidth; }"""
    )
    assert cards_fit, "on a phone the nodes are cards as wide as the screen, not a wide table"
    await page.screenshot(path=artifacts / "phone-providers.png", full_page=True)

    await page.get_by_test_id("nav-storage").click()
    await expect(page.get_by_test_id("storage-facts")).to_contain_text("redis")
    await page.screenshot(path=artifacts / "phone-storage.png", full_page=True)

    # The token never shows in the URL; a session ended elsewhere sends the page to login.
    token = await page.evaluate("sessionStorage.getItem('cfgstore.adminToken')")
    assert token and token not in page.url
    async with ui_gateway.client.post(
        f"{ui_gateway.url}/api/logout", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
    await expect(page.get_by_test_id("login-form")).to_be_visible(timeout=UI_WAIT_MS)
    await expect(page.get_by_test_id("login-error")).to_contain_text("session ended")
    assert errors == []


async def test_config_editor_upload_and_usage(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await log_in(page, ui_gateway)

    # Upload a credential: a new node of the chosen type holds it.
    token_document = {"access_token": "browser-access-token-0123456789", "expiry_date": 1}
    await page.get_by_test_id("upload-provider").fill("gemini-cli-oauth")
    await page.get_by_test_id("upload-name").fill("uploaded-account")
    credential_file: FilePayload = {
        "name": "oauth_creds.json",
        "mimeType": "application/json",
        "buffer": json.dumps(token_document).encode(),
    }
    await page.get_by_test_id("upload-file").set_input_files(files=[credential_file])
    await page.get_by_test_id("upload-submit").click()
    uploaded = page.locator('[data-testid="pool"][data-type="gemini-cli-oauth"]')
    await expect(uploaded.get_by_test_id("provider-name")).to_have_text(
        "uploaded-account", timeout=UI_WAIT_MS
    )
    uuid = await uploaded.get_by_test_id("provider-row").get_attribute("data-uuid")
    assert uuid
    credential = await ui_gateway.store.credentials.get("gemini-cli-oauth", uuid)
    assert credential is not None

    # The config editor: only the changed key is sent; the masked client key is kept.
    await page.get_by_test_id("nav-config").click()
    editor = page.get_by_test_id("config-editor")
    await expect(editor).not_to_have_value("", timeout=UI_WAIT_MS)
    shown = json.loads(await editor.input_value())
    assert shown["REQUIRED_API_KEY"] != CLIENT_KEY
    shown["REQUEST_MAX_RETRIES"] = 2
    await editor.fill(json.dumps(shown, indent=2))
    await page.get_by_test_id("config-save").click()
    await expect(page.get_by_test_id("notice-text")).to_have_text(
        "Saved 1 change.", timeout=UI_WAIT_MS
    )
    config = (await ui_gateway.store.config.get()).document
    assert config["REQUEST_MAX_RETRIES"] == 2
    assert config["REQUIRED_API_KEY"] == CLIENT_KEY

    # Bad input: 400, the field named, nothing changed.
    shown = json.loads(await editor.input_value())
    shown["SERVER_PORT"] = 70000
    await editor.fill(json.dumps(shown, indent=2))
    await page.get_by_test_id("config-save").click()
    config_error = page.get_by_test_id("config-error")
    await expect(config_error).to_contain_text("SERVER_PORT", timeout=UI_WAIT_MS)
    await expect(config_error).to_contain_text("Nothing was saved")
    await page.screenshot(path=artifacts / "desktop-config-error.png", full_page=True)
    assert (await ui_gateway.store.config.get()).document.get("SERVER_PORT") != 70000

    # A write from elsewhere since the page loaded: 412, said plainly.
    token = await ui_gateway.api_token()
    async with ui_gateway.client.post(
        f"{ui_gateway.url}/api/config",
        json={"REQUEST_MAX_RETRIES": 3},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200, await response.text()
    shown["SERVER_PORT"] = 3000
    await editor.fill(json.dumps(shown, indent=2))
    await page.get_by_test_id("config-save").click()
    await expect(config_error).to_contain_text("changed elsewhere", timeout=UI_WAIT_MS)
    assert (await ui_gateway.store.config.get()).document["REQUEST_MAX_RETRIES"] == 3
    await page.get_by_test_id("config-reload").click()
    await expect(config_error).to_be_hidden()
    # The error hides before the reloaded document is shown: wait for the value itself.
    await expect(editor).to_have_value(
        re.compile(r'"REQUEST_MAX_RETRIES": 3[,\s]'), timeout=UI_WAIT_MS
    )
    assert json.loads(await editor.input_value())["REQUEST_MAX_RETRIES"] == 3

    # The usage cache view and its refresh.
    await page.get_by_test_id("nav-usage").click()
    await expect(page.get_by_test_id("usage-body")).not_to_be_empty(timeout=UI_WAIT_MS)
    await page.get_by_test_id("usage-refresh").click()
    await expect(page.get_by_test_id("notice-text")).to_have_text(
        "Usage refreshed.", timeout=UI_WAIT_MS
    )
    await expect(page.get_by_test_id("usage-timestamp")).not_to_have_text("—")
    await page.screenshot(path=artifacts / "desktop-usage.png", full_page=True)
    assert errors == []


def model_row(page: Page, model_id: str) -> Locator:
    return page.locator(f'[data-testid="model-row"][data-id="{model_id}"]')


async def listed_models(gateway: UiGateway) -> dict[str, str]:
    """``GET /v1/models`` with the client key: ``{id: owned_by}``."""
    async with gateway.client.get(
        f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    ) as response:
        assert response.status == 200, await response.text()
        data = (await response.json())["data"]
    return {m["id"]: m["owned_by"] for m in data}


async def test_custom_models_add_edit_delete(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await log_in(page, ui_gateway)
    await page.get_by_test_id("nav-models").click()
    await expect(page.get_by_test_id("view-models")).to_be_visible()
    await expect(page.get_by_test_id("models-empty")).to_be_visible(timeout=UI_WAIT_MS)

    # Add: the row shows every field; /v1/models lists it under its provider.
    await page.get_by_test_id("add-model-id").fill("browser-alias")
    await page.get_by_test_id("add-model-alias").fill("ba")
    await page.get_by_test_id("add-model-provider").fill(TYPE)
    await page.get_by_test_id("add-model-actualProvider").fill(TYPE)
    await page.get_by_test_id("add-model-actualModel").fill("stub-model-a")
    await page.get_by_test_id("add-model-name").fill("Browser alias")
    await page.get_by_test_id("add-model-submit").click()
    added = model_row(page, "browser-alias")
    await expect(added).to_have_count(1, timeout=UI_WAIT_MS)
    await expect(page.get_by_test_id("add-model-error")).to_be_hidden()
    await expect(added.get_by_test_id("model-alias")).to_have_text("ba")
    await expect(added.get_by_test_id("model-actualModel")).to_have_text("stub-model-a")
    await expect(added.get_by_test_id("model-name")).to_have_text("Browser alias")
    await expect(page.get_by_test_id("add-model-id")).to_have_value("")
    assert (await listed_models(ui_gateway)).get("browser-alias") == TYPE

    # A second, global one (only an id): listed as "custom".
    await page.get_by_test_id("add-model-id").fill("global-alias")
    await page.get_by_test_id("add-model-actualModel").fill("stub-model-b")
    await page.get_by_test_id("add-model-submit").click()
    await expect(model_row(page, "global-alias")).to_have_count(1, timeout=UI_WAIT_MS)
    await expect(model_row(page, "global-alias").get_by_test_id("model-provider")).to_have_text("—")
    assert (await listed_models(ui_gateway)).get("global-alias") == "custom"
    await page.screenshot(path=artifacts / "desktop-models.png", full_page=True)

    # A taken id: 409, said on the form; nothing added.
    await page.get_by_test_id("add-model-id").fill("browser-alias")
    await page.get_by_test_id("add-model-submit").click()
    add_error = page.get_by_test_id("add-model-error")
    await expect(add_error).to_contain_text("already exists", timeout=UI_WAIT_MS)
    await expect(page.get_by_test_id("model-row")).to_have_count(2)

    # Edit: the fields other than the id, as JSON; an id change is refused (400).
    await added.get_by_test_id("model-edit").click()
    fields_box = page.get_by_test_id("edit-model-fields")
    await expect(fields_box).to_be_visible()
    fields = json.loads(await fields_box.input_value())
    assert "id" not in fields
    assert fields["actualModel"] == "stub-model-a"
    await fields_box.fill(json.dumps({"id": "renamed"}))
    await page.get_by_test_id("edit-model-save").click()
    edit_error = page.get_by_test_id("edit-model-error")
    await expect(edit_error).to_contain_text("Nothing was saved", timeout=UI_WAIT_MS)
    await expect(edit_error).to_contain_text("id:")
    await fields_box.fill(json.dumps({"actualModel": "stub-model-b", "name": "Renamed"}))
    await page.get_by_test_id("edit-model-save").click()
    await expect(page.get_by_test_id("edit-model-form")).to_be_hidden(timeout=UI_WAIT_MS)
    await expect(added.get_by_test_id("model-actualModel")).to_have_text(
        "stub-model-b", timeout=UI_WAIT_MS
    )
    await expect(added.get_by_test_id("model-alias")).to_have_text("ba")  # merged, kept
    stored = {m.id: m.to_json() for m in await ui_gateway.store.custom_models.list()}
    assert stored["browser-alias"]["actualModel"] == "stub-model-b"
    assert stored["browser-alias"]["name"] == "Renamed"
    assert stored["browser-alias"]["alias"] == "ba"

    # Delete, after the confirmation: gone from the table, the store and /v1/models.
    page.once("dialog", lambda dialog: dialog.accept())
    await added.get_by_test_id("model-delete").click()
    await expect(added).to_have_count(0, timeout=UI_WAIT_MS)
    await expect(model_row(page, "global-alias")).to_have_count(1)
    assert [m.id for m in await ui_gateway.store.custom_models.list()] == ["global-alias"]
    assert "browser-alias" not in await listed_models(ui_gateway)
    assert errors == []


async def test_node_check_new_uuid_and_unhealthy_actions(
    browser: Browser, ui_gateway: UiGateway, artifacts: Path
) -> None:
    errors: list[str] = []
    page = await new_page(browser, DESKTOP, errors)
    await log_in(page, ui_gateway)
    old_uuid = await add_node_in_ui(page, ui_gateway, "checked-node")
    notice = page.get_by_test_id("notice")
    notice_text = page.get_by_test_id("notice-text")

    # Check: the node's upstream (the stub) answers; the notice says healthy.
    await row(page, old_uuid).get_by_test_id("provider-check").click()
    await expect(notice_text).to_contain_text("checked-node", timeout=UI_WAIT_MS)
    await expect(notice_text).to_contain_text(": healthy")
    await expect(notice).to_have_attribute("data-kind", "ok")
    assert ui_gateway.upstream.received, "the check did not reach the upstream stub"

    # New uuid, after the confirmation: the row moves to the new uuid; the store follows.
    page.once("dialog", lambda dialog: dialog.accept())
    await row(page, old_uuid).get_by_test_id("provider-refresh-uuid").click()
    await expect(row(page, old_uuid)).to_have_count(0, timeout=UI_WAIT_MS)
    named = page.locator('[data-testid="provider-row"]').filter(
        has=page.get_by_test_id("provider-name").filter(has_text="checked-node")
    )
    await expect(named).to_have_count(1, timeout=UI_WAIT_MS)
    new_uuid = await named.get_attribute("data-uuid")
    assert new_uuid and new_uuid != old_uuid
    await expect(notice_text).to_contain_text(new_uuid)
    assert await ui_gateway.store.pools.get_node(TYPE, old_uuid) is None
    assert await ui_gateway.store.pools.get_node(TYPE, new_uuid) is not None

    # A second node, marked unhealthy: Check unhealthy checks only it (the stub answers,
    # so it is healthy again); marked again, Delete unhealthy removes it alone.
    sick_uuid = await add_node_in_ui(page, ui_gateway, "sick-node")

    async def mark_unhealthy() -> None:
        await ui_gateway.store.pools.record_health_check(
            TYPE,
            sick_uuid,
            ok=False,
            model=None,
            message="down",
            max_error_count=1,
            immediate=True,
        )
        await expect(row(page, sick_uuid).get_by_test_id("health-badge")).to_have_text(
            "unhealthy", timeout=UI_WAIT_MS
        )

    await mark_unhealthy()
    pool = page.locator(f'[data-testid="pool"][data-type="{TYPE}"]')
    await pool.get_by_test_id("check-unhealthy").click()
    await expect(notice_text).to_contain_text("1 checked, 1 healthy", timeout=UI_WAIT_MS)
    await expect(row(page, sick_uuid).get_by_test_id("health-badge")).to_have_text(
        "healthy", timeout=UI_WAIT_MS
    )

    await mark_unhealthy()
    page.once("dialog", lambda dialog: dialog.accept())
    await pool.get_by_test_id("delete-unhealthy").click()
    await expect(notice_text).to_contain_text("Deleted 1 unhealthy node", timeout=UI_WAIT_MS)
    await expect(row(page, sick_uuid)).to_have_count(0, timeout=UI_WAIT_MS)
    await expect(row(page, new_uuid)).to_have_count(1)
    assert await ui_gateway.store.pools.get_node(TYPE, sick_uuid) is None
    await page.screenshot(path=artifacts / "desktop-node-actions.png", full_page=True)
    assert errors == []

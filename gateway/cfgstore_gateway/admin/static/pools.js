// The Providers view for pools of any size (issue 15 point 6): a summary of every type at
// the top, then one section per type whose search, health filter, sort and paging are done
// by the gateway (/api/cfgstore/pools/…, see gateway/admin-api.md). A new query asks for its
// page (GET, If-None-Match); the 2-second poll is one POST /api/cfgstore/pools/poll naming
// the ETags of everything shown, answered with only what changed (204 when nothing did). Under 600 px the node rows are
// cards (style.css) so every node action stays on screen.
//
// app.js creates it with its helpers: window.cfgstorePools(ui) -> {poll, reset}. Every
// piece of data goes into the DOM as text, never as HTML.
"use strict";

window.cfgstorePools = function createPools(ui) {
  const { api, el, show, seg, fmtTime, notify, act } = ui;
  const $ = (id) => document.getElementById(id);
  const PER_PAGE_CHOICES = [25, 50, 100];
  const SEARCH_DELAY_MS = 300;
  const HEALTH_FILTERS = [
    ["all", "All"], ["healthy", "Healthy"], ["unhealthy", "Unhealthy"], ["disabled", "Disabled"],
  ];
  /** The node table's columns: label, the API's sort key, and the row part showing it. */
  const COLUMNS = [
    { label: "Node", sort: "name" },
    { label: "Health", sort: "health" },
    { label: "Usage", sort: "usageCount", num: true },
    { label: "Errors", sort: "errorCount", num: true },
    { label: "Last used", sort: "lastUsed" },
    { label: "Last error", sort: "lastErrorTime" },
  ];

  /** type -> section (see makeSection) */
  const sections = new Map();
  let summaryTag = null;
  let inFlight = false;
  let again = false;

  // ------------------------------------------------------------------ fetching

  /** GET ``path`` unless it still answers ``etag``: ``null`` when unchanged (304). */
  async function changedSince(path, etag) {
    const headers = etag ? { "If-None-Match": etag } : {};
    const { data, response, notModified } = await api("GET", path, { headers });
    if (notModified) return null;
    return { data: data || {}, etag: response.headers.get("ETag") };
  }

  /** One poll: a single exchange naming the summary and every page shown with their
   * ETags; the gateway answers only what changed (204 when nothing did). A poll asked
   * while one runs runs once more after it (an action's refresh is never lost). */
  async function poll() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    try {
      do {
        again = false;
        const shown = [...sections.values()].map((section) => ({
          section, path: pagePath(section), asked: section.asked,
        }));
        const pages = shown.map(({ section, path }) => ({
          type: section.type, q: section.query.q, health: section.query.health,
          sort: section.query.sort, order: section.query.order, page: section.query.page,
          per_page: section.query.perPage, etag: section.shownPath === path ? section.etag : null,
        }));
        const { data } = await api("POST", "/api/cfgstore/pools/poll", {
          json: { summary: summaryTag, pages },
        });
        if (data && data.summary) {
          renderSummary(data.summary);
          summaryTag = data.summary.etag || null;
        }
        for (const page of (data && Array.isArray(data.pages) ? data.pages : [])) {
          const sent = shown.find((s) => s.section.type === page.type);
          // Dropped: a section gone meanwhile, or one whose query changed since it was sent.
          if (!sent || sections.get(page.type) !== sent.section || sent.asked !== sent.section.asked) continue;
          if (pagePath(sent.section) !== sent.path) continue;
          applyPage(sent.section, sent.path, page);
        }
        const added = [...sections.values()].filter((s) => !s.shownPath);
        await Promise.all(added.map((section) => refresh(section))); // types new in the summary
        $("providers-updated").textContent = "updated " + new Date().toLocaleTimeString();
      } while (again);
    } catch (error) {
      if (error.status !== 401) {
        $("providers-updated").textContent = "update failed: " + ui.describe(error);
      }
    } finally {
      inFlight = false;
    }
  }

  function pagePath(section) {
    const q = section.query;
    const params = new URLSearchParams({
      q: q.q, health: q.health, sort: q.sort, order: q.order, page: String(q.page),
      per_page: String(q.perPage),
    });
    return `/api/cfgstore/pools/${seg(section.type)}?${params}`;
  }

  /** The section's page, unless unchanged; an answer to an older query is dropped. */
  async function refresh(section) {
    const path = pagePath(section);
    const asked = ++section.asked;
    const answer = await changedSince(path, section.shownPath === path ? section.etag : null);
    if (asked !== section.asked || !answer) return;
    applyPage(section, path, { ...answer.data, etag: answer.etag });
  }

  function applyPage(section, path, page) {
    section.etag = page.etag || null;
    section.shownPath = path;
    renderPage(section, page);
    if (page.page && page.page !== section.query.page) {
      section.query.page = page.page; // past the last page: the gateway served the last
      section.shownPath = pagePath(section);
    }
  }

  function requery(section, changes) {
    Object.assign(section.query, changes);
    refresh(section).catch((error) => {
      if (error.status !== 401) notify(ui.describe(error), "error");
    });
  }

  // ------------------------------------------------------------------ summary

  function renderSummary(summary) {
    const types = Array.isArray(summary.types) ? summary.types.filter((t) => t && t.type) : [];
    const container = $("pools");
    for (const [type, section] of sections) {
      if (!types.some((t) => t.type === type)) {
        section.root.remove();
        sections.delete(type);
      }
    }
    types.forEach((entry, index) => {
      let section = sections.get(entry.type);
      if (!section) {
        section = makeSection(String(entry.type));
        sections.set(section.type, section);
      }
      if (container.children[index] !== section.root) {
        container.insertBefore(section.root, container.children[index] || null);
      }
    });
    $("pools-summary-body").replaceChildren(...types.map((entry) => summaryRow(entry)));
    const totals = summary.totals || {};
    $("pools-summary-totals").replaceChildren(
      el("th", { scope: "row", text: "All types" }),
      ...SUMMARY_COUNTS.map((key) => el("td", { className: "num", "data-label": SUMMARY_LABELS[key], text: count(totals[key]) })),
    );
    const hour = summary.lastHour || {};
    $("pools-summary-note").textContent = hour.source === "counters"
      ? "Last hour: estimated from the nodes' counters"
        + (hour.complete ? "." : ` since ${fmtTime(hour.since)} (the console's first look).`)
      : `Last hour: ${hour.source || "unknown source"}.`;
    show($("pools-summary"), types.length > 0);
    show($("pools-empty"), types.length === 0);
    ui.rememberTypes(types.map((t) => String(t.type)));
    ui.announce("pools", types.map((t) => String(t.type)));
  }

  const SUMMARY_COUNTS = ["nodes", "healthy", "unhealthy", "disabled", "requestsLastHour", "errorsLastHour"];
  const SUMMARY_LABELS = {
    nodes: "Nodes", healthy: "Healthy", unhealthy: "Unhealthy", disabled: "Disabled",
    requestsLastHour: "Requests (1 h)", errorsLastHour: "Errors (1 h)",
  };

  function count(value) {
    return typeof value === "number" ? value.toLocaleString() : "—";
  }

  function summaryRow(entry) {
    const type = String(entry.type);
    const jump = el("button", {
      type: "button", className: "link-button mono", text: type,
      onclick: () => {
        const section = sections.get(type);
        if (section) section.root.scrollIntoView({ behavior: "smooth", block: "start" });
      },
    });
    return el("tr", { "data-testid": "summary-row", "data-type": type },
      el("th", { scope: "row" }, jump),
      ...SUMMARY_COUNTS.map((key) =>
        el("td", { className: "num", "data-label": SUMMARY_LABELS[key], "data-testid": "summary-" + key, text: count(entry[key]) })),
    );
  }

  // ------------------------------------------------------------------ a type's section

  function makeSection(type) {
    const section = {
      type, rows: new Map(), etag: null, shownPath: null, asked: 0, searchTimer: null,
      query: { q: "", health: "all", sort: "", order: "asc", page: 1, perPage: PER_PAGE_CHOICES[0] },
    };
    section.summary = el("span", { className: "muted small", "data-testid": "pool-summary" });

    const search = el("input", {
      type: "search", className: "pool-search", placeholder: "Search name, uuid or error",
      "aria-label": `Search ${type}`, "data-testid": "pool-search", autocomplete: "off", spellcheck: "false",
    });
    search.addEventListener("input", () => {
      clearTimeout(section.searchTimer);
      section.searchTimer = setTimeout(() => requery(section, { q: search.value.trim(), page: 1 }), SEARCH_DELAY_MS);
    });
    section.health = el("select", { "aria-label": `Health of ${type}`, "data-testid": "pool-health" },
      ...HEALTH_FILTERS.map(([value, text]) => el("option", { value, text })));
    section.health.addEventListener("change", () => requery(section, { health: section.health.value, page: 1 }));
    const perPage = el("select", { "aria-label": "Nodes per page", "data-testid": "pool-per-page" },
      ...PER_PAGE_CHOICES.map((n) => el("option", { value: String(n), text: `${n} per page` })));
    perPage.addEventListener("change", () => requery(section, { perPage: Number(perPage.value), page: 1 }));
    section.sortSelect = el("select", { className: "phone-only", "aria-label": "Sort by", "data-testid": "pool-sort" },
      el("option", { value: "", text: "Pool order" }),
      ...COLUMNS.flatMap((c) => [
        el("option", { value: `${c.sort}:asc`, text: `${c.label} ↑` }),
        el("option", { value: `${c.sort}:desc`, text: `${c.label} ↓` }),
      ]));
    section.sortSelect.addEventListener("change", () => {
      const [sort, order] = section.sortSelect.value.split(":");
      setSort(section, sort || "", order || "asc");
    });

    section.headers = COLUMNS.map((column) => {
      const button = el("button", {
        type: "button", className: "sort-button", "data-testid": "sort-" + column.sort, text: column.label,
        onclick: () => {
          const q = section.query;
          const order = q.sort === column.sort && q.order === "asc" ? "desc" : "asc";
          setSort(section, column.sort, order);
        },
      });
      return { column, th: el("th", { className: column.num ? "num" : undefined }, button) };
    });
    section.tbody = el("tbody");
    section.emptyRow = el("p", { className: "empty muted pool-empty", "data-testid": "pool-no-match", hidden: true });
    section.prev = el("button", {
      type: "button", className: "btn btn-small", "data-testid": "pool-prev", text: "‹ Previous",
      onclick: () => requery(section, { page: Math.max(1, section.query.page - 1) }),
    });
    section.next = el("button", {
      type: "button", className: "btn btn-small", "data-testid": "pool-next", text: "Next ›",
      onclick: () => requery(section, { page: section.query.page + 1 }),
    });
    section.pageInfo = el("span", { className: "muted small", "data-testid": "pool-page-info" });

    section.root = el("section", { className: "pool card", "data-testid": "pool", "data-type": type },
      el("div", { className: "pool-head" },
        el("h3", { className: "pool-title", text: type }), section.summary, el("span", { className: "spacer" }),
        el("div", { className: "pool-actions" }, ...typeActions(type))),
      el("div", { className: "pool-toolbar" }, search, section.health, section.sortSelect, perPage),
      el("div", { className: "table-wrap" },
        el("table", { className: "table pool-table" },
          el("thead", {}, el("tr", {}, ...section.headers.map((h) => h.th), el("th", { text: "" }))),
          section.tbody)),
      section.emptyRow,
      el("div", { className: "pager" }, section.prev, section.pageInfo, section.next),
    );
    return section;
  }

  function setSort(section, sort, order) {
    requery(section, { sort, order, page: 1 });
    showSort(section);
  }

  function showSort(section) {
    const q = section.query;
    for (const { column, th } of section.headers) {
      if (q.sort === column.sort) th.setAttribute("aria-sort", q.order === "asc" ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    section.sortSelect.value = q.sort ? `${q.sort}:${q.order}` : "";
  }

  function typeActions(type) {
    const reset = el("button", {
      type: "button", className: "btn btn-small", "data-testid": "reset-health", "data-type": type,
      text: "Reset health",
      onclick: () => act(reset, () => api("POST", `/api/providers/${seg(type)}/reset-health`),
        (data) => `Health reset for ${type} (${data && data.resetCount !== undefined ? data.resetCount : "?"} nodes).`),
    });
    const checkUnhealthy = el("button", {
      type: "button", className: "btn btn-small", "data-testid": "check-unhealthy", "data-type": type,
      text: "Check unhealthy",
      onclick: () => act(checkUnhealthy, () => api("POST", `/api/providers/${seg(type)}/health-check`),
        (data) => checkSummary(type, data)),
    });
    const deleteUnhealthy = el("button", {
      type: "button", className: "btn btn-small btn-danger", "data-testid": "delete-unhealthy",
      "data-type": type, text: "Delete unhealthy",
      onclick: () => {
        if (!window.confirm(`Delete every unhealthy node of ${type}? This cannot be undone.`)) return;
        act(deleteUnhealthy, () => api("DELETE", `/api/providers/${seg(type)}/delete-unhealthy`),
          (data) => {
            const removed = data && typeof data.deletedCount === "number" ? data.deletedCount : 0;
            return `Deleted ${removed} unhealthy node${removed === 1 ? "" : "s"} from ${type}.`;
          });
      },
    });
    return [checkUnhealthy, reset, deleteUnhealthy];
  }

  /** The notice of a type's health check: how many nodes were checked, how many are healthy. */
  function checkSummary(type, data) {
    const results = data && Array.isArray(data.results) ? data.results : [];
    if (!results.length) return { text: `${type}: no unhealthy node to check.`, kind: "info" };
    const healthy = results.filter((r) => r.success).length;
    const lines = [`${type}: ${results.length} checked, ${healthy} healthy.`];
    for (const r of results.filter((x) => !x.success).slice(0, 5)) {
      lines.push(`• ${r.uuid}: ${r.message || "unhealthy"}`);
    }
    return { text: lines.join("\n"), kind: healthy === results.length ? "ok" : "info" };
  }

  function renderPage(section, page) {
    const nodes = Array.isArray(page.nodes) ? page.nodes.filter((n) => n && typeof n === "object") : [];
    const seen = new Set();
    nodes.forEach((node, index) => {
      const uuid = String(node.uuid || "");
      seen.add(uuid);
      let row = section.rows.get(uuid);
      if (!row) {
        row = makeRow(section.type, uuid);
        section.rows.set(uuid, row);
      }
      if (section.tbody.children[index] !== row.tr) {
        section.tbody.insertBefore(row.tr, section.tbody.children[index] || null);
      }
      updateRow(row, node);
    });
    for (const [uuid, row] of section.rows) {
      if (!seen.has(uuid)) {
        row.tr.remove();
        section.rows.delete(uuid);
      }
    }
    const counts = page.counts || {};
    const total = Number(page.total) || 0;
    section.summary.textContent = `${total.toLocaleString()} node${total === 1 ? "" : "s"} · `
      + `${count(counts.healthy)} healthy · ${count(counts.unhealthy)} unhealthy · ${count(counts.disabled)} disabled`;
    HEALTH_FILTERS.forEach(([value, text], i) => {
      const n = value === "all" ? total : counts[value];
      section.health.options[i].textContent = `${text} (${count(n)})`;
    });
    const pages = Number(page.pages) || 1;
    const current = Number(page.page) || 1;
    const matched = Number(page.matched) || 0;
    section.pageInfo.textContent = `Page ${current} of ${pages} · ${matched.toLocaleString()} matching`;
    section.prev.disabled = current <= 1;
    section.next.disabled = current >= pages;
    section.emptyRow.textContent = total ? "No node matches." : "No node.";
    show(section.emptyRow, nodes.length === 0);
    showSort(section);
  }

  // ------------------------------------------------------------------ node rows

  function healthOf(node) {
    if (node.isDisabled === true) return "disabled";
    if (node.isHealthy === false) return "unhealthy";
    return "healthy";
  }

  function makeRow(type, uuid) {
    const cell = (testid, className, label) => el("td", { "data-testid": testid, className, "data-label": label });
    const name = el("div", { className: "node-name", "data-testid": "provider-name" });
    const id = el("div", { className: "node-uuid mono small muted", text: uuid });
    const badge = el("span", { className: "badge", "data-testid": "health-badge" });
    const row = {
      type, uuid, node: null, name, badge,
      usage: cell("usage-count", "num", "Usage"),
      errors: cell("error-count", "num", "Errors"),
      lastUsed: cell("last-used", "nowrap", "Last used"),
      lastError: cell("last-error", "last-error", "Last error"),
    };
    const edit = el("button", {
      type: "button", className: "btn btn-small", "data-testid": "provider-edit", text: "Edit",
      onclick: () => ui.editNode(type, uuid, `${type} / ${label(row)}`, row.node || {}),
    });
    row.toggle = el("button", {
      type: "button", className: "btn btn-small", "data-testid": "provider-toggle-disabled",
      onclick: () => {
        const action = row.node && row.node.isDisabled ? "enable" : "disable";
        act(row.toggle, () => api("POST", `/api/providers/${seg(type)}/${seg(uuid)}/${action}`),
          () => `${label(row)} ${action}d.`);
      },
    });
    const check = el("button", {
      type: "button", className: "btn btn-small", "data-testid": "provider-check", text: "Check",
      onclick: () => act(check, () => api("POST", `/api/providers/${seg(type)}/${seg(uuid)}/health-check`),
        (data) => {
          const result = data && typeof data.healthy === "boolean" ? data : null;
          if (!result) return `${label(row)}: no result.`;
          const text = `${label(row)}: ${result.healthy ? "healthy" : "unhealthy"}`
            + (result.message ? ` (${result.message})` : "") + ".";
          return { text, kind: result.healthy ? "ok" : "error" };
        }),
    });
    const newUuid = el("button", {
      type: "button", className: "btn btn-small", "data-testid": "provider-refresh-uuid", text: "New uuid",
      onclick: () => {
        if (!window.confirm(`Give ${label(row)} a new uuid? Anything that names it by ${uuid} loses it.`)) return;
        ui.closeEditorOf(type, uuid);
        act(newUuid, () => api("POST", `/api/providers/${seg(type)}/${seg(uuid)}/refresh-uuid`),
          (data) => `${label(row)} is now ${data && data.newUuid ? data.newUuid : "?"}.`);
      },
    });
    const remove = el("button", {
      type: "button", className: "btn btn-small btn-danger", "data-testid": "provider-delete", text: "Delete",
      onclick: () => {
        if (!window.confirm(`Delete ${label(row)} from ${type}? This cannot be undone.`)) return;
        act(remove, () => api("DELETE", `/api/providers/${seg(type)}/${seg(uuid)}`),
          () => `${label(row)} deleted.`);
      },
    });
    row.tr = el("tr", { "data-testid": "provider-row", "data-type": type, "data-uuid": uuid },
      el("td", { className: "node-cell" }, name, id),
      el("td", { "data-label": "Health" }, badge),
      row.usage, row.errors, row.lastUsed, row.lastError,
      el("td", { className: "row-actions" },
        el("div", { className: "row-buttons node-buttons", "data-testid": "node-actions" },
          check, edit, row.toggle, newUuid, remove)),
    );
    return row;
  }

  function label(row) {
    const custom = row.node && row.node.customName;
    return custom ? `${custom} (${row.uuid.slice(0, 8)})` : row.uuid;
  }

  function setText(node, text, title) {
    if (node.textContent !== text) node.textContent = text;
    if (title !== undefined && node.title !== title) node.title = title;
  }

  function updateRow(row, node) {
    row.node = node;
    const health = healthOf(node);
    row.tr.dataset.health = health;
    setText(row.name, node.customName ? String(node.customName) : "(unnamed)");
    row.name.classList.toggle("muted", !node.customName);
    setText(row.badge, health);
    row.badge.className = "badge badge-" + health;
    row.badge.title = node.scheduledRecoveryTime
      ? "cooling down until " + fmtTime(node.scheduledRecoveryTime) : "";
    setText(row.usage, String(node.usageCount ?? 0));
    setText(row.errors, String(node.errorCount ?? 0));
    setText(row.lastUsed, fmtTime(node.lastUsed), node.lastUsed ? String(node.lastUsed) : "");
    const message = node.lastErrorMessage ? String(node.lastErrorMessage) : "";
    setText(row.lastError, message || "—",
      message ? message + (node.lastErrorTime ? " (" + node.lastErrorTime + ")" : "") : "");
    setText(row.toggle, node.isDisabled ? "Enable" : "Disable");
  }

  /** Forget what is shown (signed out): the next poll draws everything again. */
  function reset() {
    for (const section of sections.values()) clearTimeout(section.searchTimer);
    sections.clear();
    summaryTag = null;
    $("pools").replaceChildren();
    $("pools-summary-body").replaceChildren();
    show($("pools-summary"), false);
  }

  return { poll, reset };
};

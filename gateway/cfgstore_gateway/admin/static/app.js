// The gateway's web UI: vanilla JS, no build step, no dependency.
//
// Talks to the admin API (/api, gateway/admin-api.md) with a bearer token kept in
// sessionStorage (never in a URL, never in a cookie). Every piece of data is put into the
// DOM as text (textContent / text nodes), never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "cfgstore.adminToken";
  const POLL_MS = 2000;
  const NOTICE_MS = 6000;
  /** Live state of a node: shown in the table, not part of the editable provider config. */
  const STATE_FIELDS = new Set([
    "uuid", "isHealthy", "isDisabled", "usageCount", "errorCount", "lastUsed",
    "lastErrorTime", "lastErrorMessage", "lastHealthCheckTime", "lastHealthCheckModel",
    "needsRefresh", "refreshCount", "lastRefreshTime", "_lastSelectionSeq",
    "scheduledRecoveryTime", "activeRequests", "waitingRequests",
  ]);

  const $ = (id) => document.getElementById(id);

  /** An element with attributes (``text`` sets textContent) and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key.startsWith("on") && typeof value === "function") {
        node.addEventListener(key.slice(2), value);
      } else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function seg(value) {
    return encodeURIComponent(String(value));
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    const sameDay = date.toDateString() === new Date().toDateString();
    return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function fmtValue(value) {
    if (value === null || value === undefined) return "—";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function deepEqual(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
  }

  // ------------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, code, message, fields) {
      super(message);
      this.status = status;
      this.code = code;
      this.fields = fields;
    }
  }

  let token = sessionStorage.getItem(TOKEN_KEY);

  async function api(method, path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (token) headers.set("Authorization", "Bearer " + token);
    let body = options.body;
    if (options.json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(options.json);
    }
    let response;
    try {
      response = await fetch(path, {
        method, headers, body, cache: "no-store", credentials: "omit",
      });
    } catch (exc) {
      throw new ApiError(0, "network", "The gateway did not answer (" + exc.message + ").", null);
    }
    const text = await response.text();
    if (response.status === 304) return { data: null, response, notModified: true };
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (!response.ok) {
      // The admin API's {error: {...}}, or the login's {success: false, message, messageCode}.
      const err = (data && typeof data === "object" && (data.error
        || (data.success === false && { message: data.message, code: data.messageCode }))) || {};
      const message = err.message || response.statusText || "HTTP " + response.status;
      const error = new ApiError(response.status, err.code || "", message, err.fields || null);
      error.retryAfter = response.headers.get("Retry-After");
      if (response.status === 401 && path !== "/api/login") {
        sessionEnded(err.code === "read_only_ended" ? message : null);
      }
      if (response.status === 503 && /^(storage_degraded|login\.error\.storageDegraded)$/.test(err.code)) {
        setDegraded(true);
        storageTag = modeTag = null; // the next poll draws the banner from the status again
      }
      throw error;
    }
    return { data, response };
  }

  /** A human sentence for an API error (with the 400 field problems when there are some). */
  function describe(error) {
    if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
    const lines = [error.message];
    if (error.status === 503 && error.code === "storage_degraded" && !/degraded/i.test(error.message)) {
      lines[0] = "Storage degraded: " + error.message;
    }
    if ((error.code === "locked_out" || error.code === "login.error.locked") && error.retryAfter) {
      lines.push("Try again in " + error.retryAfter + " s.");
    }
    if (error.fields) {
      for (const [field, problem] of Object.entries(error.fields)) lines.push(field + ": " + problem);
    }
    return lines.join("\n");
  }

  function showFormError(node, error) {
    if (!error) {
      node.textContent = "";
      show(node, false);
      return;
    }
    node.textContent = typeof error === "string" ? error : describe(error);
    show(node, true);
  }

  // ---------------------------------------------------------------- notices

  let noticeTimer = null;

  function notify(text, kind = "info") {
    const box = $("notice");
    $("notice-text").textContent = text;
    box.className = "notice notice-" + kind;
    box.dataset.kind = kind;
    show(box, true);
    clearTimeout(noticeTimer);
    if (kind !== "error") noticeTimer = setTimeout(() => show(box, false), NOTICE_MS);
  }

  function notifyError(error) {
    notify(describe(error), "error");
  }

  // ---------------------------------------------------------------- session

  function setToken(value) {
    token = value;
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  }

  /** Tell the console's add-on scripts (operator.js) what the page just learnt. */
  function announce(name, detail) {
    document.dispatchEvent(new CustomEvent("cfgstore:" + name, { detail }));
  }

  function showLogin(message) {
    stopPolling();
    announce("signed-out", null);
    show($("app-view"), false);
    show($("session-bar"), false);
    show($("degraded-banner"), false);
    show($("login-view"), true);
    showFormError($("login-error"), message || null);
    $("login-password").value = "";
    $("login-password").focus();
  }

  function sessionEnded(message) {
    if (!token) return;
    setToken(null);
    resetViews();
    showLogin(message || "Your session ended: sign in again.");
  }

  async function login(event) {
    event.preventDefault();
    const button = event.submitter || $("login-form").querySelector("button");
    button.disabled = true;
    showFormError($("login-error"), null);
    try {
      const { data } = await api("POST", "/api/login", {
        json: { password: $("login-password").value },
      });
      setToken(data.token);
      $("login-password").value = "";
      await enterApp();
    } catch (error) {
      showFormError($("login-error"), describe(error));
    } finally {
      button.disabled = false;
    }
  }

  async function logout() {
    try {
      await api("POST", "/api/logout");
    } catch {
      // The token is dropped here whatever the gateway said.
    }
    setToken(null);
    resetViews();
    showLogin(null);
    notify("Signed out.", "ok");
  }

  async function enterApp() {
    show($("login-view"), false);
    show($("app-view"), true);
    show($("session-bar"), true);
    setView(viewFromHash());
    startPolling();
    try {
      const { data } = await api("GET", "/api/session");
      show($("default-password-warning"), Boolean(data && data.isDefaultPassword));
      announce("session", data || {});
    } catch (error) {
      if (error.status !== 401) notifyError(error);
    }
    loadSupportedTypes();
  }

  function resetViews() {
    if (pools) pools.reset();
    storageTag = modeTag = null;
    configState = null;
    providerEditor.close();
    modelEditor.close();
    $("models-body").replaceChildren();
  }

  // ---------------------------------------------------------------- views

  const VIEWS = ["providers", "models", "config", "plugins", "usage", "storage"];
  let currentView = "providers";

  function viewFromHash() {
    const name = location.hash.replace(/^#/, "");
    return VIEWS.includes(name) ? name : "providers";
  }

  function setView(name) {
    currentView = name;
    for (const view of VIEWS) show($("view-" + view), view === name);
    for (const tab of document.querySelectorAll(".tab")) {
      if (tab.dataset.view === name) {
        tab.setAttribute("aria-current", "page");
        tab.scrollIntoView({ block: "nearest", inline: "nearest" });
      }
      else tab.removeAttribute("aria-current");
    }
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    if (name === "providers") pollProviders();
    if (name === "models") loadModels();
    if (name === "config" && !configDirty()) loadConfig();
    if (name === "plugins") loadPlugins();
    if (name === "usage") loadUsage(false);
    if (name === "storage") pollStorage();
  }

  // ---------------------------------------------------------------- polling

  let pollTimer = null;
  let polling = false;

  function startPolling() {
    polling = true;
    tick();
  }

  function stopPolling() {
    polling = false;
    clearTimeout(pollTimer);
  }

  async function tick() {
    clearTimeout(pollTimer);
    if (!polling || !token) return;
    if (!document.hidden) {
      // The full status makes the shared storage read every node: only on its own tab.
      const work = [currentView === "storage" ? pollStorage() : pollMode()];
      if (currentView === "providers") work.push(pollProviders());
      await Promise.allSettled(work);
    }
    if (polling) pollTimer = setTimeout(tick, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && polling) tick();
  });

  // ---------------------------------------------------------------- storage status

  let storageInFlight = false;
  let storageTag = null;
  let modeTag = null;

  function setDegraded(degraded) {
    show($("degraded-banner"), degraded && Boolean(token));
    document.body.classList.toggle("is-degraded", degraded);
  }

  async function pollStorage() {
    if (storageInFlight || !token) return;
    storageInFlight = true;
    try {
      const headers = storageTag ? { "If-None-Match": storageTag } : {};
      const { data, response, notModified } = await api("GET", "/api/storage/status", { headers });
      if (!notModified) {
        renderStorage(data || {});
        storageTag = response.headers.get("ETag");
      }
    } catch {
      // A failed poll leaves the last status shown; the next one tries again.
    } finally {
      storageInFlight = false;
    }
  }

  /** The pill and the banner from the storage mode alone (cheap: the top layer answers). */
  async function pollMode() {
    if (!token) return;
    try {
      const headers = modeTag ? { "If-None-Match": modeTag } : {};
      const { data, response, notModified } = await api("GET", "/api/cfgstore/storage/mode", { headers });
      if (!notModified) {
        showMode(data || {});
        modeTag = response.headers.get("ETag");
      }
    } catch {
      // A failed poll leaves the last mode shown; the next one tries again.
    }
  }

  function showMode(status) {
    const degraded = status.degraded === true;
    setDegraded(degraded);
    announce("storage", status);
    const pill = $("storage-pill");
    pill.textContent = degraded ? "degraded" : String(status.mode || "unknown");
    pill.className = "pill " + (degraded ? "pill-warn" : "pill-ok");
    pill.dataset.mode = String(status.mode || "");
  }

  function fmtLayer(layer) {
    if (!layer || typeof layer !== "object") return fmtValue(layer);
    const where = layer.location ? " @ " + layer.location : "";
    return `${layer.name ?? "?"} (${layer.mode ?? "?"})${where}`;
  }

  function renderStorage(status) {
    const degraded = status.degraded === true;
    showMode(status);
    modeTag = null;

    const redis = status.redis || null;
    const facts = [
      ["Mode", status.mode],
      ["This instance", status.instance],
      ["Degraded", degraded ? "yes" : "no"],
      ["Journal depth", status.journalDepth],
      ["Layers", Array.isArray(status.layers) ? status.layers.map(fmtLayer).join("  →  ") : status.layers],
      ["Redis version", redis ? redis.version : "—"],
      ["Redis maxmemory policy", redis ? redis.maxmemoryPolicy : "—"],
    ];
    $("storage-facts").replaceChildren(
      ...facts.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: fmtValue(value) })]),
    );

    const instances = Array.isArray(status.instances) ? status.instances : [];
    const columns = [];
    for (const instance of instances) {
      if (instance && typeof instance === "object") {
        for (const key of Object.keys(instance)) if (!columns.includes(key)) columns.push(key);
      }
    }
    const labels = window.cfgstoreLabels;
    $("storage-instances-head").replaceChildren(...columns.map((c) => el("th", { text: labels.field(c) })));
    $("storage-instances-body").replaceChildren(
      ...instances.map((instance) =>
        el("tr", {}, ...columns.map((c) =>
          el("td", { "data-field": c, text: labels.value(c, instance ? instance[c] : null, fmtValue) }))),
      ),
    );
    if (!instances.length) {
      $("storage-instances-body").replaceChildren(
        el("tr", {}, el("td", { className: "muted", text: "No instance reported." })),
      );
    }
  }

  // ---------------------------------------------------------------- providers

  /** The pools (summary, per-type pages): pools.js, created in init. */
  let pools = null;

  function pollProviders() {
    return pools ? pools.poll() : Promise.resolve();
  }

  /** Run one mutation from ``button``: busy while it runs, a notice after (``success`` gives
   * its text, or ``{text, kind}``), then a refresh (the providers unless ``refresh`` says). */
  async function act(button, call, success, refresh = pollProviders) {
    button.disabled = true;
    try {
      const { data } = await call();
      const message = success(data);
      if (typeof message === "string") notify(message, "ok");
      else notify(message.text, message.kind);
    } catch (error) {
      if (error.status !== 401) notifyError(error);
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  // ---- provider types for the datalists

  const knownTypes = new Set();

  function rememberTypes(types) {
    let added = false;
    for (const type of types) {
      if (!knownTypes.has(type)) {
        knownTypes.add(type);
        added = true;
      }
    }
    if (added) {
      $("provider-types").replaceChildren(...[...knownTypes].sort().map((t) => el("option", { value: t })));
    }
  }

  async function loadSupportedTypes() {
    try {
      const { data } = await api("GET", "/api/providers/supported");
      if (Array.isArray(data)) rememberTypes(data.map(String));
    } catch {
      // The list only helps typing; the field accepts any type.
    }
  }

  // ---- add, edit, upload

  function parseObject(text, what, optional) {
    const trimmed = text.trim();
    if (!trimmed) {
      if (optional) return undefined;
      return {};
    }
    let value;
    try {
      value = JSON.parse(trimmed);
    } catch (exc) {
      throw new Error(`${what} is not valid JSON: ${exc.message}`);
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      throw new Error(`${what} must be a JSON object ({…}).`);
    }
    return value;
  }

  async function addProvider(event) {
    event.preventDefault();
    const errorBox = $("add-provider-error");
    showFormError(errorBox, null);
    let body;
    try {
      const providerType = $("add-provider-type").value.trim();
      if (!providerType) throw new Error("Choose a provider type.");
      body = { providerType, providerConfig: parseObject($("add-provider-config").value, "Provider config") };
      const credential = parseObject($("add-provider-credential").value, "The credential", true);
      if (credential !== undefined) body.credential = credential;
    } catch (exc) {
      showFormError(errorBox, exc.message);
      return;
    }
    const button = $("add-provider-form").querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data } = await api("POST", "/api/providers", { json: body });
      const uuid = data && data.provider ? data.provider.uuid : "";
      $("add-provider-config").value = "";
      $("add-provider-credential").value = "";
      notify(`Provider added to ${body.providerType}${uuid ? " (" + uuid + ")" : ""}.`, "ok");
      pollProviders();
    } catch (error) {
      if (error.status !== 401) showFormError(errorBox, error);
    } finally {
      button.disabled = false;
    }
  }

  let providerEditor = null;

  /** Open the edit form on a node (its settings without the live state fields). */
  function editNode(type, uuid, title, node) {
    const config = {};
    for (const [key, value] of Object.entries(node)) {
      if (!STATE_FIELDS.has(key)) config[key] = value;
    }
    providerEditor.open({ type, uuid }, title, config);
  }

  function closeEditorOf(type, uuid) {
    const edited = providerEditor.target();
    if (edited && edited.type === type && edited.uuid === uuid) providerEditor.close();
  }

  async function saveProvider({ type, uuid }, providerConfig) {
    await api("PUT", `/api/providers/${seg(type)}/${seg(uuid)}`, { json: { providerConfig } });
    notify(`Saved ${type} / ${uuid}.`, "ok");
    pollProviders();
  }

  async function upload(event) {
    event.preventDefault();
    const errorBox = $("upload-error");
    showFormError(errorBox, null);
    const file = $("upload-file").files[0];
    const provider = $("upload-provider").value.trim();
    if (!provider || !file) {
      showFormError(errorBox, "Choose a provider type and a file.");
      return;
    }
    const form = new FormData();
    form.append("provider", provider);
    const name = $("upload-name").value.trim();
    if (name) form.append("customName", name);
    form.append("file", file, file.name);
    const button = $("upload-form").querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data } = await api("POST", "/api/cfgstore/upload-oauth-credentials", { body: form });
      const uuid = data && data.provider ? data.provider.uuid : "";
      $("upload-form").reset();
      notify(`Credential uploaded: new ${provider} node${uuid ? " " + uuid : ""}.`, "ok");
      pollProviders();
    } catch (error) {
      if (error.status !== 401) showFormError(errorBox, error);
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- custom models

  const MODEL_FIELDS = ["alias", "provider", "actualProvider", "actualModel", "name"];
  let modelEditor = null;

  async function loadModels() {
    try {
      const { data } = await api("GET", "/api/custom-models");
      renderModels(Array.isArray(data) ? data : []);
    } catch (error) {
      if (error.status !== 401) notifyError(error);
    }
  }

  function renderModels(models) {
    const rows = models.filter((m) => m && typeof m === "object").map((model) => {
      const id = String(model.id);
      const edit = el("button", {
        type: "button", className: "btn btn-small", "data-testid": "model-edit", text: "Edit",
        onclick: () => openModelEdit(model),
      });
      const remove = el("button", {
        type: "button", className: "btn btn-small btn-danger", "data-testid": "model-delete", text: "Delete",
        onclick: () => {
          if (!window.confirm(`Delete the custom model ${id}? This cannot be undone.`)) return;
          if (modelEditor.target() === id) modelEditor.close();
          act(remove, () => api("DELETE", `/api/custom-models/${seg(id)}`),
            () => `Custom model ${id} deleted.`, loadModels);
        },
      });
      return el("tr", { "data-testid": "model-row", "data-id": id },
        el("td", { className: "mono", "data-testid": "model-id", text: id }),
        ...MODEL_FIELDS.map((field) =>
          el("td", { "data-testid": "model-" + field, text: fmtValue(model[field] ?? null) })),
        el("td", { className: "row-actions" }, el("div", { className: "row-buttons" }, edit, remove)),
      );
    });
    $("models-body").replaceChildren(...rows);
    show($("models-table"), rows.length > 0);
    show($("models-empty"), rows.length === 0);
  }

  /** The add form's 400/409 answers, said plainly. */
  function modelError(error, id) {
    if (error.status === 409 || (error.fields && error.fields.id === "taken")) {
      return `A custom model with the id “${id}” already exists: edit it, or choose another id.`;
    }
    if (error.status === 404) return `The custom model “${id}” no longer exists.`;
    if (error.code === "invalid") {
      return "Nothing was saved; fix these fields:\n"
        + Object.entries(error.fields || {}).map(([f, p]) => `• ${f}: ${p}`).join("\n")
        + (error.fields ? "" : error.message);
    }
    return describe(error);
  }

  async function addModel(event) {
    event.preventDefault();
    const errorBox = $("add-model-error");
    showFormError(errorBox, null);
    const id = $("add-model-id").value.trim();
    if (!id) {
      showFormError(errorBox, "The id is required.");
      return;
    }
    const body = { id };
    for (const field of MODEL_FIELDS) {
      const value = $("add-model-" + field).value.trim();
      if (value) body[field] = value;
    }
    const button = $("add-model-form").querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("POST", "/api/custom-models", { json: body });
      $("add-model-form").reset();
      notify(`Custom model ${id} added.`, "ok");
      loadModels();
    } catch (error) {
      if (error.status !== 401) showFormError(errorBox, modelError(error, id));
    } finally {
      button.disabled = false;
    }
  }

  function openModelEdit(model) {
    const fields = {};
    for (const [key, value] of Object.entries(model)) if (key !== "id") fields[key] = value;
    modelEditor.open(String(model.id), String(model.id), fields);
  }

  async function saveModel(id, fields) {
    await api("PUT", `/api/custom-models/${seg(id)}`, { json: fields });
    notify(`Saved custom model ${id}.`, "ok");
    loadModels();
  }

  // ---------------------------------------------------------------- config

  /** {config, systemPrompt, etag, version} as last read from the gateway. */
  let configState = null;

  function configDirty() {
    if (!configState) return false;
    return $("config-editor").value !== configState.text
      || $("system-prompt").value !== (configState.systemPrompt ?? "");
  }

  function applyConfig(data, response) {
    const version = data && data.version !== undefined ? String(data.version) : "";
    const etag = response.headers.get("ETag") || (version ? `"${version}"` : null);
    const config = (data && data.config) || {};
    const text = JSON.stringify(config, null, 2);
    configState = { config, text, systemPrompt: data ? data.systemPrompt : null, etag, version };
    $("config-editor").value = text;
    $("system-prompt").value = configState.systemPrompt ?? "";
    $("config-version").textContent = version || "—";
    show($("default-password-warning"), Boolean(data && data.isDefaultPassword));
  }

  async function loadConfig() {
    showFormError($("config-error"), null);
    try {
      const { data, response } = await api("GET", "/api/cfgstore/config");
      applyConfig(data, response);
    } catch (error) {
      if (error.status !== 401) showFormError($("config-error"), error);
    }
  }

  async function saveConfig(event) {
    event.preventDefault();
    const errorBox = $("config-error");
    showFormError(errorBox, null);
    if (!configState) {
      await loadConfig();
      return;
    }
    let edited;
    try {
      edited = parseObject($("config-editor").value, "config.json");
    } catch (exc) {
      showFormError(errorBox, exc.message);
      return;
    }
    const changes = {};
    for (const [key, value] of Object.entries(edited)) {
      if (!(key in configState.config) || !deepEqual(value, configState.config[key])) changes[key] = value;
    }
    for (const key of Object.keys(configState.config)) {
      if (!(key in edited)) changes[key] = null;
    }
    const prompt = $("system-prompt").value;
    if (prompt !== (configState.systemPrompt ?? "")) changes.systemPrompt = prompt;
    const count = Object.keys(changes).length;
    if (!count) {
      notify("Nothing changed.", "info");
      return;
    }
    const headers = configState.etag ? { "If-Match": configState.etag } : {};
    const button = $("config-form").querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data, response } = await api("POST", "/api/cfgstore/config", { json: changes, headers });
      applyConfig(data, response);
      notify(`Saved ${count} change${count === 1 ? "" : "s"}.`, "ok");
    } catch (error) {
      if (error.status === 412) {
        showFormError(errorBox,
          "The configuration was changed elsewhere since you loaded it (version conflict). "
          + "Nothing was saved. Use “Reload from server” and apply your edits again.");
      } else if (error.code === "invalid") {
        showFormError(errorBox, "Nothing was saved; fix these fields:\n"
          + Object.entries(error.fields || {}).map(([f, p]) => `• ${f}: ${p}`).join("\n")
          + (error.fields ? "" : error.message));
      } else if (error.status !== 401) {
        showFormError(errorBox, error);
      }
    } finally {
      button.disabled = false;
    }
  }

  async function changePassword(event) {
    event.preventDefault();
    const errorBox = $("password-error");
    showFormError(errorBox, null);
    const button = $("password-form").querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("POST", "/api/admin-password", {
        json: { currentPassword: $("password-current").value, newPassword: $("password-new").value },
      });
      $("password-form").reset();
      show($("default-password-warning"), false);
      notify("Admin password changed.", "ok");
    } catch (error) {
      if (error.code === "invalid_password") showFormError(errorBox, "The current password is wrong.");
      else if (error.status !== 401) showFormError(errorBox, error);
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- plugins

  async function loadPlugins() {
    try {
      const { data } = await api("GET", "/api/plugins");
      renderPlugins(data && Array.isArray(data.plugins) ? data.plugins : []);
      const tabs = await api("GET", "/api/cfgstore/plugin-tabs");
      renderPluginTabs(tabs.data && Array.isArray(tabs.data.tabs) ? tabs.data.tabs : []);
    } catch (error) {
      if (error.status !== 401) notifyError(error);
    }
  }

  /** The enabled gateway plugins' console tabs: a button each that loads the plugin's
   * module (/static/plugins/<name>.js) and lets it render(element, api) below it;
   * api(path, init) answers the parsed JSON (an error throws). */
  function renderPluginTabs(tabs) {
    const pluginApi = async (path, init = {}) => {
      const { data } = await api(init.method || "GET", path, { json: init.json, body: init.body });
      return data;
    };
    $("plugin-tabs").replaceChildren(...tabs.map((tab) => {
      const area = el("div", { className: "plugin-tab-body", "data-testid": "plugin-tab-body" });
      const open = el("button", {
        type: "button", className: "plugin-tab-open", "data-testid": "plugin-tab", text: String(tab.title),
      });
      open.addEventListener("click", async () => {
        try {
          const module = await import(String(tab.script));
          await module.render(area, pluginApi);
        } catch (error) {
          if (error.status !== 401) notifyError(error);
        }
      });
      return el("section", { className: "card", "data-name": String(tab.plugin) }, open, area);
    }));
  }

  function renderPlugins(plugins) {
    const items = plugins.map((plugin) => {
      const name = String(plugin.name);
      const enabled = plugin.enabled !== false;
      const state = el("span", {
        className: "plugin-state " + (enabled ? "on" : "off"), "data-testid": "plugin-state",
        text: enabled ? "enabled" : "disabled",
      });
      const toggle = el("input", {
        type: "checkbox", role: "switch", className: "switch", "data-testid": "plugin-toggle",
        "data-name": name, "aria-label": `Enable ${name}`,
      });
      toggle.checked = enabled;
      toggle.addEventListener("change", async () => {
        const wanted = toggle.checked;
        toggle.disabled = true;
        try {
          const { data } = await api("POST", `/api/plugins/${seg(name)}/toggle`, { json: { enabled: wanted } });
          const now = data && data.plugin && typeof data.plugin.enabled === "boolean" ? data.plugin.enabled : wanted;
          toggle.checked = now;
          state.textContent = now ? "enabled" : "disabled";
          state.className = "plugin-state " + (now ? "on" : "off");
          notify(`Plugin ${name} ${now ? "enabled" : "disabled"}.`, "ok");
        } catch (error) {
          toggle.checked = !wanted;
          if (error.status !== 401) notifyError(error);
        } finally {
          toggle.disabled = false;
        }
      });
      return el("li", { className: "plugin", "data-testid": "plugin", "data-name": name },
        el("div", { className: "plugin-text" },
          el("div", { className: "plugin-name", text: name }),
          plugin.description ? el("div", { className: "muted small", text: String(plugin.description) }) : null),
        state,
        el("label", { className: "switch-label" }, toggle),
      );
    });
    $("plugins-list").replaceChildren(...items);
    show($("plugins-list"), items.length > 0);
    show($("plugins-empty"), items.length === 0);
  }

  // ---------------------------------------------------------------- usage

  async function loadUsage(refresh) {
    const button = $("usage-refresh");
    button.disabled = true;
    try {
      const { data } = await api("GET", "/api/usage" + (refresh ? "?refresh=true" : ""));
      renderUsage(data || {});
      if (refresh) notify("Usage refreshed.", "ok");
    } catch (error) {
      if (error.status !== 401) notifyError(error);
    } finally {
      button.disabled = false;
    }
  }

  function renderUsage(cache) {
    $("usage-timestamp").textContent = cache.timestamp ? fmtTime(cache.timestamp) : "—";
    const providers = cache.providers && typeof cache.providers === "object" ? cache.providers : {};
    const types = Object.keys(providers);
    if (!types.length) {
      $("usage-body").replaceChildren(el("p", { className: "empty muted", text: "Nothing cached yet: use Refresh." }));
      return;
    }
    $("usage-body").replaceChildren(...types.map((type) => usageCard(type, providers[type] || {})));
  }

  function usageCard(type, entry) {
    const instances = Array.isArray(entry.instances) ? entry.instances : [];
    const counts = ["totalCount", "successCount", "errorCount"]
      .filter((k) => entry[k] !== undefined).map((k) => `${k.replace("Count", "")}: ${entry[k]}`).join(" · ");
    const rows = instances.map((inst) => {
      const summary = (inst.usage && inst.usage.summary) || {};
      const used = summary.usedPercent !== undefined && summary.usedPercent !== null
        ? `${summary.usedPercent}%` : "—";
      return el("tr", { "data-testid": "usage-row", "data-uuid": inst.uuid || "" },
        el("td", {}, el("div", { text: inst.name || "(unnamed)" }), el("div", { className: "mono small muted", text: inst.uuid || "" })),
        el("td", { text: inst.success === false ? "failed" : "ok" }),
        el("td", { className: "num", text: used }),
        el("td", { text: fmtValue(summary.plan ?? null) }),
        el("td", { className: "nowrap", text: summary.resetAt ? fmtTime(summary.resetAt) : "—" }),
        el("td", { className: "last-error", text: inst.error ? String(inst.error) : "—" }),
      );
    });
    const body = instances.length
      ? el("div", { className: "table-wrap" }, el("table", { className: "table" },
        el("thead", {}, el("tr", {}, ...["Node", "Status", "Used", "Plan", "Resets", "Error"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows)))
      : el("pre", { className: "code small", text: JSON.stringify(entry, null, 2) });
    return el("section", { className: "pool card", "data-testid": "usage-type", "data-type": type },
      el("div", { className: "pool-head" }, el("h3", { className: "pool-title", text: type }),
        el("span", { className: "muted small", text: counts })),
      body);
  }

  // ---------------------------------------------------------------- JSON edit forms

  /**
   * The form `<prefix>-form` editing one JSON object (title `<prefix>-title`, textarea
   * `<prefix>-text`, error box `<prefix>-error`, cancel button `<prefix>-cancel`).
   * `save(target, object)` sends it and throws the API error; `explain(error, target)`
   * words an error for the form. The form closes after a save.
   */
  function jsonEditor(prefix, what, save, explain = (error) => error) {
    const form = $(`${prefix}-form`);
    const text = $(`${prefix}-text`);
    const errorBox = $(`${prefix}-error`);
    let target = null;

    function open(key, title, object) {
      target = key;
      $(`${prefix}-title`).textContent = title;
      text.value = JSON.stringify(object, null, 2);
      showFormError(errorBox, null);
      show(form, true);
      form.scrollIntoView({ behavior: "smooth", block: "nearest" });
      text.focus();
    }

    function close() {
      target = null;
      show(form, false);
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (target === null) return;
      let object;
      try {
        object = parseObject(text.value, what);
      } catch (exc) {
        showFormError(errorBox, exc.message);
        return;
      }
      const key = target;
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        await save(key, object);
        close();
      } catch (error) {
        if (error.status !== 401) showFormError(errorBox, explain(error, key));
      } finally {
        button.disabled = false;
      }
    });
    $(`${prefix}-cancel`).addEventListener("click", close);
    return { open, close, target: () => target };
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    $("login-form").addEventListener("submit", login);
    $("logout-button").addEventListener("click", logout);
    $("notice-close").addEventListener("click", () => show($("notice"), false));
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => setView(tab.dataset.view));
    }
    $("add-provider-form").addEventListener("submit", addProvider);
    providerEditor = jsonEditor("edit-provider", "Provider config", saveProvider);
    pools = window.cfgstorePools({
      api, el, show, seg, fmtTime, notify, describe, act, editNode, closeEditorOf, rememberTypes,
      announce,
    });
    $("upload-form").addEventListener("submit", upload);
    $("add-model-form").addEventListener("submit", addModel);
    modelEditor = jsonEditor("edit-model", "The fields", saveModel, modelError);
    $("config-form").addEventListener("submit", saveConfig);
    $("config-reload").addEventListener("click", loadConfig);
    $("password-form").addEventListener("submit", changePassword);
    $("usage-refresh").addEventListener("click", () => loadUsage(true));
    if (token) enterApp();
    else showLogin(null);
  }

  init();
})();

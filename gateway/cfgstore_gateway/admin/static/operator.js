// Operator notes of the web UI, on top of app.js (which announces what it learns with
// "cfgstore:*" document events):
//
// * the degraded banner says since when the storage is degraded, how many journal entries
//   wait to be replayed and what to do (cfgstore:storage, from GET /api/storage/status);
// * a read-only session (signed in during an outage, GET /api/session "readOnly") is
//   marked: a pill in the top bar and a note above the views (cfgstore:session);
// * pool types this gateway does not serve are marked "no adapter installed"
//   (cfgstore:pools, then GET /api/adapters).
//
// Every value goes into the DOM as text, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "cfgstore.adminToken";
  const $ = (id) => document.getElementById(id);

  function el(tag, className, text, testid) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    if (testid) node.dataset.testid = testid;
    return node;
  }

  // ------------------------------------------------------------ degraded banner

  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 90) return s + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function degradedDetails(status) {
    const parts = [];
    const since = status.degradedSince ? new Date(status.degradedSince) : null;
    if (since && !Number.isNaN(since.getTime())) {
      parts.push(`Since ${since.toLocaleString()} (${ago(Date.now() - since.getTime())} ago).`);
    }
    const depth = Number(status.journalDepth) || 0;
    parts.push(`Journal: ${depth} ${depth === 1 ? "entry" : "entries"} waiting to be replayed.`);
    if (status.mode === "data-lost") {
      const warnings = (status.layers || []).flatMap((l) => (Array.isArray(l.warnings) ? l.warnings : []));
      parts.push("What to do: " + (warnings[0] || "restore the namespace (cfgctl restore --snapshot)."));
    } else {
      parts.push(
        "What to do: bring Redis back (is redis-server running and reachable from this " +
          "instance?); the journal is replayed and the pools resync by themselves. " +
          "`cfgctl status` shows the details.",
      );
    }
    return parts.join(" ");
  }

  document.addEventListener("cfgstore:storage", (event) => {
    const status = event.detail || {};
    const details = $("degraded-details");
    if (details) details.textContent = status.degraded === true ? degradedDetails(status) : "";
  });

  // ------------------------------------------------------------ read-only session

  function readOnlyPill() {
    let pill = $("read-only-pill");
    if (!pill) {
      pill = el("span", "pill pill-warn", "read-only session", "read-only-pill");
      pill.id = "read-only-pill";
      const bar = $("session-bar");
      bar.insertBefore(pill, bar.firstChild);
    }
    return pill;
  }

  function readOnlyNote() {
    let note = $("read-only-note");
    if (!note) {
      note = el("div", "card card-warn read-only-note", "", "read-only-note");
      note.id = "read-only-note";
      const view = $("app-view");
      const nav = view.querySelector("nav");
      view.insertBefore(note, nav ? nav.nextSibling : view.firstChild);
    }
    return note;
  }

  function markReadOnly(readOnly, reason) {
    document.body.classList.toggle("is-read-only", readOnly);
    const pill = readOnlyPill();
    pill.hidden = !readOnly;
    pill.title = reason || "";
    const note = readOnlyNote();
    note.hidden = !readOnly;
    note.textContent = readOnly ? reason || "Read-only session." : "";
  }

  document.addEventListener("cfgstore:session", (event) => {
    const session = event.detail || {};
    markReadOnly(session.readOnly === true, session.readOnlyReason);
  });
  document.addEventListener("cfgstore:signed-out", () => markReadOnly(false, null));

  // ------------------------------------------------------------ no adapter installed

  let adaptersInFlight = false;

  async function fetchAdapters() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return null;
    const response = await fetch("/api/adapters", {
      headers: { Authorization: "Bearer " + token },
      cache: "no-store",
      credentials: "omit",
    });
    if (!response.ok) return null;
    const data = await response.json();
    return data && typeof data.types === "object" ? data.types : null;
  }

  function markPool(section, entry) {
    const head = section.querySelector(".pool-head") || section;
    let badge = section.querySelector("[data-testid=no-adapter]");
    const unserved = entry && Array.isArray(entry.unservedNodes) ? entry.unservedNodes.length : 0;
    const text = !entry ? "" : !entry.served ? "no adapter installed"
      : unserved ? `${unserved} node${unserved === 1 ? "" : "s"}: no adapter installed` : "";
    section.classList.toggle("pool-unserved", Boolean(entry && !entry.served));
    if (!text) {
      if (badge) badge.remove();
      return;
    }
    if (!badge) {
      badge = el("span", "badge badge-no-adapter", "", "no-adapter");
      const title = head.querySelector(".pool-title");
      head.insertBefore(badge, title ? title.nextSibling : head.firstChild);
    }
    badge.textContent = text;
    badge.title = (entry.reason || "") +
      " — health checks, token refresh and selection leave these nodes alone.";
  }

  document.addEventListener("cfgstore:pools", async () => {
    if (adaptersInFlight) return;
    adaptersInFlight = true;
    try {
      const types = await fetchAdapters();
      if (!types) return;
      for (const section of document.querySelectorAll("[data-testid=pool][data-type]")) {
        markPool(section, types[section.dataset.type]);
      }
    } catch {
      // The next pools poll asks again.
    } finally {
      adaptersInFlight = false;
    }
  });
})();

// Readable labels for the field names the API reports as they are stored (the Storage
// tab's instances: instance_id, journal_depth, oldest_entry_age_ms…). A field this list
// does not know is shown with its words separated and capitalised ("last_seen" → "Last seen").
"use strict";

window.cfgstoreLabels = (() => {
  const FIELDS = {
    instance_id: "Instance",
    host: "Host",
    pid: "PID",
    version: "Version",
    mode: "Mode",
    journal_depth: "Journal depth",
    oldest_entry_age_ms: "Oldest journal entry",
    last_error: "Last error",
    last_resync: "Last resync",
    started_at: "Started",
    state_dir: "State directory",
  };

  function field(key) {
    const name = String(key);
    if (Object.prototype.hasOwnProperty.call(FIELDS, name)) return FIELDS[name];
    const words = name.replace(/_ms$/, "").replace(/([a-z])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ").trim();
    return words ? words[0].toUpperCase() + words.slice(1).toLowerCase() : name;
  }

  /** A value for display: a duration in ms (a key ending in ``_ms``) as "12 s" / "3 min",
   * an ISO time in the browser's local form; anything else as ``fallback`` shows it. */
  function value(key, raw, fallback) {
    if (typeof raw === "string" && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(raw)) {
      const date = new Date(raw);
      if (!Number.isNaN(date.getTime())) return date.toLocaleString();
    }
    if (typeof raw === "number" && String(key).endsWith("_ms")) {
      if (raw < 1000) return `${raw} ms`;
      if (raw < 120000) return `${Math.round(raw / 1000)} s`;
      return `${Math.round(raw / 60000)} min`;
    }
    return fallback(raw);
  }

  return { field, value };
})();

// Traffic charts on the Providers view: requests, errors and latency per provider type over
// the last hour or day, summed over every gateway instance (GET /api/cfgstore/traffic).
//
// Inline SVG built with DOM APIs, no library, no build step; every style comes from
// charts.css classes (the UI's CSP allows no inline style). Shares the admin token app.js
// keeps in sessionStorage; loads while the Providers view is shown, every REFRESH_MS.
"use strict";

(() => {
  const TOKEN_KEY = "cfgstore.adminToken";
  const REFRESH_MS = 15000;
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 360;
  const HEIGHT = 72;
  const PAD = 2;

  let range = "hour";
  let timer = null;
  let loading = false;
  let again = false; // asked for while a load was in flight (a range switch): load once more

  const $ = (id) => document.getElementById(id);

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children) node.append(child);
    return node;
  }

  function html(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) node.append(child);
    return node;
  }

  /** The value of the chart's top edge, shown over its top-left corner (HTML, so that it
   *  is not stretched with the drawing). */
  function scaleLabel(text) {
    return html("span", { className: "chart-scale", text });
  }

  function title(text) {
    const node = document.createElementNS(SVG, "title");
    node.textContent = text;
    return node;
  }

  function when(start, step, index) {
    const at = new Date(start + index * step);
    const hm = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return range === "day" ? at.toLocaleDateString([], { weekday: "short" }) + " " + hm : hm;
  }

  /** Bars of requests with the errors drawn over them, one column per point. */
  function requestsChart(series, data) {
    const n = data.points;
    const top = Math.max(1, ...series.requests);
    const slot = (WIDTH - 2 * PAD) / n;
    const bar = Math.max(1, slot - 1);
    const chart = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", class: "chart chart-requests",
      role: "img", "data-testid": "traffic-chart-requests",
      "aria-label": `requests and errors per ${data.stepMs / 60000} minutes`,
    });
    chart.append(svg("line", { x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5, class: "chart-axis" }));
    series.requests.forEach((count, i) => {
      if (!count) return;
      const x = PAD + i * slot;
      const h = Math.max(1, (count / top) * (HEIGHT - 2 * PAD));
      const errors = series.errors[i];
      const label = `${when(data.start, data.stepMs, i)}: ${count} requests, ${errors} errors`;
      const group = svg("g", { "data-testid": "traffic-bar" }, title(label));
      group.append(svg("rect", { x, y: HEIGHT - h, width: bar, height: h, class: "bar-requests" }));
      if (errors) {
        const eh = Math.max(1, (errors / top) * (HEIGHT - 2 * PAD));
        group.append(svg("rect", { x, y: HEIGHT - eh, width: bar, height: eh, class: "bar-errors" }));
      }
      chart.append(group);
    });
    return [chart, scaleLabel(String(top))];
  }

  /** Mean and p95 latency as lines (points without requests leave a gap). */
  function latencyChart(series, data) {
    const n = data.points;
    const values = [...series.meanMs, ...series.p95Ms].filter((v) => v !== null);
    const top = Math.max(1, ...values);
    const slot = (WIDTH - 2 * PAD) / n;
    const chart = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", class: "chart chart-latency",
      role: "img", "data-testid": "traffic-chart-latency", "aria-label": "latency, mean and p95",
    });
    chart.append(svg("line", { x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5, class: "chart-axis" }));
    for (const [key, cls] of [["p95Ms", "line-p95"], ["meanMs", "line-mean"]]) {
      let path = "";
      let pen = "M";
      series[key].forEach((value, i) => {
        if (value === null) { pen = "M"; return; }
        const x = PAD + i * slot + slot / 2;
        const y = HEIGHT - PAD - (value / top) * (HEIGHT - 2 * PAD);
        path += `${pen}${x.toFixed(1)},${y.toFixed(1)} `;
        pen = "L";
      });
      if (path) chart.append(svg("path", { d: path.trim(), class: cls }, title(key === "p95Ms" ? "p95 latency" : "mean latency")));
    }
    series.meanMs.forEach((mean, i) => {
      if (mean === null) return;
      const x = PAD + i * slot + slot / 2;
      const y = HEIGHT - PAD - (mean / top) * (HEIGHT - 2 * PAD);
      const p95 = series.p95Ms[i];
      chart.append(svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 1.5, class: "dot-mean" },
        title(`${when(data.start, data.stepMs, i)}: mean ${mean} ms, p95 ≤ ${p95} ms`)));
    });
    return values.length ? [chart, scaleLabel(fmtMs(top))] : [chart];
  }

  function fmtMs(value) {
    if (value === null || value === undefined) return "—";
    return value >= 1000 ? (value / 1000).toFixed(1) + " s" : Math.round(value) + " ms";
  }

  function typeRow(name, series, data) {
    const t = series.totals;
    const rate = t.requests ? ((100 * t.errors) / t.requests).toFixed(1) + "%" : "—";
    const facts = html("div", { className: "traffic-facts" },
      html("span", { className: "traffic-type-name mono", text: name }),
      html("span", { className: "traffic-fact" },
        html("strong", { text: String(t.requests), "data-testid": "traffic-total-requests" }), " requests"),
      html("span", { className: "traffic-fact" + (t.errors ? " traffic-fact-bad" : "") },
        html("strong", { text: String(t.errors), "data-testid": "traffic-total-errors" }), ` errors (${rate})`),
      html("span", { className: "traffic-fact muted" }, `mean ${fmtMs(t.meanMs)} · p95 ≤ ${fmtMs(t.p95Ms)}`));
    const step = data.stepMs === 60000 ? "minute" : `${data.stepMs / 60000} minutes`;
    return html("div", { className: "traffic-type", "data-testid": "traffic-type", "data-type": name },
      facts,
      html("div", { className: "traffic-pair" },
        html("figure", { className: "traffic-figure" }, ...requestsChart(series, data),
          html("figcaption", { className: "muted small", text: `requests / errors per ${step}, oldest left` })),
        html("figure", { className: "traffic-figure" }, ...latencyChart(series, data),
          html("figcaption", { className: "muted small", text: "latency: mean / p95" }))));
  }

  function render(data) {
    const body = $("traffic-body");
    body.replaceChildren();
    const names = Object.keys(data.types);
    const empty = $("traffic-empty");
    if (!data.available) {
      empty.textContent = "This storage keeps no traffic counts.";
      empty.hidden = false;
      return;
    }
    empty.textContent = range === "day" ? "No request in the last day." : "No request in the last hour.";
    empty.hidden = names.length > 0;
    for (const name of names) body.append(typeRow(name, data.types[name], data));
    $("traffic-charts").setAttribute("data-loaded", data.range);
  }

  async function load() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return;
    if (loading) { again = true; return; }
    loading = true;
    const error = $("traffic-error");
    try {
      const response = await fetch(`/api/cfgstore/traffic?range=${range}`, {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        cache: "no-store",
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        const message = (data && data.error && data.error.message) || response.statusText;
        throw new Error(message);
      }
      error.hidden = true;
      render(data);
    } catch (exc) {
      error.textContent = "Traffic unavailable: " + exc.message;
      error.hidden = false;
    } finally {
      loading = false;
      if (again) { again = false; load(); }
    }
  }

  function visible() {
    const view = $("view-providers");
    const app = $("app-view");
    return view && app && !view.hidden && !app.hidden && !document.hidden;
  }

  function follow() {
    if (visible()) {
      if (timer === null) {
        load();
        timer = setInterval(load, REFRESH_MS);
      }
    } else if (timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  }

  function setRange(name) {
    range = name;
    for (const button of document.querySelectorAll("[data-traffic-range]")) {
      button.setAttribute("aria-pressed", String(button.dataset.trafficRange === name));
    }
    load();
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("[data-traffic-range]")) {
      button.addEventListener("click", () => setRange(button.dataset.trafficRange));
    }
    const observer = new MutationObserver(follow);
    for (const id of ["view-providers", "app-view"]) {
      const node = $(id);
      if (node) observer.observe(node, { attributes: true, attributeFilter: ["hidden"] });
    }
    document.addEventListener("visibilitychange", follow);
    follow();
  });
})();

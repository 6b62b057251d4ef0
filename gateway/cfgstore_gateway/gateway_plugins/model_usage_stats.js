// The model-usage-stats console tab: one table per provider type (its models' requests and
// tokens), the totals above, and the two resets. render(element, api): api(path, init)
// answers the parsed JSON of the console's authenticated fetch.

function cell(tag, text) {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

function row(tag, values) {
  const tr = document.createElement("tr");
  for (const value of values) tr.append(cell(tag, String(value)));
  return tr;
}

const COLUMNS = ["Model", "Requests", "Prompt", "Completion", "Total", "Cached", "Last used"];

function blockRow(name, block) {
  return row("td", [
    name,
    block.requestCount,
    block.promptTokens,
    block.completionTokens,
    block.totalTokens,
    block.cachedTokens,
    block.lastUsedAt || "-",
  ]);
}

function table(title, summary, models) {
  const section = document.createElement("section");
  section.dataset.testid = "model-usage-type";
  section.append(cell("h3", title));
  const grid = document.createElement("table");
  const head = document.createElement("thead");
  head.append(row("th", COLUMNS));
  const body = document.createElement("tbody");
  for (const [model, block] of Object.entries(models)) body.append(blockRow(model, block));
  body.append(blockRow("(all)", summary));
  grid.append(head, body);
  section.append(grid);
  return section;
}

export async function render(element, api) {
  const draw = (stats) => {
    const s = stats.summary;
    const totals = cell(
      "p",
      `Requests ${s.requestCount} · tokens ${s.totalTokens} · ` +
        `${s.qps ?? 0} req/s, ${s.rpm ?? 0} req/min, ${s.tps ?? 0} tokens/s (this instance)`,
    );
    const actions = document.createElement("p");
    for (const [label, path] of [
      ["Reset tokens", "/api/model-usage-stats/reset-tokens"],
      ["Reset all", "/api/model-usage-stats/reset"],
    ]) {
      const button = cell("button", label);
      button.type = "button";
      button.addEventListener("click", async () => draw((await api(path, { method: "POST" })).data));
      actions.append(button, " ");
    }
    const tables = Object.entries(stats.providers).map(([type, provider]) =>
      table(type, provider.summary, provider.models),
    );
    element.replaceChildren(totals, actions, ...tables);
  };
  draw((await api("/api/model-usage-stats")).data);
}

// The api-potluck console tab: every key with today's usage against its limit.
export async function render(element, api) {
  let data;
  try {
    data = (await api("/api/potluck/keys")).data;
  } catch (error) {
    element.textContent = `API Potluck unavailable: ${error.message || error}`;
    return;
  }
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const title of ["Name", "Key", "Enabled", "Today", "Limit", "Total", "Tokens", "Last used"]) {
    const cell = document.createElement("th");
    cell.textContent = title;
    head.appendChild(cell);
  }
  const rows = table.createTBody();
  for (const key of data.keys) {
    const row = rows.insertRow();
    const values = [key.name, key.maskedKey, key.enabled ? "yes" : "no", key.todayUsage,
      key.dailyLimit || "∞", key.totalUsage, key.totalTokens || 0, key.lastUsedAt || "—"];
    for (const value of values) row.insertCell().textContent = String(value);
  }
  const stats = data.stats;
  const summary = document.createElement("p");
  summary.textContent = `${stats.totalKeys} keys (${stats.enabledKeys} enabled), ` +
    `${stats.todayTotalUsage} requests today, ${stats.totalUsage} in total`;
  element.replaceChildren(summary, table);
}

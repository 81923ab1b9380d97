// Request logs: OpenPipe's filter set (model, completion id, status, metadata, text, request and
// response contains / does not contain, time range), server-side paging, a log's request and
// response side by side, and import of selected (or all matching) logs into a dataset.
import { api } from "../api.js";
import { act, h, money, newest, pager, pretty, showNotice, when } from "../dom.js";

const PAGE = 50;
const FIELDS = [
  ["model", "Model", ["equals", "contains", "notContains"]],
  ["completionId", "Completion id", ["equals", "contains"]],
  ["statusCode", "Status code", ["equals"]],
  ["request", "Request", ["contains", "notContains"]],
  ["response", "Response", ["contains", "notContains"]],
  ["text", "Request or response", ["contains", "notContains"]],
  ["metadata", "Metadata key…", ["equals", "contains", "notContains"]],
  ["from", "Received after", ["equals"]],
  ["to", "Received before", ["equals"]],
];
const OP_LABELS = { equals: "is", contains: "contains", notContains: "does not contain" };

const state = { filters: [], offset: 0 };

function firstUserText(log) {
  const messages = (log.reqPayload && log.reqPayload.messages) || [];
  const user = [...messages].reverse().find((m) => m && m.role === "user");
  const content = user ? user.content : "";
  const text = Array.isArray(content) ? content.map((p) => p.text || "").join(" ") : String(content ?? "");
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

function responseText(log) {
  const choice = log.respPayload && Array.isArray(log.respPayload.choices) ? log.respPayload.choices[0] : null;
  const message = choice && choice.message;
  if (!message) return log.errorMessage || "";
  if (message.content) return String(message.content).slice(0, 120);
  if (message.tool_calls) return message.tool_calls.map((c) => c.function && c.function.name).join(", ");
  return "";
}

// The API's filter list from the form's rows.
function apiFilters(rows) {
  const out = [];
  for (const row of rows) {
    if (row.value === "" || row.value === undefined) continue;
    let field = row.field;
    if (field === "metadata") {
      if (!row.key) continue;
      field = `metadata.${row.key}`;
    }
    let value = row.value;
    if (field === "from" || field === "to") value = new Date(value).getTime();
    else if (field === "statusCode") value = Number(value);
    out.push({ field, [row.op]: value });
  }
  return out;
}

function filterRow(row, onChange, onRemove) {
  const spec = FIELDS.find((f) => f[0] === row.field) || FIELDS[0];
  const field = h("select", { class: "filter-field", "aria-label": "Filter field", onchange: () => {
    row.field = field.value;
    row.op = (FIELDS.find((f) => f[0] === row.field) || FIELDS[0])[2][0];
    row.value = "";
    onChange(true);
  } }, FIELDS.map(([name, label]) => h("option", { value: name, selected: name === row.field }, label)));
  const op = h("select", { class: "filter-op", "aria-label": "Operator", onchange: () => { row.op = op.value; onChange(false); } },
    spec[2].map((name) => h("option", { value: name, selected: name === row.op }, OP_LABELS[name])));
  const isTime = row.field === "from" || row.field === "to";
  const value = h("input", { class: "filter-value", "aria-label": "Filter value", value: row.value || "",
    type: isTime ? "datetime-local" : "text", placeholder: "value",
    oninput: () => { row.value = value.value; onChange(false); } });
  const key = row.field === "metadata"
    ? h("input", { class: "filter-key", "aria-label": "Metadata key", placeholder: "key", value: row.key || "",
      oninput: () => { row.key = key.value; onChange(false); } })
    : "";
  return h("div", { class: "filter-row" }, field, key, op, value,
    h("button", { type: "button", class: "quiet", "aria-label": "Remove filter", onclick: onRemove }, "×"));
}

export async function render(view) {
  const selected = new Set();
  let allMatching = false;
  let current = { data: [], total: 0 };
  const filterBox = h("div", { class: "filters", id: "log-filters" });
  const table = h("div", { id: "log-table" });
  const detail = h("aside", { id: "log-detail", class: "detail", hidden: true });
  const importBar = h("div", { class: "toolbar", id: "import-bar" });
  const summary = h("span", { class: "muted", id: "selection" });

  function drawFilters() {
    filterBox.replaceChildren(
      ...state.filters.map((row, i) => filterRow(row, (redraw) => { if (redraw) drawFilters(); },
        () => { state.filters.splice(i, 1); drawFilters(); })),
      h("div", { class: "toolbar" },
        h("button", { type: "button", id: "add-filter", onclick: () => {
          state.filters.push({ field: "model", op: "equals", value: "" });
          drawFilters();
        } }, "+ Filter"),
        h("button", { type: "button", class: "primary", id: "apply-filters", onclick: () => { state.offset = 0; load(); } },
          "Search")));
  }

  function drawSelection() {
    summary.textContent = allMatching
      ? `All ${current.total.toLocaleString()} matching logs selected`
      : selected.size ? `${selected.size} selected` : "";
  }

  function drawTable() {
    const rows = current.data.map((log) => {
      const box = h("input", { type: "checkbox", class: "pick", "aria-label": "Select log", checked: allMatching || selected.has(log.id),
        disabled: allMatching, onchange: () => { box.checked ? selected.add(log.id) : selected.delete(log.id); drawSelection(); },
        onclick: (e) => e.stopPropagation() });
      return h("tr", { class: "log-row", dataset: { id: log.id }, onclick: () => showDetail(log) },
        h("td", {}, box),
        h("td", { class: "nowrap" }, when(log.createdAt)),
        h("td", { class: "model" }, log.model || "—"),
        h("td", { class: log.statusCode && log.statusCode >= 400 ? "bad" : "" }, log.statusCode ?? "—"),
        h("td", { class: "text" }, firstUserText(log)),
        h("td", { class: "text" }, responseText(log)),
        h("td", { class: "num" }, `${log.usage.promptTokens} / ${log.usage.completionTokens}`),
        h("td", { class: "num" }, money(log.cost)),
        h("td", { class: "tags" }, Object.entries(log.metadata || {}).slice(0, 4).map(([k, v]) => h("span", { class: "pill" }, `${k}=${v}`))));
    });
    table.replaceChildren(
      h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, h("th", {}, h("input", { type: "checkbox", "aria-label": "Select all matching", id: "select-all",
          checked: allMatching, onchange: (e) => { allMatching = e.target.checked; selected.clear(); drawTable(); drawSelection(); } })),
          ["Received", "Model", "Status", "Input", "Output", "Tokens in / out", "Cost", "Metadata"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted empty" }, "No logs match.")))),
      pager({ offset: state.offset, limit: PAGE, total: current.total, onPage: (o) => { state.offset = o; load(); } }));
  }

  function showDetail(log) {
    detail.hidden = false;
    for (const tr of table.querySelectorAll("tr.log-row")) tr.classList.toggle("active", tr.dataset.id === log.id);
    detail.replaceChildren(
      h("div", { class: "detail-head" }, h("h2", {}, log.model || "Log"),
        h("button", { type: "button", class: "quiet", "aria-label": "Close", onclick: () => { detail.hidden = true; } }, "×")),
      h("dl", { class: "facts" },
        h("dt", {}, "Id"), h("dd", {}, log.id),
        h("dt", {}, "Completion id"), h("dd", {}, log.completionId || "—"),
        h("dt", {}, "Status"), h("dd", {}, log.statusCode ?? "—"),
        h("dt", {}, "Received"), h("dd", {}, when(log.createdAt)),
        h("dt", {}, "Cache hit"), h("dd", {}, log.cacheHit ? "yes" : "no"),
        log.errorMessage ? [h("dt", {}, "Error"), h("dd", { class: "bad" }, log.errorMessage)] : ""),
      h("div", { class: "side-by-side" },
        h("section", {}, h("h3", {}, "Request"), h("pre", { class: "json", id: "detail-request" }, pretty(log.reqPayload))),
        h("section", {}, h("h3", {}, "Response"), h("pre", { class: "json", id: "detail-response" }, pretty(log.respPayload)))));
  }

  async function drawImportBar() {
    let datasets = [];
    try { datasets = (await api.get("/datasets")).data; } catch { /* shown when used */ }
    const choose = h("select", { id: "import-dataset", "aria-label": "Dataset" },
      h("option", { value: "" }, "New dataset…"),
      datasets.map((d) => h("option", { value: d.id }, d.name)));
    const name = h("input", { id: "import-name", placeholder: "new dataset name", "aria-label": "New dataset name" });
    choose.addEventListener("change", () => { name.hidden = Boolean(choose.value); });
    const standing = h("input", { type: "checkbox", id: "import-standing" });
    const go = h("button", { type: "button", class: "primary", id: "import-go", onclick: () => act(go, async () => {
      const filters = apiFilters(state.filters);
      if (!allMatching) {
        if (!selected.size) throw new Error("Select logs first, or select all matching logs.");
        if (standing.checked) throw new Error("A standing rule imports logs matching the filters: select all matching logs.");
        filters.push({ field: "id", anyOf: [...selected] });
      }
      let datasetId = choose.value;
      if (!datasetId) {
        if (!name.value.trim()) throw new Error("Name the new dataset.");
        datasetId = (await api.post("/datasets", { name: name.value.trim() })).id;
      }
      const res = await api.post(`/datasets/${encodeURIComponent(datasetId)}/import-logs`, { filters, standing: standing.checked });
      showNotice(`Imported ${res.imported} logs` +
        (res.skipped_errored ? `, skipped ${res.skipped_errored} errored` : "") +
        (res.skipped_duplicates ? `, ${res.skipped_duplicates} already there` : "") +
        (res.skipped_invalid ? `, ${res.skipped_invalid} not valid as entries` : "") +
        (res.rule_id ? "; future matching logs will be imported too" : "") + ".");
      selected.clear();
      allMatching = false;
      drawTable();
      drawSelection();
      drawImportBar();
    }) }, "Import into dataset");
    importBar.replaceChildren(summary, choose, name, h("label", { class: "inline" }, standing, "also import future matching logs"), go);
  }

  const search = newest((body) => api.post("/logs/search", body));

  async function load() {
    const page = await search({ filters: apiFilters(state.filters), limit: PAGE, offset: state.offset });
    if (page === null) return; // a later search is under way
    current = page;
    drawTable();
    drawSelection();
  }

  view.append(h("div", { class: "page-head" }, h("h1", {}, "Request logs"),
    h("button", { type: "button", id: "refresh-logs", onclick: () => load() }, "Refresh")),
  filterBox, importBar, h("div", { class: "split" }, table, detail));
  drawFilters();
  drawImportBar();
  await load();
}

// One eval: the results table (score, errors, cost and latency per model), the head-to-head matrix,
// live progress while it runs, and each row's outputs with the judge's reasoning or the grade.
import { api } from "../api.js";
import { act, h, messageText, money, pager, poll, pretty, showNotice } from "../dom.js";
import { go } from "../app.js";
import { evalStatus } from "./evals.js";

const PAGE = 20;

function text(message) {
  return message ? messageText(message) || pretty(message) : "";
}

function score(v) {
  return v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`;
}

export async function render(view, { args }) {
  const id = args[0];
  const base = `/evals/${encodeURIComponent(id)}`;
  const head = h("div", { class: "page-head" });
  const results = h("section", { class: "card", id: "eval-results" });
  const matrix = h("section", { class: "card", id: "eval-matrix" });
  const rowsBox = h("section", { class: "card", id: "eval-rows" });
  let offset = 0;
  let lastDone = -1;

  async function drawRows() {
    const page = await api.get(`${base}/rows?limit=${PAGE}&offset=${offset}`);
    rowsBox.replaceChildren(h("h2", {}, "Rows"), ...page.data.map((row) => {
      const models = Object.keys(row.outputs);
      return h("details", { class: "eval-row-detail", dataset: { id: row.id } },
        h("summary", {}, (row.input.messages || []).filter((m) => m.role === "user").map((m) => text(m)).join(" ").slice(0, 160) || row.id),
        h("div", { class: "side-by-side" }, models.map((m) => h("section", {}, h("h3", {}, m),
          h("pre", { class: "json" }, row.outputs[m].error ? `error: ${row.outputs[m].error}` : row.outputs[m].done ? text(row.outputs[m].output) : "pending…"),
          row.outputs[m].latencyMs !== null ? h("span", { class: "muted" }, `${Math.round(row.outputs[m].latencyMs)} ms`) : ""))),
        h("h3", {}, "Judgements"),
        h("ul", { class: "judgements" }, row.judgements.map((j) => h("li", { class: "judgement" },
          h("strong", {}, j.opponent ? `${j.model} vs ${j.opponent}: ${j.winner ? `${j.winner} wins` : j.done ? "tie" : "pending"}` : `${j.model}: ${j.score ?? "pending"}`),
          j.error ? h("span", { class: "bad" }, ` error: ${j.error}`) : "",
          h("pre", { class: "reasoning" }, j.reasoning)))));
    }), pager({ offset, limit: PAGE, total: page.total, onPage: (o) => { offset = o; drawRows(); } }));
  }

  async function refresh() {
    const e = await api.get(base);
    const more = h("input", { id: "add-models", placeholder: "add models: gpt-4o, openpipe:…", "aria-label": "Models to add" });
    const add = h("button", { type: "button", id: "add-models-go", onclick: () => act(add, async () => {
      await api.post(`${base}/models`, { models: more.value.split(",").map((m) => m.trim()).filter(Boolean) });
      showNotice("Models added: only their outputs and comparisons run.");
    }) }, "Add");
    const remove = h("button", { type: "button", class: "danger", id: "delete-eval", onclick: () => act(remove, async () => {
      if (!confirm(`Delete eval ${e.name}?`)) return;
      await api.del(base);
      go("/evals");
    }) }, "Delete");
    head.replaceChildren(h("h1", {}, e.name), h("span", { class: "muted" }, `${e.type} · ${e.rows} TEST rows`), evalStatus(e),
      h("progress", { id: "eval-progress", max: e.progress.total || 1, value: e.progress.done }), more, add, remove);
    if (e.error) head.append(h("p", { class: "bad" }, e.error));
    const scoreName = { head_to_head: "Win rate", criterion: "Pass rate", code: "Mean grade" }[e.type];
    results.replaceChildren(h("h2", {}, "Results"), h("table", { class: "grid", id: "results-table" },
      h("thead", {}, h("tr", {}, ["Model", scoreName, "Errors", "Cost", "Latency p50", e.type === "head_to_head" ? "Comparisons" : ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, e.results.map((r) => h("tr", { class: "result-row", dataset: { model: r.model } },
        h("td", {}, r.model), h("td", { class: "num score" }, score(r.score)), h("td", { class: "num" }, r.errors),
        h("td", { class: "num" }, money(r.costUsd)), h("td", { class: "num" }, r.latencyMsP50 === null ? "—" : `${Math.round(r.latencyMsP50)} ms`),
        h("td", { class: "num" }, r.comparisons ?? ""))))));
    if (e.type === "head_to_head" && e.matrix) {
      const names = e.models;
      matrix.hidden = false;
      matrix.replaceChildren(h("h2", {}, "Head-to-head matrix (row's win rate against column)"),
        h("table", { class: "grid matrix", id: "matrix-table" },
          h("thead", {}, h("tr", {}, h("th", {}, ""), names.map((n) => h("th", {}, n)))),
          h("tbody", {}, names.map((a) => h("tr", {}, h("th", {}, a), names.map((b) => {
            const v = a === b ? null : e.matrix[a]?.[b];
            return h("td", { class: `num cell ${v === null || v === undefined ? "" : v > 0.5 ? "win" : v < 0.5 ? "loss" : "even"}`, dataset: { a, b } }, a === b ? "" : score(v));
          }))))));
    } else matrix.hidden = true;
    if (e.progress.done !== lastDone) {
      lastDone = e.progress.done;
      await drawRows();
    }
    return e.status === "QUEUED" || e.status === "RUNNING";
  }

  view.append(head, results, matrix, rowsBox);
  poll(refresh, 1500, results);
}

// Usage: calls, tokens and cost per model and per day, summed by log-ingest (GET /usage).
import { api } from "../api.js";
import { h, money } from "../dom.js";
import { barChart } from "../chart.js";

const RANGES = [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"], ["365", "Last year"]];

export async function render(view, { query }) {
  const days = query.get("days") || "30";
  const range = h("select", { id: "usage-range", "aria-label": "Range", onchange: () => { location.hash = `#/usage?days=${range.value}`; } },
    RANGES.map(([v, label]) => h("option", { value: v, selected: v === days }, label)));
  const dayMs = 86_400_000;
  const from = Math.floor(Date.now() / dayMs - Number(days) + 1) * dayMs;
  const usage = await api.get(`/usage?from=${from}`);
  const dayList = [];
  for (let t = from; t <= Date.now(); t += dayMs) dayList.push(new Date(t).toISOString().slice(0, 10));
  const models = [...new Set(usage.data.map((r) => r.model || "(none)"))];
  const cell = new Map(usage.data.map((r) => [`${r.day}|${r.model || "(none)"}`, r]));
  const x = dayList.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const series = (pick) => models.map((m) => ({ label: m, values: dayList.map((d) => { const r = cell.get(`${d}|${m}`); return r ? pick(r) : 0; }) }));

  const totals = usage.totals;
  const calls = h("div", { class: "chart", id: "chart-calls" });
  const tokens = h("div", { class: "chart", id: "chart-tokens" });
  const cost = h("div", { class: "chart", id: "chart-cost" });
  const byModel = new Map();
  for (const r of usage.data) {
    const m = byModel.get(r.model) || { calls: 0, errors: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 };
    for (const k of Object.keys(m)) m[k] += r[k];
    byModel.set(r.model, m);
  }
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Usage"), range),
    h("div", { class: "stats", id: "usage-totals" },
      h("div", { class: "stat" }, h("span", { class: "value", id: "total-calls" }, totals.calls.toLocaleString()), h("span", { class: "label" }, "calls")),
      h("div", { class: "stat" }, h("span", { class: "value" }, totals.errors.toLocaleString()), h("span", { class: "label" }, "errors")),
      h("div", { class: "stat" }, h("span", { class: "value" }, (totals.promptTokens + totals.completionTokens).toLocaleString()), h("span", { class: "label" }, "tokens")),
      h("div", { class: "stat" }, h("span", { class: "value" }, money(totals.costUsd)), h("span", { class: "label" }, "cost"))),
    h("h2", {}, "Calls per day"), calls, h("h2", {}, "Tokens per day"), tokens, h("h2", {}, "Cost per day (USD)"), cost,
    h("h2", {}, "By model"),
    h("table", { class: "grid", id: "usage-models" },
      h("thead", {}, h("tr", {}, ["Model", "Calls", "Errors", "Prompt tokens", "Completion tokens", "Cost"].map((t) => h("th", {}, t)))),
      h("tbody", {}, [...byModel.entries()].map(([m, r]) => h("tr", {}, h("td", {}, m || "(none)"), h("td", { class: "num" }, r.calls.toLocaleString()),
        h("td", { class: "num" }, r.errors.toLocaleString()), h("td", { class: "num" }, r.promptTokens.toLocaleString()),
        h("td", { class: "num" }, r.completionTokens.toLocaleString()), h("td", { class: "num" }, money(r.costUsd)))))));
  barChart(calls, { x, xTime: true, series: series((r) => r.calls), yLabel: "calls" });
  barChart(tokens, { x, xTime: true, series: series((r) => r.promptTokens + r.completionTokens), yLabel: "tokens" });
  barChart(cost, { x, xTime: true, series: series((r) => r.costUsd), yLabel: "USD" });
}

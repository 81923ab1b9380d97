// Evals: the project's evaluations with their status, and a new one of each type (head-to-head with
// a judge model, criterion, or a TypeScript code grader) over a dataset's TEST split.
import { api } from "../api.js";
import { act, h, when } from "../dom.js";
import { go } from "../app.js";

export const EXACT_MATCH = `function grader({ generatedOutput, datasetOutput }: GraderArgs): number {
  return generatedOutput.content === datasetOutput.content ? 1 : 0;
}`;

export function evalStatus(e) {
  const kind = { COMPLETED: "ok", ERROR: "bad" }[e.status] || "";
  return h("span", { class: `pill status ${kind}` }, `${e.status}${e.status === "RUNNING" ? ` ${e.progress.done}/${e.progress.total}` : ""}`);
}

export async function render(view) {
  const [evals, datasets, models, criteria] = await Promise.all([api.get("/evals"), api.get("/datasets"),
    api.get("/models"), api.get("/criteria")]);
  const name = h("input", { id: "eval-name", placeholder: "Eval name", "aria-label": "Eval name" });
  const dataset = h("select", { id: "eval-dataset", "aria-label": "Dataset" },
    datasets.data.map((d) => h("option", { value: d.id }, `${d.name} (${d.test_entry_count} test)`)));
  const type = h("select", { id: "eval-type", "aria-label": "Type" },
    h("option", { value: "head_to_head" }, "Head-to-head"), h("option", { value: "criterion" }, "Criterion"), h("option", { value: "code" }, "Code"));
  const deployed = models.data.filter((m) => m.openpipe.status === "DEPLOYED")
    .sort((a, b) => String(b.created).localeCompare(String(a.created)));
  // The base models those fine-tunes started from (served as `openpipe:<base model id>`), to compare with.
  const bases = [...new Set(deployed.map((m) => m.openpipe.baseModel).filter((b) => b && b.includes("/") && !b.startsWith("/")))];
  const known = ["dataset", ...deployed.map((m) => `openpipe:${m.id}`), ...bases.map((b) => `openpipe:${b}`)];
  // By default: the rows' own outputs, the newest fine-tune and the model it started from.
  const newest = deployed[0];
  const picks = ["dataset", ...(newest ? [`openpipe:${newest.id}`] : []),
    ...(newest && bases.includes(newest.openpipe.baseModel) ? [`openpipe:${newest.openpipe.baseModel}`] : [])];
  const modelList = h("input", { id: "eval-models", value: picks.join(", "), list: "known-models",
    placeholder: "dataset, openpipe:my-model, openpipe:<base model id>, gpt-4o", "aria-label": "Models" });
  const judge = h("input", { id: "eval-judge", placeholder: "judge model, e.g. gpt-4o", "aria-label": "Judge model" });
  const instructions = h("textarea", { id: "eval-instructions", rows: 2, placeholder: "Instructions for the judge (optional)", "aria-label": "Instructions" });
  const criterion = h("select", { id: "eval-criterion", "aria-label": "Criterion" }, criteria.data.map((c) => h("option", { value: c.name }, c.name)));
  const grader = h("textarea", { id: "eval-grader", rows: 6, class: "code", "aria-label": "Grader" }, EXACT_MATCH);
  const auto = h("input", { type: "checkbox", id: "eval-auto" });
  const parts = { head_to_head: h("div", { class: "stack" }, judge, instructions), criterion: h("div", {}, criterion), code: h("div", {}, grader) };
  const sync = () => { for (const [k, el] of Object.entries(parts)) el.hidden = k !== type.value; };
  type.addEventListener("change", sync);
  sync();
  const create = h("button", { type: "submit", class: "primary", id: "create-eval" }, "Run eval");
  const form = h("form", { class: "card stack", onsubmit: (e) => {
    e.preventDefault();
    act(create, async () => {
      const body = { name: name.value.trim(), datasetId: dataset.value, type: type.value, autoAddModels: auto.checked,
        models: modelList.value.split(",").map((m) => m.trim()).filter(Boolean) };
      if (type.value === "head_to_head") {
        if (judge.value.trim()) body.judgeModel = judge.value.trim();
        if (instructions.value.trim()) body.instructions = instructions.value;
      } else if (type.value === "criterion") body.criterion = criterion.value;
      else body.grader = grader.value;
      const created = await api.post("/evals", body);
      go(`/eval/${created.id}`);
    });
  } }, h("h2", {}, "New eval"), h("div", { class: "toolbar" }, name, dataset, type),
  h("label", {}, "Models (comma-separated; `dataset` is the rows' own outputs)", modelList),
  h("datalist", { id: "known-models" }, known.map((m) => h("option", { value: m }))),
  parts.head_to_head, parts.criterion, parts.code,
  h("label", { class: "inline" }, auto, "add models as they are deployed on this dataset"), h("div", { class: "toolbar" }, create));
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Evals")), form,
    h("table", { class: "grid", id: "evals" },
      h("thead", {}, h("tr", {}, ["Name", "Type", "Status", "Models", "Rows", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, evals.data.length ? evals.data.map((e) => h("tr", { class: "eval-row", onclick: () => go(`/eval/${e.id}`) },
        h("td", {}, h("a", { href: `#/eval/${encodeURIComponent(e.id)}` }, e.name)), h("td", {}, e.type), h("td", {}, evalStatus(e)),
        h("td", {}, e.models.join(", ")), h("td", { class: "num" }, e.rows), h("td", { class: "nowrap" }, when(e.createdAt))))
        : h("tr", {}, h("td", { colspan: 6, class: "muted empty" }, "No evals yet.")))));
}

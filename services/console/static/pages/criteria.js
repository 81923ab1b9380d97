// Criteria: LLM judges (a prompt and a judge model) and reward-model criteria, with their versions.
import { api } from "../api.js";
import { act, h, when } from "../dom.js";
import { go } from "../app.js";

const VARIABLES = ["messages", "tools", "tool_choice", "output"];

export async function render(view) {
  const list = await api.get("/criteria");
  const name = h("input", { id: "criterion-name", placeholder: "name: a-z, 0-9 and -", "aria-label": "Criterion name" });
  const kind = h("select", { id: "criterion-kind", "aria-label": "Kind" },
    h("option", { value: "judge" }, "LLM judge"), h("option", { value: "reward" }, "Reward model"));
  const prompt = h("textarea", { id: "criterion-prompt", rows: 4, placeholder: "What should the judge check? e.g. The output answers in one sentence.", "aria-label": "Judge prompt" });
  const judge = h("input", { id: "criterion-judge-model", placeholder: "judge model, e.g. gpt-4o (default: the service's)", "aria-label": "Judge model" });
  const vars = VARIABLES.map((v) => h("input", { type: "checkbox", class: "criterion-var", value: v, checked: true, disabled: v === "output" }));
  const reward = h("input", { id: "criterion-reward-model", placeholder: "slug of a DEPLOYED reward model", "aria-label": "Reward model", hidden: true });
  const judgeFields = h("div", { class: "stack" }, prompt, judge,
    h("div", { class: "toolbar" }, h("span", { class: "muted" }, "The judge sees:"), VARIABLES.map((v, i) => h("label", { class: "inline" }, vars[i], v))));
  kind.addEventListener("change", () => { judgeFields.hidden = kind.value === "reward"; reward.hidden = kind.value !== "reward"; });
  const create = h("button", { type: "submit", class: "primary", id: "create-criterion" }, "Create criterion");
  const form = h("form", { class: "card stack", onsubmit: (e) => {
    e.preventDefault();
    act(create, async () => {
      const body = { name: name.value.trim() };
      if (kind.value === "reward") body.rewardModel = reward.value.trim();
      else {
        body.prompt = prompt.value;
        if (judge.value.trim()) body.judgeModel = judge.value.trim();
        body.templatedVariables = vars.filter((v) => v.checked).map((v) => v.value);
      }
      const c = await api.post("/criteria", body);
      go(`/criterion/${c.name}`);
    });
  } }, h("h2", {}, "New criterion"), h("div", { class: "toolbar" }, name, kind), judgeFields, reward, h("div", { class: "toolbar" }, create));
  view.append(h("div", { class: "page-head" }, h("h1", {}, "Criteria")), form,
    h("table", { class: "grid", id: "criteria" },
      h("thead", {}, h("tr", {}, ["Name", "Latest version", "Judge", "Alignment rows", "Updated"].map((t) => h("th", {}, t)))),
      h("tbody", {}, list.data.length ? list.data.map((c) => {
        const latest = c.versions[c.versions.length - 1] || {};
        return h("tr", { class: "criterion-row", onclick: () => go(`/criterion/${c.name}`) },
          h("td", {}, h("a", { href: `#/criterion/${encodeURIComponent(c.name)}` }, c.name)),
          h("td", {}, `v${c.latestVersion}`), h("td", {}, latest.rewardModel ? `reward model ${latest.rewardModel}` : latest.judgeModel || "default judge"),
          h("td", { class: "num" }, c.alignmentRows), h("td", { class: "nowrap" }, when(c.updatedAt)));
      }) : h("tr", {}, h("td", { colspan: 5, class: "muted empty" }, "No criteria yet.")))));
}

// One criterion: its versions (publish the next one), the alignment set (add rows from JSONL or a
// dataset sample; label row by row with the keyboard: P pass, F fail, S skip, J / K or the arrow
// keys to move), the judge's verdict and explanation per row, and precision / recall / F1 per version.
import { api } from "../api.js";
import { act, h, messageText, pretty, showNotice, when } from "../dom.js";
import { go } from "../app.js";

const KEYS = { p: "PASS", f: "FAIL", s: "SKIP" };

function pct(v) {
  return v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`;
}

export async function render(view, { args, query }) {
  const name = args[0];
  const base = `/criteria/${encodeURIComponent(name)}`;
  const criterion = await api.get(base);
  let version = Number(query.get("version")) || criterion.latestVersion;
  const statsBox = h("div", { id: "criterion-stats" });
  const align = h("section", { class: "card", id: "alignment" });
  let rows = [];
  let index = 0;

  async function drawStats() {
    const all = await Promise.all(criterion.versions.map((v) => api.get(`${base}/stats?version=${v.version}`)));
    statsBox.replaceChildren(h("table", { class: "grid", id: "stats-table" },
      h("thead", {}, h("tr", {}, ["Version", "Precision", "Recall", "F1", "TP", "FP", "FN", "TN", "Pending", "Labeled"].map((t) => h("th", {}, t)))),
      h("tbody", {}, all.map((s) => h("tr", { class: `stats-row ${s.version === version ? "active" : ""}`, dataset: { version: s.version } },
        h("td", {}, `v${s.version}`), h("td", { class: "num precision" }, pct(s.precision)), h("td", { class: "num recall" }, pct(s.recall)),
        h("td", { class: "num f1" }, pct(s.f1)), h("td", { class: "num" }, s.truePositives), h("td", { class: "num" }, s.falsePositives),
        h("td", { class: "num" }, s.falseNegatives), h("td", { class: "num" }, s.trueNegatives), h("td", { class: "num" }, s.pending),
        h("td", { class: "num labeled" }, s.labeled))))));
  }

  function drawRow() {
    const row = rows[index];
    if (!row) {
      align.replaceChildren(h("h2", {}, "Alignment set"), h("p", { class: "muted" }, "No rows yet: add some below."), adder());
      return;
    }
    const verdict = row.judge;
    align.replaceChildren(
      h("div", { class: "detail-head" }, h("h2", {}, "Alignment set"),
        h("span", { class: "muted", id: "row-position" }, `Row ${index + 1} of ${rows.length}`)),
      h("p", { class: "muted" }, "Keys: P pass · F fail · S skip · J / → next · K / ← previous"),
      h("div", { class: "side-by-side" },
        h("section", {}, h("h3", {}, "Input"), h("pre", { class: "json" }, (row.input.messages || []).map((m) => `${m.role}: ${messageText(m)}`).join("\n\n"))),
        h("section", {}, h("h3", {}, "Output"), h("pre", { class: "json", id: "row-output" }, messageText(row.output) || pretty(row.output)))),
      h("div", { class: "verdicts" },
        h("div", {}, h("h3", {}, "Your label"), h("span", { class: `pill label ${row.humanJudgement || "none"}`, id: "human-label" }, row.humanJudgement || "unlabeled"),
          h("div", { class: "toolbar" }, Object.entries(KEYS).map(([k, label]) =>
            h("button", { type: "button", class: `label-${label}`, onclick: () => label_(label) }, `${label} (${k.toUpperCase()})`)))),
        h("div", {}, h("h3", {}, `Judge (v${version})`),
          verdict ? [h("span", { class: `pill ${verdict.judgement}`, id: "judge-verdict" }, `${verdict.judgement} (${verdict.score.toFixed(2)})`),
            h("p", { id: "judge-explanation" }, verdict.error || verdict.explanation || "")]
            : h("span", { class: "muted", id: "judge-verdict" }, "not judged yet"))),
      adder());
  }

  async function label_(label) {
    const row = rows[index];
    if (!row) return;
    const updated = await act(null, () => api.put(`${base}/alignment-set/${encodeURIComponent(row.id)}`, { humanJudgement: label }));
    if (!updated) return;
    rows[index] = updated;
    if (index < rows.length - 1) index += 1;
    drawRow();
    drawStats();
  }

  function onKey(e) {
    if (!document.body.contains(align) || ["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName)) return;
    const k = e.key.toLowerCase();
    if (KEYS[k]) { e.preventDefault(); label_(KEYS[k]); }
    else if (k === "j" || e.key === "ArrowRight") { index = Math.min(rows.length - 1, index + 1); drawRow(); }
    else if (k === "k" || e.key === "ArrowLeft") { index = Math.max(0, index - 1); drawRow(); }
  }
  document.addEventListener("keydown", onKey);
  window.addEventListener("console:leave", () => document.removeEventListener("keydown", onKey), { once: true });

  function adder() {
    const text = h("textarea", { id: "alignment-jsonl", rows: 3, placeholder: '{"messages": [...], "judgement": "PASS"} per line', "aria-label": "Alignment rows JSONL" });
    const add = h("button", { type: "button", id: "add-alignment-rows", onclick: () => act(add, async () => {
      const res = await api.send("POST", `${base}/alignment-set`, { body: text.value, headers: { "content-type": "application/x-ndjson" } });
      showNotice(`Added ${res.added} rows` + (res.errors.length ? `; ${res.errors.map((e) => `line ${e.line}: ${e.message}`).join("; ")}` : "."));
      await loadRows();
    }) }, "Add rows");
    const dataset = h("select", { id: "sample-dataset", "aria-label": "Dataset to sample" });
    const count = h("input", { id: "sample-count", type: "number", min: 1, max: 10000, value: 20, "aria-label": "How many rows" });
    const outputModel = h("input", { id: "sample-output-model", placeholder: "regenerate outputs with (optional)", "aria-label": "Output model" });
    const sample = h("button", { type: "button", id: "sample-rows", onclick: () => act(sample, async () => {
      const body = { datasetId: dataset.value, count: Number(count.value) };
      if (outputModel.value.trim()) body.outputModel = outputModel.value.trim();
      const res = await api.post(`${base}/alignment-set`, body);
      showNotice(`Added ${res.added} rows sampled from the dataset.`);
      await loadRows();
    }) }, "Sample from dataset");
    const box = h("details", { class: "adder" }, h("summary", {}, "Add rows"),
      h("p", { class: "muted" }, "JSONL in the fine-tuning format, with an optional human `judgement` per line:"), text,
      h("div", { class: "toolbar" }, add),
      h("p", { class: "muted" }, "Or a random sample of a dataset's entries:"),
      h("div", { class: "toolbar" }, dataset, count, outputModel, sample));
    box.addEventListener("toggle", async () => {
      if (!box.open || dataset.options.length) return;
      const list = await api.get("/datasets");
      dataset.replaceChildren(...list.data.map((d) => h("option", { value: d.id }, `${d.name} (${d.dataset_entry_count})`)));
    });
    return box;
  }

  async function loadRows() {
    const page = await api.get(`${base}/alignment-set?version=${version}&limit=1000`);
    rows = page.data;
    const firstUnlabeled = rows.findIndex((r) => !r.humanJudgement);
    index = Math.max(0, Math.min(index, rows.length - 1));
    if (index === 0 && firstUnlabeled > 0) index = firstUnlabeled;
    drawRow();
  }

  // ---- versions ---------------------------------------------------------------------------
  const latest = criterion.versions[criterion.versions.length - 1];
  const prompt = h("textarea", { id: "version-prompt", rows: 4, "aria-label": "Prompt of the next version" }, latest.prompt || "");
  const judge = h("input", { id: "version-judge-model", value: latest.judgeModel || "", placeholder: "judge model", "aria-label": "Judge model of the next version" });
  const publish = h("button", { type: "button", class: "primary", id: "publish-version", onclick: () => act(publish, async () => {
    const body = latest.rewardModel ? { rewardModel: judge.value.trim() } : { prompt: prompt.value, ...(judge.value.trim() ? { judgeModel: judge.value.trim() } : {}) };
    const c = await api.patch(base, body);
    go(`/criterion/${name}?version=${c.latestVersion}`);
  }) }, "Publish next version");
  if (latest.rewardModel) { prompt.hidden = true; judge.value = latest.rewardModel; judge.placeholder = "reward model slug"; }
  const versionPick = h("select", { id: "criterion-version", "aria-label": "Version", onchange: () => {
    version = Number(versionPick.value);
    loadRows();
    drawStats();
  } }, criterion.versions.map((v) => h("option", { value: v.version, selected: v.version === version }, `v${v.version}`)));
  const remove = h("button", { type: "button", class: "danger", id: "delete-criterion", onclick: () => act(remove, async () => {
    if (!confirm(`Delete criterion ${name}?`)) return;
    await api.del(base);
    go("/criteria");
  }) }, "Delete");

  view.append(h("div", { class: "page-head" }, h("h1", {}, name), versionPick, h("span", { class: "muted" }, `call it as ${name} or ${name}@v${version}`), remove),
    h("section", { class: "card" }, h("h2", {}, "Agreement with your labels (FAIL is the positive class)"), statsBox),
    align,
    h("section", { class: "card" }, h("h2", {}, "Versions"),
      h("table", { class: "grid", id: "versions" }, h("tbody", {}, criterion.versions.map((v) => h("tr", {},
        h("td", {}, `v${v.version}`), h("td", {}, v.rewardModel ? `reward model ${v.rewardModel}` : v.judgeModel || "default judge"),
        h("td", { class: "text" }, v.prompt || ""), h("td", { class: "nowrap" }, when(v.createdAt)))))),
      h("h3", {}, "Next version"), prompt, judge, h("div", { class: "toolbar" }, publish)));
  await Promise.all([loadRows(), drawStats()]);
}
